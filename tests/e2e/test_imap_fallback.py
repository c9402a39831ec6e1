# SPDX-License-Identifier: GPL-3.0-or-later
"""The IMAP poller's move without MOVE (RFC 6851's fallback), against the real Dovecot.

Dovecot offers MOVE, so the fallback (UID COPY, UID STORE +FLAGS (\\Deleted), UID EXPUNGE) would
never run in the other tests. Here the daemon reaches Dovecot through a proxy that deletes MOVE from
every capability list the server sends (the greeting, "* CAPABILITY" and the [CAPABILITY ...] code of
the tagged OK after LOGIN or AUTHENTICATE), and answers BAD to a MOVE sent anyway without passing it
on. The proxy is not the one of test_imap_crash.py: that one kills a process at a command, this one
rewrites replies, and they share only the forwarding loop.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.dovecot import GOOD_TOKEN_PREFIX, Dovecot, dovecot  # noqa: F401 - the session fixture.
from tests.e2e.transport_helpers import StoreView, eventually, loopback_server, raw_mail

# A literal announced at the end of a line ({123} or {123+}); its bytes follow the line verbatim.
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_CAPABILITY_LINE = re.compile(rb"^(\* |[A-Za-z0-9.]+ )(OK \[CAPABILITY |PREAUTH \[CAPABILITY |CAPABILITY )")
_MOVE_TOKEN = re.compile(rb" MOVE(?=[ \]\r])", re.IGNORECASE)
# A client command: its tag, and its name with the UID prefix if any.
_COMMAND = re.compile(rb"^(\S+) ((?:UID )?[A-Za-z]+)", re.IGNORECASE)


@dataclass
class NoMoveProxy:
    """Forwards IMAP between the daemon and Dovecot, hiding the MOVE extension."""

    upstream_port: int
    port: int = 0
    commands: list[str] = field(default_factory=list)   # every client command name, in order
    hidden: int = 0             # capability lists from which MOVE was removed
    refused: int = 0            # MOVE commands answered BAD

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        tasks = [asyncio.create_task(self._client_to_server(reader, up_writer, writer)),
                 asyncio.create_task(self._server_to_client(up_reader, writer))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (writer, up_writer):
            w.close()

    async def _client_to_server(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter,
                                down: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            command = _COMMAND.match(line)
            if command is not None:
                name = command.group(2).decode().upper()
                self.commands.append(name)
                if name in ("MOVE", "UID MOVE"):
                    # A server without MOVE does not know the command (RFC 3501 7.1.5).
                    self.refused += 1
                    down.write(command.group(1) + b" BAD Unknown command MOVE\r\n")
                    await down.drain()
                    continue
            up.write(line)
            await _copy_literal(line, reader, up)
            await up.drain()

    async def _server_to_client(self, up: asyncio.StreamReader, down: asyncio.StreamWriter) -> None:
        while line := await up.readline():
            if _CAPABILITY_LINE.match(line):
                line, removed = _MOVE_TOKEN.subn(b"", line)
                self.hidden += removed
            down.write(line)
            # A message body is passed on untouched, whatever it says.
            await _copy_literal(line, up, down)
            await down.drain()


async def _copy_literal(line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    match = _LITERAL.search(line)
    if match:
        writer.write(await reader.readexactly(int(match.group(1))))


@pytest.fixture
async def proxy(dovecot: Dovecot) -> AsyncIterator[NoMoveProxy]:
    p = NoMoveProxy(dovecot.port)
    async with loopback_server(p.handle) as p.port:
        yield p


@pytest.fixture
def view(database_url: str):  # type: ignore[no-untyped-def]
    v = StoreView(database_url)
    yield v
    v.close()


def subjects_in(dovecot: Dovecot, user: str, folder: str) -> list[str]:
    return sorted(re.search(rb"Subject: ([^\r\n]*)", raw).group(1).decode()  # type: ignore[union-attr]
                  for _, _, raw in dovecot.messages(user, folder))


# XOAUTH2 too, because aioimaplib reads the capabilities that the tagged OK of LOGIN carries, but not
# those after AUTHENTICATE, which are the first to name UIDPLUS.
@pytest.mark.parametrize("login", ["password", "xoauth2"])
async def test_without_move_the_poller_copies_flags_and_expunges(start_daemon, dovecot: Dovecot,
                                                                 proxy: NoMoveProxy, view, tmp_path: Path,
                                                                 login: str):
    user = dovecot.new_user()
    box = dovecot.mailbox(user, port=proxy.port)
    if login == "xoauth2":
        token = tmp_path / "access.token"
        token.write_text(GOOD_TOKEN_PREFIX + user + "\n")
        box.update(password="", oauth2_token_file=str(token))
    for n in (1, 2):
        await asyncio.to_thread(dovecot.append, user, raw_mail(f"Fallback {n}", message_id=f"fb-{n}@c.example"))
    d = await start_daemon(imap={"mailboxes": [box]})
    await eventually(lambda: view.settled(2), what="the two mails waiting in the inbox")
    # One more while the poller waits in IDLE: the EXPUNGE replies of the earlier moves must not
    # have confused the connection.
    await asyncio.to_thread(dovecot.append, user, raw_mail("Fallback 3", message_id="fb-3@c.example"))
    await eventually(lambda: view.settled(3), what="the mail sent during IDLE")
    await eventually(lambda: dovecot.messages(user, "INBOX") == [], what="the inbox to be emptied")
    await d.shutdown()

    # Each mail became one case, once, and its server copy moved exactly once.
    assert view.subjects() == ["Fallback 1", "Fallback 2", "Fallback 3"]
    assert [o for _, o, _ in view.inbound()] == ["new-case"] * 3
    assert subjects_in(dovecot, user, "Processed") == ["Fallback 1", "Fallback 2", "Fallback 3"]
    # The processed copies were made before the original was flagged: unread, as after a real MOVE.
    assert all("Seen" not in flags and "Deleted" not in flags for _, flags, _ in
               dovecot.messages(user, "Processed"))
    # The poller saw no MOVE anywhere (so the proxy had something to hide) and used the fallback.
    assert proxy.hidden >= 1
    assert proxy.refused == 0
    assert not any(c.endswith("MOVE") for c in proxy.commands), proxy.commands
    for name in ("UID COPY", "UID STORE", "UID EXPUNGE"):
        assert proxy.commands.count(name) == 3, proxy.commands
