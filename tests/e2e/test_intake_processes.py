# SPDX-License-Identifier: GPL-3.0-or-later
"""The intake processes: accepted mail is processed by processes of the daemon's own, each mail once.

The daemon runs with intake.processes = 2 (real processes started with spawn). Mail goes in over SMTP
from several connections at once; every mail must become exactly one case with exactly one
acknowledgement, whichever process took it. A process killed outright is started again and the mail
keeps flowing, and a daemon that stops leaves no process behind.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import smtplib

from sqlalchemy import create_engine, func, select

from store.models import Case, Inbound, Outbox
from tests.e2e.conftest import smarthost
from tests.e2e.test_case_flow import make_mail


def _send(port: int, first: int, count: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        for n in range(first, first + count):
            s.send_message(make_mail(f"Printer {n} is broken", f"Printer number {n} is broken.\n",
                                     sender=f"Customer {n} <c{n}@customer.example>",
                                     message_id=f"<p{n}@customer.example>"))


def _counts(url: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            cases = c.scalar(select(func.count()).select_from(Case))
            processed = c.scalar(select(func.count()).select_from(Inbound).where(Inbound.state == "processed"))
            outcomes = c.scalar(select(func.count(func.distinct(Inbound.case_id))).where(
                Inbound.outcome == "new-case"))
        return int(cases or 0), int(processed or 0), int(outcomes or 0)
    finally:
        engine.dispose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not yet reaped still answers kill(0); its state says so.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_mail_from_many_connections_becomes_one_case_each(start_daemon, sink) -> None:  # type: ignore[no-untyped-def]
    d = await start_daemon(intake={"processes": 2}, outbound=smarthost(sink))
    await asyncio.gather(*(asyncio.to_thread(_send, d.smtp_port, 10 * k, 10) for k in range(6)))

    acks = await sink.wait_for(60, timeout=60)
    await d.settle(timeout=30)
    await asyncio.sleep(0.5)  # a duplicate acknowledgement would show up now

    assert len(sink.messages) == 60
    recipients = sorted(rcpt for _, rcpts, _ in sink.messages for rcpt in rcpts)
    assert recipients == sorted(f"c{n}@customer.example" for n in range(60))
    assert all(m["Subject"].startswith("[Case #") for m in acks)
    assert _counts(d.settings.database_url) == (60, 60, 60)
    engine = create_engine(d.settings.database_url)
    try:
        with engine.connect() as c:
            assert c.scalar(select(func.count()).select_from(Outbox).where(Outbox.state != "sent")) == 0
    finally:
        engine.dispose()


async def test_a_killed_intake_process_is_started_again(start_daemon, sink) -> None:  # type: ignore[no-untyped-def]
    d = await start_daemon(intake={"processes": 2}, outbound=smarthost(sink))
    info_pids = d.intake_pids
    assert len(info_pids) == 2
    os.kill(info_pids[0], signal.SIGKILL)

    # Both shards get mail (ids alternate), so nothing is processed until the killed one is back.
    await asyncio.to_thread(_send, d.smtp_port, 0, 10)
    await sink.wait_for(10, timeout=60)
    await d.settle(timeout=30)
    assert _counts(d.settings.database_url) == (10, 10, 10)

    await d.shutdown()
    for pid in info_pids:
        assert not _alive(pid)
    # Nor the one started in place of the killed one.
    assert multiprocessing.active_children() == []
