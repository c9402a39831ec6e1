# SPDX-License-Identifier: GPL-3.0-or-later
"""Cases and their activity history."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam, func, insert, literal_column, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from store.contacts import address_key
from store.db import adopt, plain
from store.models import Attachment, Case, Contact, Counter, Entry, Participant

STATUSES = ("open", "closed")


# The hot path's statements, built once: building a statement and computing its cache key cost more
# than running it. The counter, cases and entries are written as plain Core statements on their tables,
# which skip the ORM's bulk-update bookkeeping and its unit of work (0.7 and 0.3-0.6 ms per statement).
_counter = Counter.__table__
_NEXT_NUMBER = (update(_counter).where(_counter.c.name == "case").values(value=_counter.c.value + 1)
                .returning(_counter.c.value))
_FIRST_NUMBER = insert(_counter).values(name="case", value=1)
_INSERT_CASE = insert(Case.__table__).returning(Case.__table__.c.id)
_CASE_BY_NUMBER = select(Case).where(Case.number == bindparam("number"))
_CASES_SINCE = (select(func.count()).select_from(Case).join(Contact, Contact.id == Case.requester_id)
                .where(Contact.address_key == bindparam("key"), Case.created_at >= bindparam("since")))
_INSERT_ENTRY = insert(Entry.__table__).returning(Entry.__table__.c.id)
_INSERT_ATTACHMENT = insert(Attachment.__table__)
_TOUCH = (update(Case.__table__).where(Case.__table__.c.id == bindparam("case_id"))
          .values(updated_at=bindparam("updated_at")))
_SET_DETAILS = (update(Entry.__table__).where(Entry.__table__.c.id == bindparam("entry_id"))
                .values(details=bindparam("details")))


def next_case_number(s: Session) -> int:
    """Hand out the next case number inside the caller's transaction.

    UPDATE ... RETURNING takes the row lock (PostgreSQL) or runs under the write lock taken by BEGIN
    IMMEDIATE (SQLite), so two transactions never get the same number.
    """
    value = plain(s).execute(_NEXT_NUMBER).scalar()
    if value is None:
        plain(s).execute(_FIRST_NUMBER)
        value = 1
    return int(value)


def create_case(
    s: Session,
    *,
    subject: str,
    requester: Contact,
    description: str,
    product: str | None,
    version: str | None,
    severity: int,
    severity_source: str,
    production_down: bool,
    follow_up_of: Case | None,
    now: datetime,
) -> Case:
    """Open a case with the next number; the row is written at once and the case is in the session.

    A Core INSERT and store.db.adopt rather than a flush: the unit of work cost 0.5 ms per case.
    """
    values = {
        "number": next_case_number(s),
        "subject": subject,
        "requester_id": requester.id,
        "description": description,
        "product": product,
        "version": version,
        "severity": severity,
        "severity_source": severity_source,
        "production_down": production_down,
        "status": "open",
        "follow_up_of_id": follow_up_of.id if follow_up_of else None,
        "created_at": now,
        "updated_at": now,
        "closed_at": None,
    }
    case_id = plain(s).execute(_INSERT_CASE, values).scalar_one()
    return adopt(s, Case(id=case_id, requester=requester, **values))


def count_cases_since(s: Session, requester_key: str, since: datetime) -> int:
    """How many cases a requester has opened since a moment (for the per-sender rate limit)."""
    return int(plain(s).execute(_CASES_SINCE, {"key": requester_key, "since": since}).scalar() or 0)


def get_case(s: Session, number: int) -> Case | None:
    return s.scalar(_CASE_BY_NUMBER, {"number": number})


def add_participant(s: Session, case: Case, contact: Contact, *, role: str = "cc", now: datetime) -> None:
    if contact.id == case.requester_id:
        return
    exists = s.get(Participant, (case.id, contact.id))
    if exists is None:
        s.add(Participant(case_id=case.id, contact_id=contact.id, role=role, created_at=now))
        s.flush()


def participants(s: Session, case: Case) -> list[Participant]:
    q = select(Participant).where(Participant.case_id == case.id).order_by(Participant.created_at)
    return list(s.scalars(q))


def copied(s: Session, case: Case) -> list[Contact]:
    """The people copied on a case (participants with the role "cc"), oldest first."""
    return [p.contact for p in participants(s, case) if p.role == "cc"]


def assignee(s: Session, case: Case) -> Contact | None:
    """The staff member a case is assigned to, if any."""
    return next((p.contact for p in participants(s, case) if p.role == "assignee"), None)


def set_assignee(s: Session, case: Case, contact: Contact, *, now: datetime) -> None:
    """Assign a case: the new assignee replaces the previous one, who stops following it."""
    for p in participants(s, case):
        if p.role == "assignee" or p.contact_id == contact.id:
            s.delete(p)
    s.flush()
    s.add(Participant(case_id=case.id, contact_id=contact.id, role="assignee", created_at=now))
    s.flush()


def remove_participant(s: Session, case: Case, contact: Contact) -> bool:
    """Stop a participant following a case; False when they were not on it."""
    found = s.get(Participant, (case.id, contact.id))
    if found is None:
        return False
    s.delete(found)
    s.flush()
    return True


@dataclass(frozen=True)
class NewAttachment:
    filename: str
    declared_type: str
    sniffed_type: str
    size: int
    sha256: str
    content_id: str | None
    inline: bool


def add_entry(
    s: Session,
    case: Case,
    *,
    kind: str,
    now: datetime,
    visibility: str = "public",
    author: Contact | None = None,
    subject: str = "",
    text: str = "",
    full_text: str = "",
    html: str | None = None,
    message_id: str | None = None,
    matched_by: str | None = None,
    details: dict[str, Any] | None = None,
    inbound_id: int | None = None,
    outbox_id: int | None = None,
    attachments: Sequence[NewAttachment] = (),
    touch: bool = True,
) -> int:
    """Add an entry (and its attachments) to a case; return the new entry's id.

    The rows are written with Core statements and not kept in the session: nothing that adds an entry
    looks at it again as an object, and the unit of work cost 0.4 ms per row on the intake path.
    """
    entry_id: int = plain(s).execute(_INSERT_ENTRY, {
        "case_id": case.id,
        "kind": kind,
        "visibility": visibility,
        "author_id": author.id if author else None,
        "subject": subject,
        "text": text,
        "full_text": full_text,
        "html": html,
        "message_id": message_id,
        "matched_by": matched_by,
        "details": details or {},
        "inbound_id": inbound_id,
        "outbox_id": outbox_id,
        "created_at": now,
    }).scalar_one()
    if attachments:
        plain(s).execute(_INSERT_ATTACHMENT, [
            {"entry_id": entry_id, "filename": a.filename, "declared_type": a.declared_type,
             "sniffed_type": a.sniffed_type, "size": a.size, "sha256": a.sha256, "content_id": a.content_id,
             "inline": a.inline}
            for a in attachments
        ])
    # A case opened by this very mail already has this time. Otherwise the time is written with a
    # Core UPDATE and given to the loaded case as its committed value: a dirty case would cost the next
    # query a flush through the unit of work, about half a millisecond for this one column. (A
    # rolled-back savepoint does not take the value back; intake/process.py drops the session's
    # objects after one.)
    if touch and case.updated_at != now:
        plain(s).execute(_TOUCH, {"case_id": case.id, "updated_at": now})
        set_committed_value(case, "updated_at", now)
    return entry_id


@dataclass(frozen=True)
class SentMail:
    """The entry a mail the outbox sent leaves in its case's history."""

    case_id: int
    outbox_id: int
    visibility: str
    subject: str
    text: str
    message_id: str
    details: dict[str, Any]


