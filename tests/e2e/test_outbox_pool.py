# SPDX-License-Identifier: GPL-3.0-or-later
"""The outbox with several smarthost connections: at least once, never twice in normal running.

The acknowledgements are queued straight into the store, the way intake queues them
(queue_case_mail on real cases), so that the tests exercise the sending side without waiting for
intake. The daemon sends them through a sink that can answer 451 or 5xx, or answer slowly.
"""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from sqlalchemy import create_engine, func, select

from casemail.app import make_identity, make_renderer, open_store
from notifier.loop import OutboxWorker, RetryPolicy
from store import cases, contacts
from store.db import unit_of_work
from store.mailing import queue_case_mail
from store.models import Entry, Outbox
from tests.e2e.conftest import daemon_settings, smarthost


class ScriptedSink:
    """A smarthost that answers by recipient: 'flaky' addresses get one 451 per mail, 'bad' ones a 554."""

    def __init__(self, delay: float = 0.0) -> None:
        self.host = "127.0.0.1"
        self.delay = delay
        self.delivered: list[str] = []  # Message-IDs answered 250, in order
        self.refused: collections.Counter[str] = collections.Counter()
        self.attempts: dict[str, list[bytes]] = collections.defaultdict(list)  # every DATA, by Message-ID
        self.peers: set[Any] = set()
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        mid = str(msg["Message-ID"])
        self.attempts[mid].append(envelope.original_content)
        self.peers.add(session.peer)
        rcpt = envelope.rcpt_tos[0]
        if rcpt.startswith("bad"):
            self.refused[mid] += 1
            return "554 5.7.1 Message rejected as spam"
        if rcpt.startswith("flaky") and self.refused[mid] == 0:
            self.refused[mid] += 1
            return "451 4.3.0 Try again later"
        if self.delay:
            await asyncio.sleep(self.delay)
        self.delivered.append(mid)
        return "250 OK"


@pytest.fixture
async def scripted_sink():
    async def _start(delay: float = 0.0) -> ScriptedSink:
        s = ScriptedSink(delay)
        server = await asyncio.get_running_loop().create_server(
            lambda: SMTPServer(s, hostname="sink.test"), "127.0.0.1", 0)
        servers.append(server)
        s.port = server.sockets[0].getsockname()[1]
        return s

    servers: list[Any] = []
    yield _start
    for server in servers:
        server.close()
        await server.wait_closed()


def queue_acks(settings: Any, addresses: list[str]) -> list[str]:
    """Open a case per address and queue its acknowledgement; return the queued Message-IDs."""
    store = open_store(settings)
    identity = make_identity(settings)
    now = datetime.now(timezone.utc)
    ids = []
    try:
        with unit_of_work(store.engine) as s:
            for i, address in enumerate(addresses):
                who = contacts.ensure_contact(s, address, display_name=f"Customer {i}", now=now)
                case = cases.create_case(s, subject=f"Printer {i} is broken", requester=who, description="x",
                                         product=None, version=None, severity=3, severity_source="default",
                                         production_down=False, follow_up_of=None, now=now)
                row = queue_case_mail(s, case, identity=identity, template="customer/ack", recipients=[address],
                                      now=now, extra={"notes": [], "related_to": None, "not_kept": [],
                                                      "dangerous": [], "changes": [], "done": [], "refused": []})
                assert row is not None
                ids.append(row.message_id)
    finally:
        store.engine.dispose()
    return ids


