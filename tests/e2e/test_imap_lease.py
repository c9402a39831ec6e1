# SPDX-License-Identifier: GPL-3.0-or-later
"""Two daemons on one PostgreSQL store with the same [[imap.mailboxes]] folder, against a real Dovecot.

Each "daemon" here is what casemail serve builds for one mailbox: an engine of its own on the shared
database, its own blob store and acceptor, and an ImapPoller with the default lease (a PostgreSQL
advisory lock). Their acceptors write inbound rows directly (no spool, no processing), so every copy
of a message a poller accepts is a row of its own: counting rows per Message-ID counts how often
each message was taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from casemail.app import Store, open_store, utcnow
from casemail.mailin import imap_sources
from intake.accept import Acceptor
from intake.transports.imap import ImapPoller, ImapSource, connect_aioimaplib
from intake.transports.imapclient import MailboxSession
from store.mailboxes import IMAP_MAILBOX_LOCK_CLASS, lease_key, try_postgres_lease
from tests.e2e.conftest import daemon_settings
from tests.e2e.dovecot import Dovecot, dovecot  # noqa: F401 - the session fixture.
from tests.e2e.transport_helpers import StoreView, eventually, raw_mail

# The lease is an advisory lock only on PostgreSQL; on SQLite one daemon has the database to itself.
only_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

LOGGER = "intake.transports.imap"


@dataclass
class Daemon:
    name: str
    source: ImapSource
    store: Store
    poller: ImapPoller
    stop: asyncio.Event
    task: asyncio.Task[None]
    connects: int = 0


@pytest.fixture
def view(database_url: str):  # type: ignore[no-untyped-def]
    v = StoreView(database_url)
    yield v
    v.close()


@pytest.fixture
async def start_daemon_poller(dovecot: Dovecot, database_url: str, tmp_path: Path,
                              ) -> AsyncIterator[Callable[..., Any]]:
    started: list[Daemon] = []

    async def _start(name: str, user: str, *, poll_seconds: float) -> Daemon:
        box = dovecot.mailbox(user, name=name, poll_seconds=poll_seconds)
        settings = daemon_settings(tmp_path / name, database_url, imap={"mailboxes": [box]})
        store = await asyncio.to_thread(open_store, settings)
        (source,) = imap_sources(settings)
        acceptor = Acceptor(store.engine, store.blobs, run_db=asyncio.to_thread, clock=utcnow,
                            on_accepted=lambda: None)

        async def connect(source: ImapSource) -> MailboxSession:
            daemon.connects += 1
            return await connect_aioimaplib(source)

        # The lease is left to its default, the one casemail serve uses: built from the engine.
        poller = ImapPoller(source, acceptor, store.engine, run_db=asyncio.to_thread, clock=utcnow, connect=connect)
        stop = asyncio.Event()
        daemon = Daemon(name, source, store, poller, stop, asyncio.create_task(poller.run(stop), name=name))
        started.append(daemon)
        return daemon

    yield _start
    for d in started:
        d.stop.set()
    for d in started:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(d.task, 15)
        d.store.engine.dispose()
        d.store.blobs.close()


def taken_ids(view: StoreView) -> Counter[str | None]:
    """How many inbound rows each Message-ID has: how often the pollers together accepted it."""
    return Counter(message_id for _, _, message_id in view.inbound())


def logged(caplog: pytest.LogCaptureFixture, name: str, text: str, level: int = logging.INFO) -> int:
    return sum(1 for r in caplog.records
               if r.levelno == level and r.getMessage().startswith(f"imap {name}:") and text in r.getMessage())


async def deliver(server: Dovecot, user: str, tag: str, numbers: range) -> list[str]:
    ids = [f"{tag}-{n}@{user.split('@')[0]}.example" for n in numbers]
    for n, message_id in zip(numbers, ids, strict=True):
        await asyncio.to_thread(server.append, user, raw_mail(f"Lease {tag} {n}", message_id=message_id))
    return ids


@only_postgresql
async def test_two_daemons_on_one_folder_take_each_message_once_and_the_second_takes_over(
        start_daemon_poller, dovecot: Dovecot, view: StoreView, caplog):
    user = dovecot.new_user()
    # Twenty messages wait before either daemon starts, so without the lease both would sweep the
    # same twenty UIDs at the same moment.
    expected = await deliver(dovecot, user, "before", range(20))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        a = await start_daemon_poller("a", user, poll_seconds=0.3)
        b = await start_daemon_poller("b", user, poll_seconds=0.3)
        await eventually(lambda: len(view.inbound()) >= 20 and dovecot.messages(user, "INBOX") == [], timeout=20,
                         what="the twenty messages to be taken")
        # A poller racing the first would still be accepting a copy it fetched before the move.
        await asyncio.sleep(0.5)
        assert taken_ids(view) == Counter(expected)
        serving, standby = (a, b) if a.poller.taken else (b, a)
        assert (serving.poller.taken, standby.poller.taken) == (20, 0)
        assert standby.connects == 0
        assert logged(caplog, standby.name, "another daemon is polling INBOX") == 1

        # Mail arriving while one serves and the other stands by goes to the one that serves.
        expected += await deliver(dovecot, user, "serving", range(3))
        await eventually(lambda: len(view.inbound()) >= 23, what="the mail delivered while serving")
        await asyncio.sleep(0.3)  # longer than the standby's retry interval
        assert (serving.poller.taken, standby.poller.taken) == (23, 0)
        assert standby.connects == 0
        # Retried every 0.3 s, logged once.
        assert logged(caplog, standby.name, "standing by") == 1

        # The serving daemon stops; the other takes over from the saved position and takes new mail.
        serving.stop.set()
        await asyncio.wait_for(serving.task, 10)
        await eventually(lambda: logged(caplog, standby.name, "taking over"), timeout=5,
                         what="the standby to take over")
        expected += await deliver(dovecot, user, "after", range(3))
        await eventually(lambda: len(view.inbound()) >= 26 and dovecot.messages(user, "INBOX") == [],
                         what="the mail delivered after the takeover")
        await asyncio.sleep(0.3)
    assert taken_ids(view) == Counter(expected)
    assert (serving.poller.taken, standby.poller.taken) == (23, 3)
    assert standby.connects == 1
    assert len(dovecot.messages(user, "Processed")) == 26


def lease_holder_pid(database_url: str, source: ImapSource) -> int | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = CAST(:c AS oid) "
                "AND objid = CAST(hashtext(:key) AS oid) AND objsubid = 2"),
                {"c": IMAP_MAILBOX_LOCK_CLASS, "key": lease_key(source.account, source.folder)}).scalar()
    finally:
        engine.dispose()


def terminate(database_url: str, pid: int) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar() is True
    finally:
        engine.dispose()


@only_postgresql
async def test_a_daemon_whose_lease_connection_dies_stops_taking_mail(start_daemon_poller, dovecot: Dovecot,
                                                                      database_url: str, view: StoreView, caplog):
    user = dovecot.new_user()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        # a waits in IDLE for up to 300 s, so only new mail wakes it.
        a = await start_daemon_poller("a", user, poll_seconds=300.0)
        expected = await deliver(dovecot, user, "first", range(1))
        await eventually(lambda: len(view.inbound()) == 1, what="the first message")

        # a's lock session ends (a database restart or a cut connection would do the same), and another
        # daemon takes the lock the server dropped, while a sits in IDLE, unaware. The test holds that
        # lease itself: a second poller would move the next message away before a's IDLE could report it.
        pid = await asyncio.to_thread(lease_holder_pid, database_url, a.source)
        assert pid is not None
        await asyncio.to_thread(terminate, database_url, pid)
        other_daemon = await asyncio.to_thread(try_postgres_lease, a.store.engine, a.source.account, a.source.folder)
        assert other_daemon is not None
        try:
            # New mail wakes a; it finds its lease gone before sweeping, and leaves the mail alone.
            expected += await deliver(dovecot, user, "second", range(1))
            await eventually(lambda: logged(caplog, "a", "standing by"), what="a to stand by")
            assert logged(caplog, "a", "lost the lease on INBOX", logging.WARNING) == 1
            await asyncio.sleep(0.5)
            assert len(dovecot.messages(user, "INBOX")) == 1 and len(view.inbound()) == 1
            assert (a.poller.taken, a.connects) == (1, 1)
        finally:
            # Once the holder lets go, a daemon that tries the lease more often than a takes the mail.
            await asyncio.to_thread(other_daemon.release)
        b = await start_daemon_poller("b", user, poll_seconds=0.3)
        await eventually(lambda: len(view.inbound()) >= 2 and dovecot.messages(user, "INBOX") == [],
                         what="the second message")
        await asyncio.sleep(0.3)
    assert taken_ids(view) == Counter(expected)
    assert (a.poller.taken, b.poller.taken) == (1, 1)
    assert a.connects == 1
