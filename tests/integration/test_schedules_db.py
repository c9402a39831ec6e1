# SPDX-License-Identifier: GPL-3.0-or-later
"""The scheduled jobs against a real database (SQLite and PostgreSQL), driven by an injected clock.

Every job is run twice (and, once, from two threads at the same moment, as two daemons would) to show
that its mail is queued once.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, func, select

from notifier.jobs import ScheduleRunner
from notifier.schedules import ScheduleConfig
from store import cases, jobs
from store.codes import Signer
from store.contacts import ensure_contact
from store.db import read_only, unit_of_work
from store.mailing import Identity
from store.models import Case, Contact, Entry, JobRun, Outbox

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
MIN = timedelta(minutes=1)
IDENTITY = Identity(signer=Signer(b"test-key-0123456789abcdef"), support_addresses=("support@example.com",),
                    support_name="Example Support", instance_id="test")


def open_case(engine: Engine, *, at: datetime = T0, severity: int = 3, down: bool = False,
              requester: str = "jane@customer.example") -> int:
    with unit_of_work(engine) as s:
        jane = ensure_contact(s, requester, display_name="Jane", now=at)
        case = cases.create_case(s, subject="Printer on fire", requester=jane, description="It burns.",
                                 product=None, version=None, severity=severity, severity_source="body",
                                 production_down=down, follow_up_of=None, now=at)
        cases.add_entry(s, case, kind="customer_message", author=jane, text="It burns.", now=at)
        return case.id


def write(engine: Engine, case_id: int, kind: str, at: datetime, *, visibility: str = "public",
          text: str | None = None) -> int:
    with unit_of_work(engine) as s:
        case = s.get(Case, case_id)
        assert case is not None
        if kind == "staff_reply":
            author = ensure_contact(s, "sam@example.com", display_name="Sam", role="staff", now=at)
        else:
            author = case.requester
        return cases.add_entry(s, case, kind=kind, author=author, visibility=visibility,
                               text=text or f"{kind} at {at:%d %H:%M}, which version?", now=at)


def mails(engine: Engine, template: str | None = None) -> list[Outbox]:
    with read_only(engine) as s:
        q = select(Outbox).order_by(Outbox.id)
        if template:
            q = q.where(Outbox.template == template)
        return list(s.scalars(q))


def job_keys(engine: Engine) -> list[str]:
    with read_only(engine) as s:
        return list(s.scalars(select(JobRun.key).order_by(JobRun.id)))


WAITING = ScheduleConfig(reminder_after=3 * DAY, autoclose_after=7 * DAY)


def test_reminder_after_a_staff_reply_is_queued_once(engine):
    case_id = open_case(engine)
    reply_id = write(engine, case_id, "staff_reply", T0 + 1 * DAY)
    runner = ScheduleRunner(engine, IDENTITY, WAITING)
    assert runner.run(T0 + 3 * DAY).reminders == 0
    assert runner.run(T0 + 4 * DAY).reminders == 1
    assert runner.run(T0 + 4 * DAY).reminders == 0
    assert runner.run(T0 + 5 * DAY).reminders == 0
    (mail,) = mails(engine)
    assert mail.template == "customer/reminder" and mail.recipients == ["jane@customer.example"]
    assert mail.case_id == case_id and mail.context["reminder"]["reply_author"] == "Sam"
    assert mail.context["reminder"]["days"] == "3" and mail.context["reminder"]["autoclose_days"] == "7"
    assert job_keys(engine) == [f"reminder:{case_id}:{reply_id}"]


def test_an_answer_from_the_customer_stops_the_reminder_and_a_new_staff_reply_restarts_it(engine):
    case_id = open_case(engine)
    write(engine, case_id, "staff_reply", T0 + 1 * DAY)
    write(engine, case_id, "customer_message", T0 + 2 * DAY)
    # An internal note is not an answer to anyone: the customer still has the last public word.
    write(engine, case_id, "staff_reply", T0 + 2 * DAY + MIN, visibility="internal")
    runner = ScheduleRunner(engine, IDENTITY, WAITING)
    assert runner.run(T0 + 20 * DAY).queued == 0
    reply_id = write(engine, case_id, "staff_reply", T0 + 21 * DAY)
    assert runner.run(T0 + 24 * DAY).reminders == 1
    assert job_keys(engine) == [f"reminder:{case_id}:{reply_id}"]


def test_autoclose_closes_records_and_tells_the_requester_once(engine):
    case_id = open_case(engine)
    reply_id = write(engine, case_id, "staff_reply", T0 + 1 * DAY)
    runner = ScheduleRunner(engine, IDENTITY, WAITING)
    runner.run(T0 + 4 * DAY)
    report = runner.run(T0 + 8 * DAY)
    assert (report.autocloses, report.reminders) == (1, 0)
    assert runner.run(T0 + 8 * DAY).queued == 0
    assert runner.run(T0 + 9 * DAY).queued == 0
    assert [m.template for m in mails(engine)] == ["customer/reminder", "customer/closed"]
    with read_only(engine) as s:
        case = s.get(Case, case_id)
        assert case is not None and case.status == "closed" and case.closed_at == T0 + 8 * DAY
        change = cases.history(s, case)[-1]
        assert change.kind == "status_change" and change.details["by"] == "schedule"
        assert change.details["job"] == f"autoclose:{case_id}:{reply_id}"
    closed = mails(engine, "customer/closed")[0]
    assert closed.recipients == ["jane@customer.example"] and closed.context["case"]["status"] == "closed"


def test_a_long_outage_sends_the_close_without_a_reminder(engine):
    case_id = open_case(engine)
    write(engine, case_id, "staff_reply", T0)
    ScheduleRunner(engine, IDENTITY, WAITING).run(T0 + 30 * DAY)
    assert [m.template for m in mails(engine)] == ["customer/closed"]


ESCALATE = ScheduleConfig(escalate_after=30 * MIN, escalate_every=60 * MIN, oncall=("oncall@example.com",))


def test_escalation_repeats_until_staff_answer(engine):
    case_id = open_case(engine, severity=1)
    quiet = open_case(engine, severity=2, requester="bob@customer.example")
    runner = ScheduleRunner(engine, IDENTITY, ESCALATE)
    assert runner.run(T0 + 29 * MIN).escalations == 0
    assert runner.run(T0 + 30 * MIN).escalations == 1
    assert runner.run(T0 + 31 * MIN).escalations == 0
    assert runner.run(T0 + 90 * MIN).escalations == 1
    assert runner.run(T0 + 90 * MIN).escalations == 0
    write(engine, case_id, "staff_reply", T0 + 100 * MIN)
    assert runner.run(T0 + 300 * MIN).escalations == 0
    sent = mails(engine)
    assert [m.template for m in sent] == ["staff/escalation"] * 2
    assert {m.case_id for m in sent} == {case_id} and quiet != case_id
    assert sent[0].recipients == ["oncall@example.com"]
    assert [m.context["escalation"]["round"] for m in sent] == [1, 2]
    assert sent[1].context["escalation"]["reason"] == "severity 1"
    assert job_keys(engine) == [f"escalation:{case_id}:1", f"escalation:{case_id}:2"]


def test_production_down_escalates_whatever_its_severity(engine):
    case_id = open_case(engine, severity=3, down=True)
    ScheduleRunner(engine, IDENTITY, ESCALATE).run(T0 + 45 * MIN)
    (mail,) = mails(engine)
    assert mail.case_id == case_id and mail.context["escalation"]["reason"] == "production down"


def test_staff_digest_once_a_day_at_the_hour(engine):
    open_case(engine, severity=1)
    open_case(engine, severity=3, requester="bob@customer.example")
    cfg = ScheduleConfig(staff_digest_hour=7, staff=("staff@example.com", "lead@example.com"))
    runner = ScheduleRunner(engine, IDENTITY, cfg)
    day = datetime(2026, 11, 3, tzinfo=timezone.utc)
    assert runner.run(day + timedelta(hours=6, minutes=59)).staff_digests == 0
    assert runner.run(day + timedelta(hours=7)).staff_digests == 1
    assert runner.run(day + timedelta(hours=7, minutes=1)).staff_digests == 0
    assert runner.run(day + timedelta(hours=23)).staff_digests == 0
    assert runner.run(day + timedelta(days=1, hours=7)).staff_digests == 1
    first, second = mails(engine)
    assert first.template == "staff/digest" and first.case_id is None
    assert first.recipients == ["staff@example.com", "lead@example.com"]
    digest = first.context["digest"]
    assert digest["total"] == 2 and [g["severity"] for g in digest["groups"]] == [1, 3]
    assert digest["groups"][0]["cases"][0]["age"] == "22 h 0 min"
    assert second.context["digest"]["date"] == "2026-11-04"
    assert job_keys(engine) == ["digest:staff:2026-11-03", "digest:staff:2026-11-04"]


def test_customer_digest_lists_the_last_day_and_is_skipped_without_activity(engine):
    day = datetime(2026, 11, 10, 7, 0, tzinfo=timezone.utc)
    case_id = open_case(engine, at=day - 3 * DAY)
    other = open_case(engine, at=day - 3 * DAY, requester="bob@customer.example")
    write(engine, case_id, "staff_reply", day - 2 * DAY)          # before the window
    write(engine, case_id, "staff_reply", day - 5 * MIN)          # inside it
    write(engine, case_id, "staff_reply", day - 4 * MIN, visibility="internal")   # a note: never listed
    write(engine, case_id, "customer_message", day + MIN)         # after it: tomorrow's digest
    write(engine, other, "staff_reply", day - 3 * DAY + MIN)
    with unit_of_work(engine) as s:
        for contact in s.scalars(select(Contact).where(Contact.role == "customer")):
            contact.notify = "digest"
    runner = ScheduleRunner(engine, IDENTITY, ScheduleConfig(customer_digest_hour=7))
    assert runner.run(day - MIN).customer_digests == 0
    assert runner.run(day + 2 * MIN).customer_digests == 1
    assert runner.run(day + 3 * MIN).customer_digests == 0
    (mail,) = mails(engine)
    assert mail.template == "customer/digest" and mail.recipients == ["jane@customer.example"]
    (listed,) = mail.context["digest"]["cases"]
    assert listed["number"] == "00000001"
    assert [e["kind"] for e in listed["entries"]] == ["Reply from support"]
    assert listed["entries"][0]["author"] == "Sam"
    with read_only(engine) as s:
        bob = s.scalar(select(Contact.id).where(Contact.address_key == "bob@customer.example"))
        jane = s.scalar(select(Contact.id).where(Contact.address_key == "jane@customer.example"))
    # Bob had no activity: no mail, but his day is marked done so later checks skip him.
    assert sorted(job_keys(engine)) == sorted([f"digest:{jane}:2026-11-10", f"digest:{bob}:2026-11-10"])
    assert runner.run(day + DAY).customer_digests == 1


def test_a_participant_in_digest_mode_gets_the_activity_too(engine):
    day = datetime(2026, 11, 10, 7, 0, tzinfo=timezone.utc)
    case_id = open_case(engine, at=day - DAY)
    with unit_of_work(engine) as s:
        case = s.get(Case, case_id)
        assert case is not None
        cc = ensure_contact(s, "cc@customer.example", now=day - DAY)
        cc.notify = "digest"
        cases.add_participant(s, case, cc, now=day - DAY)
    write(engine, case_id, "staff_reply", day - MIN)
    ScheduleRunner(engine, IDENTITY, ScheduleConfig(customer_digest_hour=7)).run(day)
    (mail,) = mails(engine)
    assert mail.recipients == ["cc@customer.example"]


def test_take_key_is_insert_if_absent_and_leaves_the_transaction_usable(engine):
    with unit_of_work(engine) as s:
        assert jobs.take_key(s, "k:1", now=T0) is not None
        assert jobs.take_key(s, "k:1", now=T0) is None
        assert s.scalar(select(func.count()).select_from(JobRun)) == 1
        assert jobs.take_key(s, "k:2", now=T0) is not None
    assert job_keys(engine) == ["k:1", "k:2"]
    with unit_of_work(engine) as s:
        assert jobs.take_key(s, "k:2", now=T0) is None
        assert jobs.keys_taken(s, ["k:1", "k:3"]) == {"k:1"}


def test_two_daemons_running_the_same_jobs_at_once_queue_each_mail_once(engine):
    for i in range(3):
        case_id = open_case(engine, requester=f"c{i}@customer.example")
        write(engine, case_id, "staff_reply", T0)
    open_case(engine, severity=1, requester="urgent@customer.example")
    cfg = ScheduleConfig(reminder_after=3 * DAY, escalate_after=30 * MIN, oncall=("oncall@example.com",),
                         staff_digest_hour=0, staff=("staff@example.com",))
    now = T0 + 4 * DAY
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def daemon() -> None:
        try:
            runner = ScheduleRunner(engine, IDENTITY, cfg)
            barrier.wait()
            runner.run(now)
        except BaseException as exc:  # noqa: BLE001 - reported below.
            errors.append(exc)

    threads = [threading.Thread(target=daemon) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(m.template for m in mails(engine)) == ["customer/reminder"] * 3 + ["staff/digest",
                                                                                      "staff/escalation"]
    with read_only(engine) as s:
        assert s.scalar(select(func.count()).select_from(Entry).where(Entry.kind == "status_change")) == 0


def test_a_job_that_fails_leaves_no_key_holds_up_no_other_and_is_done_at_the_next_check(engine, monkeypatch):
    import notifier.jobs

    case_id = open_case(engine)
    write(engine, case_id, "staff_reply", T0)
    other = open_case(engine, requester="bob@customer.example")
    other_reply = write(engine, other, "staff_reply", T0)
    real = notifier.jobs.queue_closed_notices
    calls = []

    def failing_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["what"])
        if len(calls) == 1:
            raise RuntimeError("the disk is full")
        return real(*args, **kwargs)

    monkeypatch.setattr(notifier.jobs, "queue_closed_notices", failing_once)
    runner = ScheduleRunner(engine, IDENTITY, WAITING)
    assert runner.run(T0 + 8 * DAY).autocloses == 1
    # The first case's key, close and entry were rolled back with the mail that failed; the other
    # case was closed all the same.
    assert job_keys(engine) == [f"autoclose:{other}:{other_reply}"]
    with read_only(engine) as s:
        case = s.get(Case, case_id)
        assert case is not None and case.status == "open" and len(cases.history(s, case)) == 2
    assert runner.run(T0 + 8 * DAY).autocloses == 1
    assert [m.case_id for m in mails(engine, "customer/closed")] == [other, case_id]


def test_a_staff_reply_that_asks_nothing_starts_no_reminder_or_close(engine):
    case_id = open_case(engine)
    write(engine, case_id, "staff_reply", T0 + 1 * DAY, text="Fixed in version 2.1.")
    result = ScheduleRunner(engine, IDENTITY, WAITING).run(T0 + 30 * DAY)
    assert (result.reminders, result.autocloses) == (0, 0)
    assert mails(engine, "customer/reminder") == [] and mails(engine, "customer/closed") == []


def test_an_automatic_close_tells_everyone_a_close_by_mail_tells(engine):
    # The table's "closed" row: the requester and the people copied get customer/closed, the assignee
    # staff/changed; a person copied who asked for the digest only is not mailed now.
    case_id = open_case(engine)
    with unit_of_work(engine) as s:
        case = s.get(Case, case_id)
        assert case is not None
        cases.add_participant(s, case, ensure_contact(s, "cc@customer.example", now=T0), now=T0)
        quiet = ensure_contact(s, "quiet@customer.example", now=T0)
        quiet.notify = "digest"
        cases.add_participant(s, case, quiet, now=T0)
        cases.set_assignee(s, case, ensure_contact(s, "sam@example.com", role="staff", now=T0), now=T0)
    write(engine, case_id, "staff_reply", T0)
    assert ScheduleRunner(engine, IDENTITY, WAITING).run(T0 + 8 * DAY).autocloses == 1
    closed = mails(engine, "customer/closed")
    assert [m.recipients for m in closed] == [["jane@customer.example", "cc@customer.example"]]
    assert closed[0].context["autoclose"]["days"]
    (changed,) = mails(engine, "staff/changed")
    assert changed.recipients == ["sam@example.com"]
    assert "closed automatically" in changed.context["changes"][0]["what"]