def outbox_columns(settings: Any, *columns: Any) -> dict[str, tuple[Any, ...]]:
    """The given columns of every outbox row, by Message-ID."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as c:
            return {mid: tuple(rest) for mid, *rest in c.execute(select(Outbox.message_id, *columns))}
    finally:
        engine.dispose()


def outbox_rows(settings: Any) -> dict[str, tuple[Any, ...]]:
    return outbox_columns(settings, Outbox.state, Outbox.last_error)


def attempts_and_sent_at(settings: Any) -> dict[str, tuple[Any, ...]]:
    return outbox_columns(settings, Outbox.attempts, Outbox.sent_at)


def rendered_bytes(settings: Any) -> dict[str, bytes]:
    store = open_store(settings, upgrade=False)
    try:
        with store.engine.connect() as c:
            rows = c.execute(select(Outbox.message_id, Outbox.rendered, Outbox.rendered_sha256)).all()
        return {mid: store.blobs.get_unless_inline(sha, inline) for mid, inline, sha in rows}
    finally:
        store.engine.dispose()


def notification_entries(settings: Any) -> collections.Counter[int]:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as c:
            return collections.Counter(dict(c.execute(
                select(Entry.outbox_id, func.count()).where(Entry.outbox_id.is_not(None)).group_by(Entry.outbox_id)
            ).all()))
    finally:
        engine.dispose()


async def wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_four_connections_deliver_every_mail_exactly_once(start_daemon, scripted_sink):
    sink = await scripted_sink(delay=0.01)
    d = await start_daemon(outbound={**smarthost(sink), "connections": 4})
    ids = queue_acks(d.settings, [f"customer{i}@customer.example" for i in range(120)])
    await wait_until(lambda: len(sink.delivered) >= 120)
    await wait_until(lambda: all(state == "sent" for state, _ in outbox_rows(d.settings).values()))
    await asyncio.sleep(0.5)  # room for a duplicate to show up
    assert sorted(sink.delivered) == sorted(ids)
    # The mails went over more than one connection, each reused for many mails.
    assert 1 < len(sink.peers) <= 4
    # Every sent mail is in its case's history once.
    entries = notification_entries(d.settings)
    assert len(entries) == 120 and set(entries.values()) == {1}


async def test_451_is_retried_without_duplicating_the_others(start_daemon, scripted_sink):
    sink = await scripted_sink()
    d = await start_daemon(outbound={**smarthost(sink), "connections": 4})
    addresses = [f"{'flaky' if i % 3 == 0 else 'customer'}{i}@customer.example" for i in range(30)]
    ids = queue_acks(d.settings, addresses)
    await wait_until(lambda: len(sink.delivered) >= 30)
    await wait_until(lambda: all(state == "sent" for state, _ in outbox_rows(d.settings).values()))
    await asyncio.sleep(0.5)
    assert sorted(sink.delivered) == sorted(ids)  # each once, the flaky ones after their 451
    assert sum(sink.refused.values()) == 10
    assert set(notification_entries(d.settings).values()) == {1}
    # The retry sent the very bytes of the first attempt, which are the bytes the outbox row keeps.
    kept = rendered_bytes(d.settings)
    tried = attempts_and_sent_at(d.settings)
    for i, mid in enumerate(ids):
        assert len(sink.attempts[mid]) == (2 if i % 3 == 0 else 1)
        assert set(sink.attempts[mid]) == {kept[mid]}
        # Each attempt is counted (the retry's backoff grows with the count), and the send is dated.
        assert tried[mid][0] == len(sink.attempts[mid]) and tried[mid][1] is not None


async def test_5xx_is_marked_failed_with_its_reason(start_daemon, scripted_sink):
    sink = await scripted_sink()
    d = await start_daemon(outbound={**smarthost(sink), "connections": 4})
    ids = queue_acks(d.settings, ["bad1@customer.example", "good1@customer.example", "bad2@customer.example"])
    await wait_until(lambda: [s for s, _ in outbox_rows(d.settings).values()].count("failed") == 2
                     and len(sink.delivered) == 1)
    await asyncio.sleep(0.5)
    rows = outbox_rows(d.settings)
    for mid in (ids[0], ids[2]):
        state, error = rows[mid]
        assert state == "failed"
        assert error is not None and "554" in error and "rejected as spam" in error
        assert sink.refused[mid] == 1  # not retried
    assert rows[ids[1]][0] == "sent"
    assert sink.delivered == [ids[1]]
    tried = attempts_and_sent_at(d.settings)
    assert tried[ids[0]] == (1, None) and tried[ids[2]] == (1, None)
    assert tried[ids[1]][0] == 1 and tried[ids[1]][1] is not None


async def test_shutdown_mid_batch_leaves_no_delivered_mail_unmarked(start_daemon, scripted_sink):
    # A slow smarthost, so the stop comes while a batch is being sent on every connection.
    sink = await scripted_sink(delay=0.05)
    d = await start_daemon(outbound={**smarthost(sink), "connections": 4})
    ids = queue_acks(d.settings, [f"customer{i}@customer.example" for i in range(150)])
    await wait_until(lambda: len(sink.delivered) >= 20)
    await d.shutdown()
    rows = outbox_rows(d.settings)
    delivered = set(sink.delivered)
    # A graceful stop lets each connection finish the mail in hand and records it: every delivered
    # mail is marked sent, every other one is back in the queue (none left claimed until its lease).
    assert {mid for mid, (state, _) in rows.items() if state == "sent"} == delivered
    assert {state for mid, (state, _) in rows.items() if mid not in delivered} <= {"queued"}
    assert len(delivered) < 150

    # The next daemon sends the rest, and nothing twice.
    d2 = await start_daemon(outbound={**smarthost(sink), "connections": 4})
    await wait_until(lambda: len(sink.delivered) >= 150)
    await asyncio.sleep(0.5)
    assert sorted(sink.delivered) == sorted(ids)
    await d2.shutdown()


class BlockingSender:
    """Delivers at once, except that mails after the first `free` never get their 250 back."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.delivered: list[bytes] = []

    async def send(self, envelope_from: str, recipients: Any, data: bytes) -> list[str]:
        self.delivered.append(data)
        if len(self.delivered) > self.free:
            await asyncio.Event().wait()  # the smarthost hangs after taking the mail
        return []

    async def close(self) -> None:
        return None


