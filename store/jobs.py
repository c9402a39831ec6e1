# SPDX-License-Identifier: GPL-3.0-or-later
"""The store side of scheduled jobs: what the schedules read, and the record of jobs done.

The notifier decides what is due from the plain rows read here (notifier/schedules.py); each job it
carries out first takes its natural key with `take_key`, in the same transaction as the mail it
queues, so that a second run, or a second daemon, finds the key taken and queues nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from store.models import Case, Contact, Entry, JobRun, Participant

# The kinds of entry a person wrote and the other side reads: whose turn it is follows from the newest.
HUMAN_KINDS = ("customer_message", "staff_reply")
# Entries that are not activity a customer's digest should list: our own mails (each is already
# recorded as a "notification" entry) are the digest's subject, not its content.
NOT_ACTIVITY_KINDS = ("notification",)


@dataclass(frozen=True)
class CaseClock:
    """What the schedules need to know about one open case."""

    case_id: int
    number: int
    subject: str
    severity: int
    production_down: bool
    created_at: datetime
    requester_address: str
    # The newest public entry written by a person (customer or staff), if any.
    last_human_entry_id: int | None
    last_human_kind: str | None
    last_human_at: datetime | None
    # Whether staff have publicly replied since the case was opened.
    staff_replied: bool
    # The text of that newest entry (None when not read), to tell whether a staff reply asks something.
    last_human_text: str | None = None


@dataclass(frozen=True)
class DigestContact:
    contact_id: int
    address: str
    display_name: str


@dataclass(frozen=True)
class Activity:
    """One public entry on a case, for a customer's digest."""

    case_number: int
    case_subject: str
    case_status: str
    entry_id: int
    kind: str
    author_name: str
    text: str
    created_at: datetime


def take_key(s: Session, key: str, *, now: datetime) -> JobRun | None:
    """Record a job as done, in the caller's transaction; None when it already was.

    INSERT ... ON CONFLICT DO NOTHING works on both databases: on PostgreSQL a second daemon's insert
    waits for the first one's transaction and then inserts nothing, so the loser learns it lost without
    an error that would abort its transaction.
    """
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (insert(JobRun).values(key=key, created_at=now)
            .on_conflict_do_nothing(index_elements=["key"]).returning(JobRun.id))
    job_id = s.execute(stmt).scalar()
    if job_id is None:
        return None
    return s.get(JobRun, job_id)


def keys_taken(s: Session, keys: Iterable[str]) -> set[str]:
    """Which of these keys are already recorded (to skip work known to be done before doing it)."""
    wanted = list(keys)
    if not wanted:
        return set()
    return set(s.scalars(select(JobRun.key).where(JobRun.key.in_(wanted))))


def open_case_clocks(s: Session, case_ids: Sequence[int] | None = None) -> list[CaseClock]:
    """Every open case (or the open ones among case_ids) with its newest public human entry."""
    newest = (select(Entry.case_id, func.max(Entry.id).label("entry_id"))
              .where(Entry.kind.in_(HUMAN_KINDS), Entry.visibility == "public")
              .group_by(Entry.case_id).subquery())
    last = aliased(Entry)
    staff_reply = exists().where(Entry.case_id == Case.id, Entry.kind == "staff_reply",
                                 Entry.visibility == "public", Entry.created_at >= Case.created_at)
    q = (select(Case.id, Case.number, Case.subject, Case.severity, Case.production_down, Case.created_at,
                Contact.address, last.id, last.kind, last.created_at, staff_reply, last.text)
         .join(Contact, Contact.id == Case.requester_id)
         .outerjoin(newest, newest.c.case_id == Case.id)
         .outerjoin(last, last.id == newest.c.entry_id)
         .where(Case.status == "open")
         .order_by(Case.number))
    if case_ids is not None:
        q = q.where(Case.id.in_(list(case_ids)))
    return [CaseClock(case_id=r[0], number=r[1], subject=r[2], severity=r[3], production_down=bool(r[4]),
                      created_at=r[5], requester_address=r[6], last_human_entry_id=r[7], last_human_kind=r[8],
                      last_human_at=r[9], staff_replied=bool(r[10]), last_human_text=r[11])
            for r in s.execute(q)]


def digest_contacts(s: Session) -> list[DigestContact]:
    """Contacts who asked for one daily mail instead of one per update (and whose mail does not bounce)."""
    q = (select(Contact.id, Contact.address, Contact.display_name)
         .where(Contact.notify == "digest", Contact.bouncing.is_(False)).order_by(Contact.id))
    return [DigestContact(contact_id=r[0], address=r[1], display_name=r[2]) for r in s.execute(q)]


def activity_for(s: Session, contact_id: int, *, since: datetime, until: datetime) -> list[Activity]:
    """The public entries in [since, until) on the cases a contact requested or follows, oldest first."""
    on_case = or_(Case.requester_id == contact_id,
                  exists().where(Participant.case_id == Case.id, Participant.contact_id == contact_id))
    author = aliased(Contact)
    q = (select(Case.number, Case.subject, Case.status, Entry.id, Entry.kind,
                func.coalesce(func.nullif(author.display_name, ""), author.address), Entry.text, Entry.created_at)
         .join(Case, Case.id == Entry.case_id)
         .outerjoin(author, author.id == Entry.author_id)
         .where(on_case, Entry.visibility == "public", Entry.kind.not_in(NOT_ACTIVITY_KINDS),
                and_(Entry.created_at >= since, Entry.created_at < until))
         .order_by(Case.number, Entry.id))
    return [Activity(case_number=r[0], case_subject=r[1], case_status=r[2], entry_id=r[3], kind=r[4],
                     author_name=r[5] or "", text=r[6] or "", created_at=r[7])
            for r in s.execute(q)]
