# SPDX-License-Identifier: GPL-3.0-or-later
"""Killing `casemail serve` at the worst moments of IMAP intake loses nothing and doubles nothing.

The daemon runs as a real subprocess and reaches Dovecot through a small proxy in the test. The proxy
watches the commands the daemon sends and SIGKILLs it at a chosen one, before passing that command on:
  * at the second UID MOVE, the second message has been committed but not moved;
  * at the second UID FETCH, the second message has not been read, so nothing of it is committed.
A restart must then leave every message processed exactly once and moved out of the inbox.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.dovecot import Dovecot, dovecot  # noqa: F401 - the session fixture.
from tests.e2e.transport_helpers import StoreView, eventually, loopback_server, raw_mail, spooled_message_ids

REPO = Path(__file__).resolve().parents[2]


@dataclass
class KillingProxy:
    """Forwards IMAP between the daemon and Dovecot; kills the daemon at the n-th matching command."""

    upstream_port: int
    trigger: bytes = b""
    nth: int = 0
    victim: subprocess.Popen[bytes] | None = None
    port: int = 0
    seen: int = 0
    fired: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        tasks = [asyncio.create_task(self._pump(reader, up_writer, watch=True)),
                 asyncio.create_task(self._pump(up_reader, writer, watch=False))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, watch: bool) -> None:
        while line := await reader.readline():
            if watch and self.trigger and self.trigger in line:
                self.seen += 1
                if self.seen == self.nth and self.victim is not None:
                    # Killed before the command reaches the server: the server never acts on it.
                    os.kill(self.victim.pid, signal.SIGKILL)
                    self.fired.set()
                    return
            writer.write(line)
            await writer.drain()


@pytest.fixture
async def proxy(dovecot: Dovecot) -> AsyncIterator[KillingProxy]:
    p = KillingProxy(dovecot.port)
    async with loopback_server(p.handle) as p.port:
        yield p


def write_config(tmp_path: Path, database_url: str, box: dict[str, Any]) -> Path:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v) if isinstance(v, int | float) else '"' + str(v).replace('"', '\\"') + '"'

    mailbox = "\n".join(f"{k} = {value(v)}" for k, v in box.items())
    cfg = tmp_path / "casemail.toml"
    cfg.write_text(f"""
[database]
url = {value(database_url)}
[support]
addresses = ["support@example.com"]
secret_key = "test-key-0123456789abcdef"
[smtp]
port = 0
[outbound]
transport = "maildir"
[logging]
level = "INFO"
[[imap.mailboxes]]
{mailbox}
""")
    return cfg


def start_serve(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "casemail", "-c", str(cfg), "serve"], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)


async def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    await asyncio.to_thread(proc.wait, 30)


@pytest.mark.parametrize("trigger", [b"UID MOVE", b"UID FETCH"], ids=["after-commit", "before-commit"])
async def test_sigkill_then_restart_processes_every_message_once(dovecot: Dovecot, proxy: KillingProxy,
                                                                 database_url: str, tmp_path: Path,
                                                                 trigger: bytes):
    user = dovecot.new_user()
    for n in (1, 2, 3):
        await asyncio.to_thread(dovecot.append, user, raw_mail(f"Crash {n}", message_id=f"crash-{n}@c.example"))
    cfg = write_config(tmp_path, database_url, dovecot.mailbox(user, port=proxy.port))
    log = tmp_path / "daemon.log"
    view = StoreView(database_url)
    try:
        proxy.trigger, proxy.nth = trigger, 2
        proxy.victim = first = start_serve(cfg, log)
        try:
            await asyncio.wait_for(proxy.fired.wait(), 30)
        finally:
            await stop(first)
        assert first.returncode == -signal.SIGKILL, log.read_text()
        # Accepted means in the inbound table or still in the daemon's accept spool, which the next
        # start records (or in both, if the kill came between the two; the next start sees that).
        committed = len({m for _, _, m in view.inbound()}
                        | set(spooled_message_ids(tmp_path / "var" / "spool.sqlite")))
        # The kill came after the second message's commit, or before anything of it was stored.
        assert committed == (2 if trigger == b"UID MOVE" else 1), log.read_text()
        assert len(dovecot.messages(user, "INBOX")) == 2

        proxy.trigger = b""
        second = start_serve(cfg, log)
        try:
            await eventually(lambda: view.settled(3 + (committed - 1)), timeout=20, what="all three messages")
            await eventually(lambda: dovecot.messages(user, "INBOX") == [], what="the inbox to be emptied")
        finally:
            await stop(second)
        assert second.returncode == 0, log.read_text()
        # Two intake processes share the mail, so the case numbers need not follow the arrival order.
        assert sorted(view.subjects()) == ["Crash 1", "Crash 2", "Crash 3"]
        outcomes = sorted(o or "" for _, o, _ in view.inbound())
        expected = ["new-case"] * 3 + (["duplicate"] if trigger == b"UID MOVE" else [])
        assert outcomes == sorted(expected)
        assert sorted(raw.split(b"Subject: ")[1][:7] for _, _, raw in dovecot.messages(user, "Processed")) == \
            [b"Crash 1", b"Crash 2", b"Crash 3"]
    finally:
        view.close()