def add_sent_mail_entries(s: Session, sent: Sequence[SentMail], *, now: datetime) -> None:
    """One multi-row INSERT for the entries of a group of sent mails. They do not touch their cases:
    a case's last activity is what people did, not the notices about it."""
    if sent:
        plain(s).execute(insert(Entry.__table__), [
            {"case_id": m.case_id, "kind": "notification", "visibility": m.visibility, "author_id": None,
             "subject": m.subject, "text": m.text, "full_text": m.text, "html": None,
             "message_id": m.message_id, "matched_by": None, "details": m.details, "inbound_id": None,
             "outbox_id": m.outbox_id, "created_at": now}
            for m in sent
        ])


def set_entry_details(s: Session, entry_id: int, details: dict[str, Any]) -> None:
    """Replace the details of an entry added in this transaction (see add_entry)."""
    plain(s).execute(_SET_DETAILS, {"entry_id": entry_id, "details": details})


def close_case(s: Session, case: Case, *, now: datetime) -> bool:
    """Close an open case; False when it was already closed."""
    if case.status == "closed":
        return False
    case.status = "closed"
    case.closed_at = now
    case.updated_at = now
    return True


@dataclass(frozen=True, slots=True)
class CaseListing:
    """One case as a list of cases shows it (`casemail cases`, the "my cases" mail), and nothing more.

    A listing of 1,000 cases is read as plain rows into these: building full Case entities, each with
    its requester and three timestamps, cost 15-20 ms of Python per 1,000 (docs/performance.md).
    """

    number: int
    subject: str
    status: str
    severity: int
    production_down: bool
    requester_address: str
    updated_at: datetime  # aware, in UTC

    @classmethod
    def of(cls, case: Case) -> CaseListing:
        """The listing of a case already loaded as an entity (for showing one case)."""
        return cls(case.number, case.subject, case.status, case.severity, case.production_down,
                   case.requester.address, as_utc(case.updated_at))


