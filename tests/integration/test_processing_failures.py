# SPDX-License-Identifier: GPL-3.0-or-later
"""What becomes of a message whose processing fails: retried, then quarantined, never lost.

A failure of the store (a lock that timed out, a lost connection) is not the message's fault and
does not use up its attempts; a failure that comes from the message does, and ends in quarantine with
the reason, the raw bytes kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import select
from sqlalchemy.orm import undefer

import intake.process
from casemail.app import make_identity, make_intake_config, open_store
from casemail.settings import settings_from_dict
from intake.accept import Acceptor, Envelope
from intake.process import process_batch, process_inbound
from store import cases, inbound
from store.db import read_only, unit_of_work
from store.models import Case, Entry, Inbound

RAW = b"From: jane@customer.example\r\nTo: support@example.com\r\nSubject: Printer broken\r\nMessage-ID: <f1@c>\r\n\r\nHi\r\n"


def _now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def setup(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    settings = settings_from_dict({"database": {"url": database_url},
                                   "support": {"secret_key": "failure-test-key-0123456789"}}, base_dir=tmp_path)
    store = open_store(settings)
    cfg = make_intake_config(settings, make_identity(settings))
    acceptor = Acceptor(store.engine, store.blobs, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    inbound_id = acceptor.accept_sync(RAW, Envelope("smtp", "jane@customer.example", ("support@example.com",)))
    yield store, cfg, inbound_id
    store.engine.dispose()


def _row(store, inbound_id):  # type: ignore[no-untyped-def]
    with read_only(store.engine) as s:
        return s.get(Inbound, inbound_id, options=[undefer(Inbound.raw)])


def _failing(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise exc

    monkeypatch.setattr(intake.process, "decide_and_apply", boom)


def _quarantine(store, cfg, inbound_id, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Fail the message's processing on every attempt, as a bug it triggers would."""
    _failing(monkeypatch, RuntimeError("a bug this message triggers"))
    for _ in range(cfg.max_attempts):
        with pytest.raises(RuntimeError):
            process_inbound(store.engine, store.blobs, inbound_id, cfg, _now)


def test_a_store_outage_uses_up_no_attempt(setup, monkeypatch):
    store, cfg, inbound_id = setup
    _failing(monkeypatch, sqlalchemy.exc.OperationalError("INSERT ...", {}, Exception("database is locked")))
    for _ in range(cfg.max_attempts + 2):
        with pytest.raises(sqlalchemy.exc.OperationalError):
            process_inbound(store.engine, store.blobs, inbound_id, cfg, _now)
    row = _row(store, inbound_id)
    assert (row.state, row.attempts) == ("accepted", 0)
    monkeypatch.undo()
    assert process_inbound(store.engine, store.blobs, inbound_id, cfg, _now) == "new-case"


def test_a_message_that_keeps_failing_is_quarantined_with_its_reason(setup, monkeypatch):
    store, cfg, inbound_id = setup
    _quarantine(store, cfg, inbound_id, monkeypatch)
    row = _row(store, inbound_id)
    assert (row.state, row.outcome) == ("processed", "quarantined")
    assert "a bug this message triggers" in row.reason
    assert store.blobs.get_unless_inline(row.sha256, row.raw) == RAW  # kept, for an operator


