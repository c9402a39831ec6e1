# SPDX-License-Identifier: GPL-3.0-or-later
"""Case subject search on a real database (SQLite FTS5 and PostgreSQL full text).

What a search means (store.cases.listing): every word must be found in the subject, in any case
and any order, each as the start of a word there; punctuation only separates words, so whatever a
customer types (quotes, *, NEAR, OR, -, :) is text, never query syntax; a word that is nothing but
punctuation is looked for as typed. The same table of searches runs on both databases.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, delete, event, insert, select, text

from store import cases
from store.contacts import ensure_contact
from store.db import MIGRATIONS, make_engine, migrate, read_only, unit_of_work
from store.models import Case, Counter

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
JANE = "jane@customer.example"
BOB = "bob@kunde.example"

# (subject, status, requester); case n is updated n minutes after T0, so the newest is listed first.
SUBJECTS = [
    ("Printer on fire", "open", JANE),                      # 1
    ("printer tray jammed again", "closed", JANE),          # 2
    ("Drucker-Störung im Büro", "open", BOB),               # 3
    ("STÖRUNG beim Scannen", "open", BOB),                  # 4
    ("mail to jane@example.com bounces", "open", JANE),     # 5
    ("C++ build fails: NEAR OR -x", "closed", BOB),         # 6
    ('Quote "test" in subject', "open", JANE),              # 7
    ("Upgrade to 2.1.3 fails", "open", BOB),                # 8
    ("café crème machine", "open", JANE),                   # 9
    ("100% CPU_usage at night", "open", BOB),               # 10
    ("Why? #42", "open", JANE),                             # 11
    ("Can't print invoices", "open", JANE),                 # 12
]
ALL = list(range(len(SUBJECTS), 0, -1))

# (search, the case numbers found, newest first)
SEARCHES: list[tuple[str, list[int]]] = [
    ("", ALL),
    ("   ", ALL),
    # Case and prefixes: a word matches the start of a word, not its middle.
    ("print", [12, 2, 1]),
    ("PRINTER", [2, 1]),
    ("Printer fire", [1]),
    ("fire printer", [1]),
    ("rinter", []),
    ("printer tray jammed again", [2]),
    ("jammed fire", []),
    # Punctuation inside a word: its parts, one after the other.
    ("Drucker-Störung", [3]),
    ("drucker störung", [3]),
    ("störung drucker", [3]),
    ("Störung", [4, 3]),
    ("Drucker-Büro", []),
    ("example", [5]),
    ("jane@example.com", [5]),
    ("jane@example.org", []),
    ("2.1", [8]),
    ("2.1.3", [8]),
    ("CPU_usage", [10]),
    ("100%", [10]),
    ("can't", [12]),
    ("fails:", [8, 6]),
    ("café", [9]),
    ("cafe", []),            # diacritics count, as they did with LIKE
    # Query syntax typed by a customer is text.
    ('"test"', [7]),
    ('"', [7]),
    ('"printer', [2, 1]),
    ("print*", [12, 2, 1]),
    ("*", []),
    ("NEAR", [6]),
    ("near(printer fire)", []),
    ("OR", [6]),
    ("printer OR café", []),
    ("printer NOT fire", []),
    ("printer AND fire", []),
    ("-x", [6]),
    ("printer -fire", [1]),  # not "printer NOT fire", which would be [2]
    ("subject:printer", []),
    ("subject : printer", []),
    ("{subject}:printer", []),
    ("^printer", [2, 1]),
    ("printer+fire", []),
    ("(printer)", [2, 1]),
    ("printer'", [2, 1]),
    ("'", [12]),
    ("\\", []),
    ("'; DROP TABLE cases; --", []),
    # Words without a letter or digit are looked for as typed.
    ("#", [11]),
    ("?", [11]),
    ("%", [10]),
    ("_", [10]),
    ("++", [6]),
    ("Drucker -", [3]),
    ("printer -", []),
    ("#42", [11]),
]


def add_cases(engine: Engine, subjects: list[tuple[str, str, str]], *, first_minute: int = 1) -> list[int]:
    numbers = []
    with unit_of_work(engine) as s:
        for i, (subject, status, requester) in enumerate(subjects):
            at = T0 + timedelta(minutes=first_minute + i)
            who = ensure_contact(s, requester, now=T0)
            case = cases.create_case(s, subject=subject, requester=who, description="", product=None,
                                     version=None, severity=3, severity_source="default",
                                     production_down=False, follow_up_of=None, now=at)
            if status == "closed":
                cases.close_case(s, case, now=at)
            numbers.append(case.number)
    return numbers


def found(engine: Engine, search: str, **kwargs: Any) -> list[int]:
    with read_only(engine) as s:
        return [c.number for c in cases.listing(s, search=search, **kwargs)]


def folds_non_ascii_case(engine: Engine) -> bool:
    # PostgreSQL lowercases by the database's LC_CTYPE; in the C locale "Ö" stays "Ö".
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect() as conn:
        return conn.execute(text("SELECT lower('Ö') = 'ö'")).scalar() is True


def test_search_table(engine: Engine) -> None:
    assert add_cases(engine, SUBJECTS) == list(range(1, len(SUBJECTS) + 1))
    wrong = {search: (got, want) for search, want in SEARCHES if (got := found(engine, search)) != want}
    assert wrong == {}


def test_non_ascii_words_in_any_case(engine: Engine) -> None:
    if not folds_non_ascii_case(engine):
        pytest.skip("this PostgreSQL database's LC_CTYPE does not fold the case of non-ASCII letters")
    add_cases(engine, SUBJECTS)
    assert found(engine, "DRUCKER-STÖRUNG") == [3]
    assert found(engine, "störung") == [4, 3]
    assert found(engine, "CAFÉ CRÈME") == [9]


def test_status_requester_and_limit(engine: Engine) -> None:
    add_cases(engine, SUBJECTS)
    assert found(engine, "printer", status="open") == [1]
    assert found(engine, "printer", status="closed") == [2]
    assert found(engine, "print", requester=JANE) == [12, 2, 1]
    assert found(engine, "print", requester="JANE@Customer.Example", status="open") == [12, 1]
    assert found(engine, "störung", requester=JANE) == []
    assert found(engine, "#", requester=BOB) == []
    assert found(engine, "", requester=BOB, status="open") == [10, 8, 4, 3]
    assert found(engine, "", requester="nobody@example.com") == []
    assert found(engine, "print", limit=2) == [12, 2]
    assert found(engine, "", limit=3) == ALL[:3]
    with pytest.raises(ValueError):
        found(engine, "printer", status="pending")


def test_order_is_updated_then_number(engine: Engine) -> None:
    # Three cases updated at the same moment: the higher number first, as before.
    add_cases(engine, [("Printer A", "open", JANE)], first_minute=5)
    add_cases(engine, [("Printer B", "open", JANE)], first_minute=5)
    add_cases(engine, [("Printer C", "open", JANE)], first_minute=9)
    add_cases(engine, [("Printer D", "open", BOB)], first_minute=5)
    assert found(engine, "printer") == [3, 4, 2, 1]
    assert found(engine, "printer", requester=JANE) == [3, 2, 1]


def test_index_follows_inserts_deletes_and_subject_changes(engine: Engine) -> None:
    add_cases(engine, SUBJECTS[:2])
    assert found(engine, "scanner") == []
    add_cases(engine, [("Scanner offline", "open", BOB), ("Scanner jammed", "open", JANE)], first_minute=10)
    assert found(engine, "scanner") == [4, 3]
    with unit_of_work(engine) as s:
        s.execute(delete(Case).where(Case.number == 3))
    assert found(engine, "scanner") == [4]
    assert found(engine, "offline") == []
    # Nothing changes a subject today, but the index must not go stale if something does.
    with unit_of_work(engine) as s:
        s.execute(Case.__table__.update().where(Case.number == 4).values(subject="Plotter jammed"))
    assert found(engine, "scanner") == []
    assert found(engine, "plotter jammed") == [4]
    assert found(engine, "jammed") == [4, 2]


def test_cases_made_before_the_index_are_found(database_url: str) -> None:
    e = make_engine(database_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with e.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
        add_cases(e, SUBJECTS[:4])
        migrate(e)
        assert found(e, "printer") == [2, 1]
        assert found(e, "Drucker-Störung") == [3]
        add_cases(e, [("Printer again", "open", JANE)], first_minute=20)
        assert found(e, "printer") == [5, 2, 1]
    finally:
        e.dispose()


def plan_of(engine: Engine, **kwargs: Any) -> str:
    """The database's plan for the statement listing() runs (on PostgreSQL with seq scans off, so
    that a table of a dozen rows is not simply read whole)."""
    statements: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        with read_only(engine) as s:
            cases.listing(s, **kwargs)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    statement, parameters = statements[-1]  # the listing itself comes last
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        else:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return "\n".join(str(r[-1]) for r in rows)


def add_filler(engine: Engine, count: int) -> None:
    """Cases enough, and statistics, for the planner to choose as it would on a real desk: on a table
    of a dozen rows reading everything is rightly the cheapest plan."""
    with unit_of_work(engine) as s:
        requesters = [ensure_contact(s, f"filler{i}@example.org", now=T0).id for i in range(50)]
        start = cases.next_case_number(s)
        s.execute(insert(Case), [
            {"number": start + i, "subject": f"Widget {i} report {i % 7}", "description": "", "severity": 3,
             "severity_source": "default", "production_down": False,
             "status": "open" if i % 4 == 0 else "closed", "requester_id": requesters[i % 50],
             "created_at": T0 - timedelta(days=1, minutes=i), "updated_at": T0 - timedelta(days=1, minutes=i)}
            for i in range(count)
        ])
        s.execute(Counter.__table__.update().where(Counter.name == "case").values(value=start + count))
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def test_the_index_answers(engine: Engine) -> None:
    add_cases(engine, SUBJECTS)
    add_filler(engine, 3000)
    assert found(engine, "printer") == [2, 1]
    fts = "cases_subject_fts" if engine.dialect.name == "sqlite" else "ix_case_subject_fts"
    for kwargs in ({"search": "printer"}, {"search": "Drucker-Störung", "status": "open"},
                   {"search": "print #"}):
        assert fts in plan_of(engine, **kwargs), kwargs
    # With a requester as well, starting from that requester's few cases is as good.
    plan = plan_of(engine, search="print", requester=JANE)
    assert fts in plan or "ix_case_requester_updated" in plan
    # Nothing for the index to look up: no full-text query at all.
    assert fts not in plan_of(engine, search="#")
    assert fts not in plan_of(engine, search="")
    # My Cases: the requester's cases are read through (requester_id, updated_at).
    assert "ix_case_requester_updated" in plan_of(engine, requester=JANE, status="open", limit=51)


def test_a_word_in_most_cases(engine: Engine) -> None:
    """A word in thousands of cases: SQLite then reads in listing order instead of sorting every
    match (store.cases._matches_many); the answer must be the same either way."""
    add_cases(engine, SUBJECTS)
    add_filler(engine, 3000)
    with read_only(engine) as s:
        everything = s.execute(select(Case.number, Case.subject, Case.status)
                               .order_by(Case.updated_at.desc(), Case.number.desc())).all()
    for search, status, limit in (("widget", "all", 1000), ("widget report", "open", 1000),
                                  ("WIDGET", "closed", 7), ("widget 12", "all", 1000)):
        words = search.lower().split()
        want = [n for n, subject, st in everything
                if all(any(t.startswith(w) for t in subject.lower().split()) for w in words)
                and status in ("all", st)][:limit]
        assert found(engine, search, status=status, limit=limit) == want, (search, status, limit)
    if engine.dialect.name == "sqlite":
        assert "ix_case_updated" in plan_of(engine, search="widget")


def test_a_listing_holds_what_a_list_shows(engine: Engine) -> None:
    add_cases(engine, SUBJECTS)
    with read_only(engine) as s:
        listed = cases.listing(s, search="printer")
    assert [f.name for f in fields(cases.CaseListing)] == [
        "number", "subject", "status", "severity", "production_down", "requester_address", "updated_at"]
    assert listed == [
        cases.CaseListing(2, "printer tray jammed again", "closed", 3, False, JANE, T0 + timedelta(minutes=2)),
        cases.CaseListing(1, "Printer on fire", "open", 3, False, JANE, T0 + timedelta(minutes=1)),
    ]
    # Aware and in UTC on both databases (PostgreSQL answers in the session's time zone).
    assert all(c.updated_at.tzinfo is timezone.utc for c in listed)


def test_a_listing_is_in_utc_whatever_the_session_time_zone(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps no time zone")
    add_cases(engine, SUBJECTS[:1])
    options = f"{engine.url.query.get('options', '')} -cTimeZone=Europe/Berlin"
    berlin = make_engine(engine.url.update_query_dict({"options": options}).render_as_string(hide_password=False))
    try:
        with read_only(berlin) as s:
            (listed,) = cases.listing(s)
    finally:
        berlin.dispose()
    assert listed.updated_at == T0 + timedelta(minutes=1)
    assert listed.updated_at.tzinfo is timezone.utc
