# SPDX-License-Identifier: GPL-3.0-or-later
"""Cases and their activity history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.orm import Session

from store.contacts import address_key
from store.models import Attachment, Case, Contact, Counter, Entry, Participant

STATUSES = ("open", "closed")


def next_case_number(s: Session) -> int:
    """Hand out the next case number inside the caller's transaction.

    UPDATE ... RETURNING takes the row lock (PostgreSQL) or runs under the write lock taken by BEGIN
    IMMEDIATE (SQLite), so two transactions never get the same number.
    """
    value = s.execute(
        update(Counter).where(Counter.name == "case").values(value=Counter.value + 1).returning(Counter.value)
    ).scalar()
    if value is None:
        s.execute(insert(Counter).values(name="case", value=1))
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
    case = Case(
        number=next_case_number(s),
        subject=subject,
        requester_id=requester.id,
        requester=requester,
        description=description,
        product=product,
        version=version,
        severity=severity,
        severity_source=severity_source,
        production_down=production_down,
        status="open",
        follow_up_of_id=follow_up_of.id if follow_up_of else None,
        created_at=now,
        updated_at=now,
    )
    s.add(case)
    s.flush()
    return case


def count_cases_since(s: Session, requester_key: str, since: datetime) -> int:
    """How many cases a requester has opened since a moment (for the per-sender rate limit)."""
    from sqlalchemy import func

    q = (select(func.count()).select_from(Case).join(Contact, Contact.id == Case.requester_id)
         .where(Contact.address_key == requester_key, Case.created_at >= since))
    return int(s.scalar(q) or 0)


def get_case(s: Session, number: int) -> Case | None:
    return s.scalar(select(Case).where(Case.number == number))


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


def is_on_case(s: Session, case: Case, address: str) -> bool:
    """Whether an address is the case's requester or one of its participants."""
    key = address_key(address)
    if case.requester.address_key == key:
        return True
    q = (
        select(Participant.contact_id)
        .join(Contact, Contact.id == Participant.contact_id)
        .where(Participant.case_id == case.id, Contact.address_key == key)
    )
    return s.scalar(q) is not None


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
) -> Entry:
    entry = Entry(
        case_id=case.id,
        kind=kind,
        visibility=visibility,
        author_id=author.id if author else None,
        subject=subject,
        text=text,
        full_text=full_text,
        html=html,
        message_id=message_id,
        matched_by=matched_by,
        details=details or {},
        inbound_id=inbound_id,
        outbox_id=outbox_id,
        created_at=now,
    )
    s.add(entry)
    s.flush()
    for a in attachments:
        s.add(Attachment(entry_id=entry.id, filename=a.filename, declared_type=a.declared_type,
                         sniffed_type=a.sniffed_type, size=a.size, sha256=a.sha256,
                         content_id=a.content_id, inline=a.inline))
    if touch:
        case.updated_at = now
    return entry


def close_case(s: Session, case: Case, *, now: datetime) -> bool:
    """Close an open case; False when it was already closed."""
    if case.status == "closed":
        return False
    case.status = "closed"
    case.closed_at = now
    case.updated_at = now
    return True


def list_cases(
    s: Session,
    *,
    status: str = "all",
    search: str = "",
    requester: str | None = None,
    limit: int = 1000,
) -> list[Case]:
    """Cases, most recently updated first, filtered as the portal's "My Cases" list was.

    A search matches cases whose subject contains every word given, in any case and any order.
    """
    q = select(Case)
    if status != "all":
        if status not in STATUSES:
            raise ValueError(f"status must be open, closed or all, not {status!r}")
        q = q.where(Case.status == status)
    words = [w for w in search.split() if w]
    if words:
        q = q.where(and_(*(Case.subject.ilike(f"%{_escape_like(w)}%", escape="\\") for w in words)))
    if requester is not None:
        q = q.join(Contact, Contact.id == Case.requester_id).where(Contact.address_key == address_key(requester))
    q = q.order_by(Case.updated_at.desc(), Case.number.desc()).limit(limit)
    return list(s.scalars(q))


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def history(s: Session, case: Case) -> list[Entry]:
    """Every entry of a case, oldest first."""
    return list(s.scalars(select(Entry).where(Entry.case_id == case.id).order_by(Entry.id)))


def get_entry(s: Session, case: Case, entry_id: int) -> Entry | None:
    return s.scalar(select(Entry).where(Entry.case_id == case.id, Entry.id == entry_id))


def find_entry_by_message_id(s: Session, message_id: str) -> Entry | None:
    return s.scalar(select(Entry).where(Entry.message_id == message_id).order_by(Entry.id).limit(1))
