# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure schedule decisions: which cases are due for a reminder, a close, an escalation, a digest."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from notifier import schedules
from notifier.schedules import Due, ScheduleConfig
from store.jobs import CaseClock

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
MIN = timedelta(minutes=1)


def clock(*, kind: str | None = "staff_reply", at: datetime | None = T0, entry: int | None = 10, severity: int = 3,
          down: bool = False, staff_replied: bool = True, created: datetime = T0 - DAY) -> CaseClock:
    return CaseClock(case_id=1, number=1, subject="s", severity=severity, production_down=down, created_at=created,
                     requester_address="jane@customer.example", last_human_entry_id=entry if kind else None,
                     last_human_kind=kind, last_human_at=at if kind else None, staff_replied=staff_replied)


WAITING = ScheduleConfig(reminder_after=3 * DAY, autoclose_after=7 * DAY)


@pytest.mark.parametrize("case, now, cfg, reminders, closes", [
    # Not yet: two days after the staff reply.
    (clock(), T0 + 2 * DAY, WAITING, [], []),
    # The reminder is due from day 3 ...
    (clock(), T0 + 3 * DAY, WAITING, ["reminder:1:10"], []),
    (clock(), T0 + 6 * DAY, WAITING, ["reminder:1:10"], []),
    # ... and the close from day 7, which then replaces the reminder.
    (clock(), T0 + 7 * DAY, WAITING, [], ["autoclose:1:10"]),
    (clock(), T0 + 30 * DAY, WAITING, [], ["autoclose:1:10"]),
    # The customer had the last word: nothing waits on them.
    (clock(kind="customer_message"), T0 + 30 * DAY, WAITING, [], []),
    # No human entry at all.
    (clock(kind=None), T0 + 30 * DAY, WAITING, [], []),
    # Off unless configured.
    (clock(), T0 + 30 * DAY, ScheduleConfig(), [], []),
    (clock(), T0 + 30 * DAY, ScheduleConfig(reminder_after=3 * DAY), ["reminder:1:10"], []),
    (clock(), T0 + 3 * DAY, ScheduleConfig(autoclose_after=3 * DAY), [], ["autoclose:1:10"]),
    # A newer staff reply is a new piece of work with a new key.
    (clock(entry=11, at=T0 + DAY), T0 + 4 * DAY, WAITING, ["reminder:1:11"], []),
])
def test_waiting_on_the_customer(case, now, cfg, reminders, closes):
    assert [d.key for d in schedules.due_reminders([case], now, cfg)] == reminders
    assert [d.key for d in schedules.due_autocloses([case], now, cfg)] == closes


def test_due_items_name_case_and_entry():
    assert schedules.due_reminders([clock()], T0 + 3 * DAY, WAITING) == [Due("reminder:1:10", 1, 10)]


ESCALATE = ScheduleConfig(escalate_after=30 * MIN, escalate_every=60 * MIN, oncall=("oncall@example.com",))
NEW = dict(kind="customer_message", staff_replied=False, created=T0)


@pytest.mark.parametrize("case, now, cfg, keys", [
    # Severity 1, unanswered: first escalation at 30 minutes, then every hour.
    (clock(severity=1, **NEW), T0 + 29 * MIN, ESCALATE, []),
    (clock(severity=1, **NEW), T0 + 30 * MIN, ESCALATE, ["escalation:1:1"]),
    (clock(severity=1, **NEW), T0 + 89 * MIN, ESCALATE, ["escalation:1:1"]),
    (clock(severity=1, **NEW), T0 + 90 * MIN, ESCALATE, ["escalation:1:2"]),
    # After a long outage only the current round, not every missed one.
    (clock(severity=1, **NEW), T0 + 10 * 60 * MIN, ESCALATE, ["escalation:1:10"]),
    # Production down counts like severity 1.
    (clock(severity=3, down=True, **NEW), T0 + 30 * MIN, ESCALATE, ["escalation:1:1"]),
    # Neither: no escalation.
    (clock(severity=2, **NEW), T0 + 300 * MIN, ESCALATE, []),
    # A staff reply stops it.
    (clock(severity=1, kind="staff_reply", staff_replied=True, created=T0), T0 + 300 * MIN, ESCALATE, []),
    # Once only when no repeat is configured.
    (clock(severity=1, **NEW), T0 + 300 * MIN, replace(ESCALATE, escalate_every=None), ["escalation:1:1"]),
    # Off unless configured.
    (clock(severity=1, **NEW), T0 + 300 * MIN, ScheduleConfig(), []),
])
def test_escalation(case, now, cfg, keys):
    assert [d.key for d in schedules.due_escalations([case], now, cfg)] == keys


@pytest.mark.parametrize("now, hour, moment", [
    (datetime(2026, 11, 29, 6, 59, tzinfo=timezone.utc), 7, None),
    (datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc), 7, datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc)),
    (datetime(2026, 11, 29, 23, 0, tzinfo=timezone.utc), 7, datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc)),
    (datetime(2026, 11, 29, 0, 0, tzinfo=timezone.utc), 0, datetime(2026, 11, 29, 0, 0, tzinfo=timezone.utc)),
    # A clock in another zone is read in UTC.
    (datetime(2026, 11, 29, 8, 30, tzinfo=timezone(timedelta(hours=2))), 7, None),
    (datetime(2026, 11, 29, 9, 30, tzinfo=timezone(timedelta(hours=2))), 7,
     datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc)),
    (datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc), None, None),
])
def test_digest_moment(now, hour, moment):
    assert schedules.digest_moment(now, hour) == moment


def test_digest_keys_name_the_day():
    moment = datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc)
    assert schedules.staff_digest_key(moment) == "digest:staff:2026-11-29"
    assert schedules.customer_digest_key(42, moment) == "digest:42:2026-11-29"


@pytest.mark.parametrize("delta, text", [
    (timedelta(seconds=59), "0 min"),
    (timedelta(minutes=7), "7 min"),
    (timedelta(hours=5, minutes=12), "5 h 12 min"),
    (timedelta(days=3, hours=4, minutes=59), "3 d 4 h"),
    (timedelta(seconds=-5), "0 min"),
])
def test_format_age(delta, text):
    assert schedules.format_age(delta) == text


def test_config_is_enabled_by_any_schedule():
    assert not ScheduleConfig().enabled
    assert ScheduleConfig(staff_digest_hour=0).enabled
    assert ScheduleConfig(reminder_after=DAY).enabled