def as_utc(at: datetime) -> datetime:
    """A timestamp from the database as an aware UTC datetime.

    store.models.UTCDateTime makes SQLite's naive datetimes aware, but PostgreSQL hands back aware ones
    in the session's time zone, which need not be UTC.
    """
    if at.tzinfo is None:
        return at.replace(tzinfo=timezone.utc)
    return at if at.tzinfo is timezone.utc else at.astimezone(timezone.utc)


# Listing order: most recently updated first; of cases updated at the same moment, the newer number.
_ORDER = (Case.updated_at.desc(), Case.number.desc())
# The columns of a CaseListing, in its field order.
_LISTING_COLUMNS = (Case.number, Case.subject, Case.status, Case.severity, Case.production_down,
                    Contact.address, Case.updated_at)


def listing(s: Session, *, status: str = "all", search: str = "", requester: str | None = None,
            limit: int = 1000) -> list[CaseListing]:
    """Cases, most recently updated first, filtered as the portal's "My Cases" list was.

    A search matches cases whose subject holds every word given, in any case and any order, each word
    as the start of a word of the subject: "print" finds "Printer", "rinter" does not. A word with
    punctuation inside must match its parts one after the other, the last as a start ("Drucker-Störung"
    finds "drucker störung", "2.1" finds "2.1.3" but not "v2.1"). Words are looked up in the full-text
    index (store/migrations/versions/0004); a word without any letter or digit ("#", "--") cannot be,
    and must appear in the subject as typed.
    """
    picked = _picked(s, status=status, search=search, requester=requester, limit=limit)
    q = (select(*_LISTING_COLUMNS).join(Contact, Contact.id == Case.requester_id)
         .where(picked).order_by(*_ORDER))
    # On the session's connection rather than through the session: plain rows need none of the ORM's
    # loading, which costs about half a millisecond per 1,000 rows.
    rows = s.connection().execute(q)
    return [CaseListing(number, subject, status_, severity, down, address, as_utc(updated))
            for number, subject, status_, severity, down, address, updated in rows]


def _picked(s: Session, *, status: str, search: str, requester: str | None, limit: int) -> ColumnElement[bool]:
    """The condition that picks the cases of a listing: choose their ids first, then load only those.

    A common word can match half the cases, and sorting narrow (updated_at, number, id) rows to pick
    the newest is about twice as fast as sorting whole rows joined to their requesters.
    """
    chosen = select(Case.id)
    if status != "all":
        if status not in STATUSES:
            raise ValueError(f"status must be open, closed or all, not {status!r}")
        chosen = chosen.where(Case.status == status)
    dialect = s.get_bind().dialect.name
    words = search_words(search)
    # SQLite always starts from the full-text matches and sorts them all. For a word in half of all
    # cases it is faster to read the cases newest first (ix_case_updated) and keep those that match
    # until the limit is filled: 8 instead of 50 ms for 50,000 matches of 100,000 (bench/search_bench.py).
    # A requester's own cases are few enough either way.
    in_order = (dialect == "sqlite" and requester is None and any(tokens for _, tokens in words)
                and _matches_many(s, words, limit))
    chosen = chosen.where(*_subject_filters(dialect, words, in_order=in_order))
    if requester is not None:
        # A scalar subquery, not a join: PostgreSQL then knows it looks for one requester_id and walks
        # ix_case_requester_updated backwards, stopping at the limit, instead of sorting every case of
        # a requester who has thousands.
        requester_id = select(Contact.id).where(Contact.address_key == address_key(requester)).scalar_subquery()
        chosen = chosen.where(Case.requester_id == requester_id)
    chosen = chosen.order_by(*_ORDER).limit(limit)
    if dialect == "postgresql":
        # = ANY(ARRAY(...)) runs the choice once, as an InitPlan, and fetches those rows by primary key;
        # with IN (...) the planner guessed badly and read the whole table for a hash semi-join.
        return Case.id == any_(func.array(chosen.scalar_subquery()))
    return Case.id.in_(chosen.scalar_subquery())


