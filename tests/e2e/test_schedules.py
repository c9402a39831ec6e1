# SPDX-License-Identifier: GPL-3.0-or-later
"""The daemon's scheduler drives the schedules: escalation, staff digest, reminder and automatic close.

The daemon runs with a clock the test moves forward, and checks for due jobs every tenth of a second,
so days pass in moments without sleeping through them; a restart at the same moment sends nothing again.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from casemail.app import open_store
from store import cases, contacts
from store.db import read_only, unit_of_work
from store.models import JobRun
from tests.e2e.conftest import smarthost
from tests.e2e.test_case_flow import make_mail, send
from tests.e2e.test_trust import STAFF, staff_reply

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)
SCHEDULES = {"check_seconds": 0.1, "reminder_days": 3, "autoclose_days": 7, "escalation_minutes": 30,
             "escalation_repeat_minutes": 60, "oncall": ["oncall@staff.example"], "staff_digest_hour": 7}
AUTH = "mx.casemail.test; dkim=pass header.d=staff.example; spf=pass smtp.mailfrom=agent@staff.example"


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_the_scheduler_runs_every_schedule_once(start_daemon, sink):
    clock = FakeClock(T0)
    d = await start_daemon(clock=clock, outbound=smarthost(sink), staff=STAFF, schedules=SCHEDULES)
    await send(d.smtp_port, make_mail("Export broken", "Severity: 1\n\nNothing exports.\n",
                                      message_id="<c1@customer.example>"))
    msgs = await sink.wait_for(2)  # the acknowledgement and the staff notification
    staff_mail = next(m for m in msgs if m["To"] == "agent@staff.example")

    # Severity 1 and no staff reply for 30 minutes: the on-call list hears of it, once.
    clock.now = T0 + timedelta(minutes=31)
    escalation = (await sink.wait_for(3))[2]
    assert escalation["To"] == "oncall@staff.example"
    assert escalation["Subject"] == "[Escalation] [Case #00000001] Export broken"

    # A staff reply stops the escalations and starts the customer's clock.
    clock.now = T0 + timedelta(minutes=40)
    await send(d.smtp_port, staff_reply(staff_mail, "Which version do you run?\n", AUTH))
    reply = (await sink.wait_for(4))[3]
    assert reply["To"] == "jane@customer.example"

    # The staff digest at 07:00 UTC, and no second escalation although its round has come.
    clock.now = T0 + timedelta(hours=1, minutes=35)
    digest = (await sink.wait_for(5))[4]
    assert digest["To"] == "agent@staff.example"
    assert digest["Subject"] == "Open cases on 2026-12-01: 1"
    assert "00000001" in digest.get_body(("plain",)).get_content()

    # Three days without an answer: a reminder; seven: the case is closed and the customer told.
    clock.now = T0 + timedelta(days=3, minutes=41)
    reminder = (await sink.wait_for(6))[5]
    assert reminder["To"] == "jane@customer.example"
    assert reminder["Subject"] == "Waiting for your answer: [Case #00000001] Export broken"
    assert "Which version do you run?" in reminder.get_body(("plain",)).get_content()
    clock.now = T0 + timedelta(days=7, minutes=41)
    closed = (await sink.wait_for(7))[6]
    assert closed["To"] == "jane@customer.example"
    assert "have not heard from you in the 7 days" in closed.get_body(("plain",)).get_content()
    await d.settle()
    await asyncio.sleep(0.5)  # several more checks at the same moment
    await d.shutdown()
    assert len(sink.messages) == 7

    # A restart at the same moment finds every job done.
    d = await start_daemon(clock=clock, outbound=smarthost(sink), staff=STAFF, schedules=SCHEDULES)
    await asyncio.sleep(0.5)
    await d.settle()
    await d.shutdown()
    assert len(sink.messages) == 7

    store = open_store(d.settings)
    try:
        with read_only(store.engine) as s:
            case = cases.get_case(s, 1)
            assert case is not None and case.status == "closed"
            keys = [k.split(":")[0] for k in s.scalars(select(JobRun.key).order_by(JobRun.id))]
            assert keys == ["escalation", "digest", "reminder", "autoclose"]
            kinds = [e.kind for e in cases.history(s, case)]
            # Every mail but the digest (which is about no one case) is in the case's history.
            assert kinds.count("status_change") == 1 and kinds.count("notification") == 6
    finally:
        store.engine.dispose()


async def test_the_scheduler_sends_a_customer_digest_of_the_day(start_daemon, sink):
    clock = FakeClock(T0)
    d = await start_daemon(clock=clock, outbound=smarthost(sink), staff=STAFF,
                           schedules={"check_seconds": 0.1, "customer_digest_hour": 7})
    await send(d.smtp_port, make_mail("Export broken", "Nothing exports.\n", message_id="<c1@customer.example>"))
    msgs = await sink.wait_for(2)
    staff_mail = next(m for m in msgs if m["To"] == "agent@staff.example")
    store = open_store(d.settings)
    try:
        with unit_of_work(store.engine) as s:
            jane = contacts.get_contact(s, "jane@customer.example")
            assert jane is not None
            jane.notify = "digest"
    finally:
        store.engine.dispose()
    clock.now = T0 + timedelta(minutes=20)
    await send(d.smtp_port, staff_reply(staff_mail, "Which version do you run?\n", AUTH))
    await d.settle()

    clock.now = T0 + timedelta(hours=1, minutes=1)
    for _ in range(100):
        digests = [m for m in sink.parsed() if m["Subject"].startswith("Your cases")]
        if digests:
            break
        await asyncio.sleep(0.1)
    (digest,) = digests
    assert digest["To"] == "jane@customer.example"
    text = digest.get_body(("plain",)).get_content()
    assert "[Case #00000001] Export broken (open)" in text and "Which version do you run?" in text
    await asyncio.sleep(0.5)
    await d.shutdown()
    assert len([m for m in sink.parsed() if m["Subject"].startswith("Your cases")]) == 1
