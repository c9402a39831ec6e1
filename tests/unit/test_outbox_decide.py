# SPDX-License-Identifier: GPL-3.0-or-later
"""What the outbox writes for each outcome of a send (notifier.batch.decide), as a table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from notifier.batch import Job, Outcome, decide

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
GIVE_UP = timedelta(hours=120)
RETRY_AT = NOW + timedelta(minutes=5)


def job(job_id: int = 1, *, case_id: int | None = 7, template: str = "customer/ack") -> Job:
    return Job(job_id, case_id, b"bytes", "Subject", "Text", ["jane@customer.example"], "<m1@desk.example>",
               template, NOW - timedelta(minutes=1), 0)


CASES = [
    # (what, outcome, created, expected (state, attempted, error, retry_at), entry expected)
    ("sent", Outcome(1, sent=True, job=job()), NOW, ("sent", True, None, None), True),
    ("sent, one recipient refused", Outcome(1, sent=True, refused=("bob@x: 550 no",), job=job()), NOW,
     ("sent", True, "refused: bob@x: 550 no", None), True),
    ("sent, no case to record it on", Outcome(1, sent=True, job=job(case_id=None)), NOW,
     ("sent", True, None, None), False),
    ("refused for good", Outcome(1, sent=False, error="554 spam", permanent=True, job=job()), NOW,
     ("failed", True, "554 spam", None), False),
    ("could not be rendered: no attempt made", Outcome(1, sent=False, error="rendering failed", permanent=True),
     NOW, ("failed", False, "rendering failed", None), False),
    ("temporary, tried again later", Outcome(1, sent=False, error="451 later", retry_at=RETRY_AT, job=job()),
     NOW - timedelta(hours=1), ("queued", True, "451 later", RETRY_AT), False),
    ("temporary, but retried for too long", Outcome(1, sent=False, error="451 later", retry_at=RETRY_AT,
                                                    job=job()),
     NOW - GIVE_UP - timedelta(seconds=1), ("failed", True, "451 later", None), False),
    ("temporary without a time to retry", Outcome(1, sent=False, error="odd", job=job()), NOW,
     ("failed", True, "odd", None), False),
]


@pytest.mark.parametrize(("what", "outcome", "created", "expected", "entry"), CASES, ids=[c[0] for c in CASES])
def test_each_outcome_is_written_as_the_table_says(what: str, outcome: Outcome, created: datetime,
                                                    expected: tuple[object, ...], entry: bool) -> None:
    gave_up: list[int] = []
    finished, entries = decide([outcome], {1: created}, now=NOW, give_up_after=GIVE_UP,
                               on_gave_up=lambda i, _e: gave_up.append(i))
    [f] = finished
    assert (f.state, f.attempted, f.error, f.retry_at) == expected
    assert len(entries) == (1 if entry else 0)
    assert all(e.visibility == "public" for e in entries)   # a customer's mail, on the customer's view
    assert gave_up == ([1] if what == "temporary, but retried for too long" else [])


def test_a_sent_mails_entry_records_what_was_sent() -> None:
    staff_note = job(template="staff/internal_note")
    _, [entry] = decide([Outcome(1, sent=True, refused=("bob@x: 550 no",), job=staff_note)], {1: NOW}, now=NOW,
                        give_up_after=GIVE_UP)
    assert (entry.case_id, entry.outbox_id, entry.message_id, entry.subject) == (7, 1, "m1@desk.example", "Subject")
    assert entry.visibility == "internal"   # a staff-only notification stays off the customer's view
    assert entry.details == {"template": "staff/internal_note", "recipients": ["jane@customer.example"],
                             "refused": ["bob@x: 550 no"]}


def test_a_row_no_longer_sending_is_left_alone() -> None:
    # Released at a shutdown, or taken over by another daemon after its lease: not in `created`.
    finished, entries = decide([Outcome(1, sent=True, job=job())], {}, now=NOW, give_up_after=GIVE_UP)
    assert finished == [] and entries == []
