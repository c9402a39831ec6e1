# SPDX-License-Identifier: GPL-3.0-or-later
"""A daemon killed between accepting a mail and sending its acknowledgement loses nothing.

The daemon runs as a real `casemail serve` process. The first one accepts a mail while its smarthost is
down, so the acknowledgement is queued but cannot leave; it is then killed with SIGKILL (no chance to
clean up). A second daemon, now with a working smarthost, sends the acknowledgement exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, select

from store.models import Inbound, Outbox
from tests.e2e.test_case_flow import make_mail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, database_url: str, smtp_port: int, smarthost_port: int) -> Path:
    path = tmp_path / "casemail.toml"
    path.write_text(
        "\n".join([
            "[database]", f"url = {json.dumps(database_url)}",
            "[support]", 'addresses = ["support@example.com"]', 'secret_key = "restart-test-key-0123456789"',
            "[smtp]", f"port = {smtp_port}",
            "[outbound]", 'transport = "smtp"', f"port = {smarthost_port}", "timeout = 2.0",
            "poll_seconds = 0.2", "retry_base_seconds = 0.2", "retry_max_seconds = 0.5",
            "[logging]", 'level = "WARNING"',
        ]) + "\n"
    )
    return path


def _start(config: Path, port: int) -> subprocess.Popen[bytes]:
    log = config.with_suffix(".log")
    with log.open("ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "casemail", "-c", str(config), "serve"],
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"casemail exited {proc.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("casemail did not start listening")


def _wait_until(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_acknowledgement_survives_sigkill_between_accept_and_send(tmp_path, database_url, sink):
    smtp_port = _free_port()
    down_port = _free_port()  # nothing listens here: the smarthost is "down"
    url = database_url
    if url.startswith("sqlite:///"):
        url = f"sqlite:///{tmp_path / 'casemail.db'}"
    first = _start(_config(tmp_path, url, smtp_port, down_port), smtp_port)
    engine = create_engine(url)
    try:
        def _send() -> None:
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
                s.send_message(make_mail("Disk full", "Our disk is full.\n", message_id="<disk@customer.example>"))

        await asyncio.to_thread(_send)

        def _ack_tried_and_queued() -> bool:
            with engine.connect() as c:
                row = c.execute(select(Outbox.state, Outbox.attempts)).first()
            return row is not None and row.state == "queued" and row.attempts >= 1

        await asyncio.to_thread(_wait_until, _ack_tried_and_queued)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)

    second = _start(_config(tmp_path, url, smtp_port, sink.port), smtp_port)
    try:
        msgs = await sink.wait_for(1, timeout=20)
        # Give a duplicate every chance to show up before counting.
        await asyncio.sleep(1.0)
        assert len(sink.messages) == 1
        assert msgs[0]["Subject"] == "[Case #00000001] Disk full"
        with engine.connect() as c:
            assert [r.state for r in c.execute(select(Inbound.state))] == ["processed"]
            assert [r.state for r in c.execute(select(Outbox.state))] == ["sent"]
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
        engine.dispose()


async def test_mail_accepted_but_not_processed_is_processed_after_sigkill(tmp_path, database_url, sink):
    """The 250 comes after the raw mail is stored; processing comes later and is redone after a crash."""
    from casemail.app import open_store
    from casemail.settings import settings_from_dict
    from intake.accept import Acceptor, Envelope

    url = database_url if not database_url.startswith("sqlite:///") else f"sqlite:///{tmp_path / 'casemail.db'}"
    settings = settings_from_dict({"database": {"url": url}}, base_dir=tmp_path)
    store = open_store(settings)
    # Accept exactly as a transport does, with no daemon running to process it: the state a crash
    # right after the 250 leaves behind.
    acceptor = Acceptor(store.engine, store.blobs, run_db=asyncio.to_thread,  # type: ignore[arg-type]
                        clock=lambda: datetime.now(timezone.utc),
                        on_accepted=lambda: None)
    raw = make_mail("Crash test", "Processed after restart?\n", message_id="<crash@customer.example>").as_bytes()
    acceptor.accept_sync(raw, Envelope("smtp", "jane@customer.example", ("support@example.com",)))
    store.engine.dispose()

    smtp_port = _free_port()
    proc = _start(_config(tmp_path, url, smtp_port, sink.port), smtp_port)
    try:
        (ack,) = await sink.wait_for(1, timeout=20)
        assert ack["Subject"] == "[Case #00000001] Crash test"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