async def test_cut_off_shutdown_loses_at_most_the_mails_in_flight(tmp_path: Path, database_url: str):
    """When the grace period runs out and the loop is cancelled, only the sends in flight (one per
    connection) can be delivered without their mark; every mail that got its answer keeps it."""
    settings = daemon_settings(tmp_path, database_url)
    ids = queue_acks(settings, [f"customer{i}@customer.example" for i in range(40)])
    store = open_store(settings)
    sender = BlockingSender(free=25)
    worker = OutboxWorker(store.engine, store.blobs, make_renderer(settings, make_identity(settings)), sender,
                          envelope_from="support@example.com", clock=lambda: datetime.now(timezone.utc),
                          run=asyncio.to_thread, retry=RetryPolicy(base_seconds=0.2, max_seconds=1.0),
                          batch=10, connections=4)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await wait_until(lambda: len(sender.delivered) >= 29)  # 25 answered, 4 hanging, one per connection
    stop.set()
    await asyncio.sleep(0.2)
    assert not task.done()  # waiting for the sends in flight, as a graceful stop does
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.engine.dispose()

    rows = outbox_rows(settings)
    delivered = {str(email.message_from_bytes(d, policy=email.policy.default)["Message-ID"])
                 for d in sender.delivered}
    sent = {mid for mid, (state, _) in rows.items() if state == "sent"}
    assert len(sent) == 25 and sent <= delivered
    unmarked = delivered - sent
    assert len(unmarked) == 4
    # Those four stay claimed and go again after the lease: at least once. The rest are queued.
    assert {rows[mid][0] for mid in unmarked} == {"sending"}
    assert {rows[mid][0] for mid in set(ids) - delivered} == {"queued"}


def test_outbound_connections_is_validated_naming_the_key(tmp_path: Path):
    from casemail.settings import ConfigError

    for bad in (0, 65):
        with pytest.raises(ConfigError, match=r"^outbound\.connections: must be from 1 to 64"):
            daemon_settings(tmp_path, "sqlite:///x.db", outbound={"connections": bad})
    with pytest.raises(ConfigError, match=r"^outbound\.connections: must be an integer"):
        daemon_settings(tmp_path, "sqlite:///x.db", outbound={"connections": "4"})
    assert daemon_settings(tmp_path, "sqlite:///x.db").outbound.connections == 4


class GatedSender:
    """Takes every mail at once, but answers the first only when `gate` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.delivered: list[bytes] = []

    async def send(self, envelope_from: str, recipients: Any, data: bytes) -> list[str]:
        self.delivered.append(data)
        if len(self.delivered) == 1:
            await self.gate.wait()
        return []

    async def close(self) -> None:
        return None


async def test_a_held_mail_is_not_claimed_again_when_its_lease_runs_out(tmp_path: Path, database_url: str):
    """The worker claims ahead while earlier mails are in flight; a clock passing their lease (a
    slow smarthost, a jump of the clock) must not make it claim and send its own mails twice."""
    from datetime import timedelta

    settings = daemon_settings(tmp_path, database_url)
    queue_acks(settings, ["first@customer.example"])
    store = open_store(settings)
    now = [datetime.now(timezone.utc)]
    sender = GatedSender()
    worker = OutboxWorker(store.engine, store.blobs, make_renderer(settings, make_identity(settings)), sender,
                          envelope_from="support@example.com", clock=lambda: now[0], run=asyncio.to_thread,
                          retry=RetryPolicy(base_seconds=0.2, max_seconds=1.0, lease=timedelta(minutes=10)),
                          connections=2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, idle_seconds=0.05))
    try:
        await wait_until(lambda: len(sender.delivered) == 1)
        now[0] += timedelta(minutes=11)  # the first mail's lease has run out while it is in flight
        queue_acks(settings, ["second@customer.example"])
        worker.wake()
        await wait_until(lambda: len(sender.delivered) >= 2)
        await asyncio.sleep(0.3)  # several more claims at the moved clock
        sender.gate.set()
        await wait_until(lambda: worker.sent == 2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        store.engine.dispose()
    assert len(sender.delivered) == 2
    assert {state for state, _ in outbox_rows(settings).values()} == {"sent"}
