# SPDX-License-Identifier: GPL-3.0-or-later
"""The IMAP poller with its lease: it stands by while another daemon holds the folder, takes over when
that one lets go, and stops serving the moment its own lease is lost.

The lease and the IMAP server are fakes in memory, so each step can be arranged exactly; the position
is kept in a real SQLite store. tests/e2e/test_imap_lease.py shows the same against PostgreSQL and Dovecot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from intake.accept import Envelope
from intake.transports.imap import ImapPoller, ImapSource
from intake.transports.imapclient import Endpoint, MailboxSession
from tests.e2e.transport_helpers import eventually, raw_mail

SOURCE = ImapSource(
    name="support", endpoint=Endpoint(host="imap.example", port=993, tls=True, timeout=5.0),
    user="support@example.com", password="pw", oauth2_token_file=None, folder="INBOX", after="move",
    processed_folder="Processed", refused_folder="Refused", recipient="support@example.com",
    poll_seconds=0.05, max_message_size=1_000_000, max_backoff_seconds=1.0,
)
KEY = (SOURCE.account, SOURCE.folder)


@dataclass
class Folder:
    """The server's INBOX: messages by UID, and an event IDLE would report."""

    messages: dict[int, bytes] = field(default_factory=dict)
    next_uid: int = 1
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def deliver(self, raw: bytes) -> None:
        self.messages[self.next_uid] = raw
        self.next_uid += 1
        self.changed.set()


@dataclass
class Session:
    folder: Folder
    closed: bool = False

    async def select(self, folder: str) -> int:
        return 7

    async def uids_from(self, first_uid: int) -> list[int]:
        return sorted(uid for uid in self.folder.messages if uid >= first_uid)

    async def fetch(self, uid: int) -> bytes | None:
        return self.folder.messages.get(uid)

    async def move(self, uid: int, folder: str) -> bool:
        return self.folder.messages.pop(uid, None) is not None

    async def add_flags(self, uid: int, flags: str) -> bool:
        return True

    async def ensure_folder(self, folder: str) -> None:
        pass

    async def wait_for_change(self, timeout: float, stop: asyncio.Event) -> None:
        waits = [asyncio.create_task(self.folder.changed.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        self.folder.changed.clear()

    async def close(self) -> None:
        self.closed = True


class Lease:
    def __init__(self, table: LockTable, key: tuple[str, str]) -> None:
        self.table, self.key, self.alive = table, key, True

    def held(self) -> bool:
        return self.alive

    def release(self) -> None:
        if self.alive:
            del self.table.holders[self.key]
        self.alive = False


@dataclass
class LockTable:
    """The database server's advisory locks: who holds which (account, folder)."""

    holders: dict[tuple[str, str], Lease] = field(default_factory=dict)
    tries: int = 0

    def try_lease(self, account: str, folder: str) -> Lease | None:
        self.tries += 1
        if (account, folder) in self.holders:
            return None
        lease = self.holders[account, folder] = Lease(self, (account, folder))
        return lease

    def lose(self, key: tuple[str, str]) -> None:
        """The holder's session ends (a database restart, a cut connection): its lock goes with it."""
        self.holders.pop(key).alive = False


@dataclass
class Acceptor:
    taken: list[bytes] = field(default_factory=list)

    async def accept(self, raw: bytes, envelope: Envelope) -> int:
        self.taken.append(raw)
        return len(self.taken)


@dataclass
class Running:
    poller: ImapPoller
    acceptor: Acceptor
    sessions: list[Session]
    stop: asyncio.Event
    task: asyncio.Task[None]


# The lease here is a fake, so the database only keeps the accepted mail: SQLite (the migrated
# `engine` of tests/integration/conftest.py) is enough.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def start(engine: Engine) -> AsyncIterator[Callable[[Folder, LockTable], Awaitable[Running]]]:
    running: list[Running] = []

    async def _start(folder: Folder, locks: LockTable) -> Running:
        sessions: list[Session] = []

        async def connect(source: ImapSource) -> MailboxSession:
            sessions.append(Session(folder))
            return sessions[-1]

        acceptor = Acceptor()
        poller = ImapPoller(SOURCE, acceptor, engine, run_db=asyncio.to_thread,  # type: ignore[arg-type]
                            clock=lambda: datetime.now(UTC), connect=connect, try_lease=locks.try_lease)
        stop = asyncio.Event()
        r = Running(poller, acceptor, sessions, stop, asyncio.create_task(poller.run(stop)))
        running.append(r)
        return r

    yield _start
    for r in running:
        r.stop.set()
        await asyncio.wait_for(r.task, 5)


def messages(caplog: pytest.LogCaptureFixture, text: str, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


async def test_a_poller_stands_by_without_connecting_and_takes_over_when_the_holder_lets_go(start, caplog):
    folder, locks = Folder(), LockTable()
    folder.deliver(raw_mail("Waiting", message_id="standby-1@c.example"))
    other_daemon = locks.try_lease(*KEY)
    assert other_daemon is not None
    with caplog.at_level(logging.INFO, logger="intake.transports.imap"):
        r = await start(folder, locks)
        # Several tries of the lease, every poll_seconds, and not one IMAP connection meanwhile.
        await eventually(lambda: locks.tries >= 4, timeout=5, what="the poller to try the lease again")
        assert r.sessions == [] and r.acceptor.taken == [] and list(folder.messages) == [1]
        assert messages(caplog, "standing by") == [
            "imap support: another daemon is polling INBOX of support@example.com@imap.example:993; standing by"]

        other_daemon.release()
        await eventually(lambda: len(r.acceptor.taken) == 1, timeout=5, what="the poller to take over")
        assert len(messages(caplog, "let go of INBOX")) == 1
        assert len(messages(caplog, "standing by")) == 1  # logged once, however many tries it took
        assert folder.messages == {} and len(r.sessions) == 1

        r.stop.set()
        await asyncio.wait_for(r.task, 5)
    # Stopping gives the lease back and closes the session.
    assert locks.holders == {} and r.sessions[0].closed


async def test_a_poller_whose_lease_is_lost_stops_serving_before_its_next_sweep(start, caplog):
    folder, locks = Folder(), LockTable()
    with caplog.at_level(logging.INFO, logger="intake.transports.imap"):
        r = await start(folder, locks)
        folder.deliver(raw_mail("First", message_id="lost-1@c.example"))
        await eventually(lambda: len(r.acceptor.taken) == 1, timeout=5, what="the first message")

        # The poller's database session ends, and another daemon takes the lock the server dropped.
        locks.lose(KEY)
        other_daemon = locks.try_lease(*KEY)
        assert other_daemon is not None
        tries = locks.tries
        folder.deliver(raw_mail("Second", message_id="lost-2@c.example"))
        await eventually(lambda: r.sessions[0].closed and locks.tries > tries + 2, timeout=5,
                         what="the poller to close its session and stand by")
        # The wake-up found the lease gone: the second message is left to the holder.
        assert len(r.acceptor.taken) == 1 and list(folder.messages) == [2] and len(r.sessions) == 1
        lost = messages(caplog, "lost the lease", logging.WARNING)
        assert lost == [("imap support: lost the lease on INBOX of support@example.com@imap.example:993 (its "
                         "database connection is gone); closing the IMAP session and trying to take the lease "
                         "again")]
        assert len(messages(caplog, "standing by")) == 1

        other_daemon.release()
        await eventually(lambda: len(r.acceptor.taken) == 2, timeout=5, what="the poller to take over again")
        assert folder.messages == {} and len(r.sessions) == 2