# The index expression of migration 0004 on PostgreSQL, character for character: the planner uses an
# expression index only for the same expression, and literal (not bound) constants keep it the same.
SUBJECT_TSVECTOR_PG = (
    "to_tsvector('simple'::regconfig, regexp_replace(cases.subject, '[[:punct:][:space:]]+', ' ', 'g'))"
)
_FTS_TABLE = "cases_subject_fts"
# Runs of letters and digits, as SQLite's unicode61 tokenizer and the punctuation-stripped text on
# PostgreSQL see words. Everything else (quotes, *, -, :, parentheses) only separates them, which is
# also why no user input can reach the index's query syntax.
_TOKEN = re.compile(r"[^\W_]+")


def search_words(search: str) -> list[tuple[str, list[str]]]:
    """The words of a search, each with its index tokens (empty when it has no letter or digit)."""
    # NFC: subjects arrive composed; a decomposed "ö" typed on some systems would otherwise split.
    words = unicodedata.normalize("NFC", search).split()
    return [(w, _TOKEN.findall(w)) for w in words]


def _subject_filters(dialect: str, words: list[tuple[str, list[str]]], *,
                     in_order: bool = False) -> list[ColumnElement[bool]]:
    indexed = [tokens for _, tokens in words if tokens]
    # Only what the index cannot answer is matched by substring.
    filters: list[ColumnElement[bool]] = [
        Case.subject.ilike(f"%{_escape_like(w)}%", escape="\\") for w, tokens in words if not tokens
    ]
    if not indexed:
        return filters
    if dialect == "sqlite":
        fts = select(literal_column("rowid")).select_from(text(_FTS_TABLE)).where(
            literal_column(_FTS_TABLE).op("MATCH")(fts5_query(indexed)))
        # "+cases.id" is SQLite's way to say "not through this": the matches then only filter a scan
        # in listing order instead of being the rows the scan starts from.
        case_id = literal_column("+cases.id") if in_order else Case.id
        filters.append(case_id.in_(fts.scalar_subquery()))
    elif dialect == "postgresql":
        filters.append(literal_column(SUBJECT_TSVECTOR_PG).op("@@")(
            func.to_tsquery(literal_column("'simple'::regconfig"), tsquery(indexed))))
    else:
        filters.extend(Case.subject.ilike(f"%{_escape_like(w)}%", escape="\\") for w, tokens in words if tokens)
    return filters


def _matches_many(s: Session, words: list[tuple[str, list[str]]], limit: int) -> bool:
    """Whether so many cases match that reading all cases newest first beats sorting the matches.

    Sorting costs about one step per match; reading in order about limit x cases / matches steps. The
    two are even at matches = sqrt(limit x cases), so count the matches up to there and no further
    (a bounded count costs well under a millisecond per 10,000 matches).
    """
    cases_now = s.scalar(select(func.max(Case.id))) or 0
    even = max(1000, math.isqrt(max(limit, 0) * cases_now))
    match = fts5_query([tokens for _, tokens in words if tokens])
    counted = s.scalar(
        text(f"SELECT count(*) FROM (SELECT rowid FROM {_FTS_TABLE} WHERE {_FTS_TABLE} MATCH :match LIMIT :even)"),
        {"match": match, "even": even},
    )
    return int(counted or 0) >= even


def fts5_query(words: list[list[str]]) -> str:
    """An FTS5 MATCH expression: every word a quoted phrase of its tokens, the last one a prefix.

    Tokens are letters and digits only, but they are quoted (with any double quote doubled) anyway, so
    that nothing in them is ever read as an operator (AND, OR, NOT, NEAR, column filters).
    """
    return " AND ".join('"' + " ".join(t.replace('"', '""') for t in tokens) + '"*' for tokens in words)


def tsquery(words: list[list[str]]) -> str:
    """The PostgreSQL to_tsquery text for the same search: 'a' <-> 'b':* per word, words joined by &."""
    def lexeme(token: str) -> str:
        return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"

    return " & ".join(
        "(" + " <-> ".join(lexeme(t) for t in tokens) + ":*)" for tokens in words
    )


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def history(s: Session, case: Case) -> list[Entry]:
    """Every entry of a case, oldest first."""
    return list(s.scalars(select(Entry).where(Entry.case_id == case.id).order_by(Entry.id)))


def get_entry(s: Session, case: Case, entry_id: int) -> Entry | None:
    return s.scalar(select(Entry).where(Entry.case_id == case.id, Entry.id == entry_id))