def test_a_copy_already_processed_is_a_duplicate_before_any_reading(setup, monkeypatch):
    store, cfg, first = setup
    assert process_inbound(store.engine, store.blobs, first, cfg, _now) == "new-case"
    acceptor = Acceptor(store.engine, store.blobs, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    second = acceptor.accept_sync(RAW, Envelope("imap", "jane@customer.example", ("support@example.com",)))
    # Reading would fail: a duplicate must be recognised without it.
    monkeypatch.setattr(intake.process, "read_mail", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert process_inbound(store.engine, store.blobs, second, cfg, _now) == "duplicate"
    row = _row(store, second)
    assert (row.outcome, row.attempts) == ("duplicate", 0)


def test_a_group_keeps_its_good_mails_when_some_fail(setup, monkeypatch):
    store, cfg, first = setup
    acceptor = Acceptor(store.engine, store.blobs, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    ids = [first] + [
        acceptor.accept_sync(RAW.replace(b"<f1@c>", f"<f{n}@c>".encode()).replace(b"Hi", f"Hi {n}".encode()),
                             Envelope("smtp", f"c{n}@customer.example", ("support@example.com",)))
        for n in range(2, 6)
    ]
    unreadable, unappliable = ids[1], ids[3]
    real_read, real_apply = intake.process.read_mail, intake.process.decide_and_apply

    def read(raw, **kwargs):  # type: ignore[no-untyped-def]
        if b"Hi 2" in raw:
            raise ValueError("cannot read this one")
        return real_read(raw, **kwargs)

    def apply(s, row, facts, cfg, now):  # type: ignore[no-untyped-def]
        result = real_apply(s, row, facts, cfg, now)   # its writes happen, then are rolled back
        if row.id == unappliable:
            raise RuntimeError("cannot apply this one")
        return result

    monkeypatch.setattr(intake.process, "read_mail", read)
    monkeypatch.setattr(intake.process, "decide_and_apply", apply)
    results = process_batch(store.engine, store.blobs, ids, cfg, _now)

    assert [type(r).__name__ if isinstance(r, Exception) else r for r in results] == [
        "new-case", "ValueError", "new-case", "RuntimeError", "new-case"]
    for inbound_id in (unreadable, unappliable):
        row = _row(store, inbound_id)
        assert (row.state, row.attempts, row.case_id) == ("accepted", 1, None)
        assert "cannot" in row.reason
    with read_only(store.engine) as s:
        # Three cases, numbered without a gap: the rolled-back one left nothing behind.
        assert sorted(c.number for c in s.query(Case).all()) == [1, 2, 3]
    monkeypatch.undo()
    assert process_batch(store.engine, store.blobs, [unreadable, unappliable], cfg, _now) == ["new-case", "new-case"]


def test_copies_processed_at_the_same_moment_take_turns(setup, database_url):
    """Two processors of copies of one message: the second waits for the first, then sees its case."""
    import threading

    from store import inbound

    store, cfg, first = setup
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's one write lock already orders every processor")
    acceptor = Acceptor(store.engine, store.blobs, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    # The same Message-ID from the same sender, different bytes (a second delivery path added a line).
    copy = acceptor.accept_sync(b"Received: by another.example\r\n" + RAW,
                                Envelope("smtp", "jane@customer.example", ("support@example.com",)))
    events: list[str] = []

    def second() -> None:
        with unit_of_work(store.engine) as s:
            inbound.lock_copies(s, s.get(Inbound, copy))
            events.append("copy locked")

    with unit_of_work(store.engine) as s:
        inbound.lock_copies(s, s.get(Inbound, first))
        worker = threading.Thread(target=second)
        worker.start()
        worker.join(0.5)   # it cannot get the lock while this transaction holds it
        assert worker.is_alive() and events == []
        events.append("first done")
    worker.join(10)
    assert events == ["first done", "copy locked"]
    assert process_inbound(store.engine, store.blobs, first, cfg, _now) == "new-case"
    assert process_inbound(store.engine, store.blobs, copy, cfg, _now) == "duplicate"


def test_a_mail_that_fails_after_opening_its_case_leaves_nothing_for_the_next(setup, monkeypatch):
    # The failure is raised inside apply_plan, so the exception kept as the mail's result holds on to
    # its contact and case while the rest of the group is processed; SQLite hands their ids out again.
    store, cfg, first = setup
    acceptor = Acceptor(store.engine, store.blobs, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    ids = [first] + [
        acceptor.accept_sync(RAW.replace(b"jane@", f"c{n}@".encode()).replace(b"<f1@c>", f"<f{n}@c>".encode())
                             .replace(b"Hi", f"Hi {n}".encode()),
                             Envelope("smtp", f"c{n}@customer.example", ("support@example.com",)))
        for n in (2, 3)
    ]
    real_add_entry = cases.add_entry

    def add_entry(s, case, **kwargs):  # type: ignore[no-untyped-def]
        entry_id = real_add_entry(s, case, **kwargs)
        if "Hi 2" in kwargs.get("text", ""):
            raise RuntimeError("cannot apply this one")
        return entry_id

    monkeypatch.setattr(cases, "add_entry", add_entry)
    results = process_batch(store.engine, store.blobs, ids, cfg, _now)

    assert [type(r).__name__ if isinstance(r, Exception) else r for r in results] == [
        "new-case", "RuntimeError", "new-case"]
    with read_only(store.engine) as s:
        assert sorted((c.number, c.requester.address) for c in s.query(Case).all()) == [
            (1, "jane@customer.example"), (2, "c3@customer.example")]


def test_a_requeued_message_is_processed_once_the_cause_is_gone(setup, monkeypatch):
    store, cfg, inbound_id = setup
    _quarantine(store, cfg, inbound_id, monkeypatch)
    monkeypatch.undo()   # the bug is fixed
    with unit_of_work(store.engine) as s:
        assert [r.id for r in inbound.quarantined(s)] == [inbound_id]
        assert inbound.requeue(s, [inbound_id, inbound_id + 1000]) == [inbound_id]
    row = _row(store, inbound_id)
    assert (row.state, row.outcome, row.attempts) == ("accepted", None, 0)

    assert process_inbound(store.engine, store.blobs, inbound_id, cfg, _now) == "new-case"
    with unit_of_work(store.engine) as s:
        assert inbound.quarantined(s) == []
        assert inbound.requeue(s, [inbound_id]) == []     # only quarantined mail is requeued


def test_a_copy_sent_again_after_a_quarantine_is_processed_not_swallowed(setup, monkeypatch):
    store, cfg, inbound_id = setup
    _quarantine(store, cfg, inbound_id, monkeypatch)
    monkeypatch.undo()
    acceptor = Acceptor(store.engine, store.blobs, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    again = acceptor.accept_sync(RAW, Envelope("smtp", "jane@customer.example", ("support@example.com",)))
    assert process_inbound(store.engine, store.blobs, again, cfg, _now) == "new-case"
    # Re-running the quarantined one now finds the copy: still one case.
    with unit_of_work(store.engine) as s:
        inbound.requeue(s, [inbound_id])
    assert process_inbound(store.engine, store.blobs, inbound_id, cfg, _now) == "duplicate"
    with read_only(store.engine) as s:
        assert s.query(Case).count() == 1


def test_a_reply_marks_its_case_active_and_a_failed_one_does_not(setup, monkeypatch):
    # The case's last activity (My Cases sorts by it) is written when a reply lands; a reply whose
    # savepoint is rolled back leaves the stored time, and the next mail of the group sees that.
    store, cfg, first = setup
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    assert process_inbound(store.engine, store.blobs, first, cfg, lambda: t0) == "new-case"
    acceptor = Acceptor(store.engine, store.blobs, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    replies = [acceptor.accept_sync(
        f"From: jane@customer.example\r\nTo: support@example.com\r\nSubject: Re: [Case #00000001] Printer "
        f"broken\r\nMessage-ID: <r{n}@c>\r\n\r\nReply {n}\r\n".encode(),
        Envelope("smtp", "jane@customer.example", ("support@example.com",))) for n in (1, 2)]
    real_apply = intake.process.decide_and_apply

    held: list[Case] = []

    def apply(s, row, facts, cfg, now):  # type: ignore[no-untyped-def]
        result = real_apply(s, row, facts, cfg, now)
        if row.id == replies[0]:
            # Kept referenced, as a caller up the stack would keep it, so the session cannot simply
            # forget the case whose time the rolled-back savepoint wrote.
            held.append(cases.get_case(s, 1))
            raise RuntimeError("cannot apply this one")
        return result

    monkeypatch.setattr(intake.process, "decide_and_apply", apply)
    t1 = t0 + timedelta(hours=1)
    results = process_batch(store.engine, store.blobs, replies, cfg, lambda: t1)
    assert isinstance(results[0], RuntimeError) and results[1] == "comment"
    with read_only(store.engine) as s:
        case = s.scalars(select(Case)).one()
        assert case.updated_at == t1
        # The failed reply left nothing on the case.
        assert s.scalars(select(Entry.id).where(Entry.inbound_id == replies[0])).all() == []
    # The failed reply alone, processed again at a later time without the fault, moves it once more.
    monkeypatch.setattr(intake.process, "decide_and_apply", real_apply)
    t2 = t1 + timedelta(hours=1)
    assert process_inbound(store.engine, store.blobs, replies[0], cfg, lambda: t2) == "comment"
    with read_only(store.engine) as s:
        assert s.scalars(select(Case)).one().updated_at == t2
