# SPDX-License-Identifier: GPL-3.0-or-later
"""The inbound log: every message received, and what became of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, insert, or_, select, text
from sqlalchemy.orm import Session

from store.models import Inbound

# The outcomes a processed message can have (DESIGN.md's vocabulary).
OUTCOMES = (
    "new-case",       # opened a case
    "comment",        # added to an existing case
    "system-event",   # automatic mail recorded on its case as an event
    "duplicate",      # the same message was already processed
    "ignored",        # automatic mail that belongs to no case
    "bounce",         # a delivery report about one of our mails
    "request",        # asked for "my cases", "help" or "settings" and was answered; opens no case
    "rejected",       # refused by policy, with the reason
    "quarantined",    # could not be processed; kept for an operator, with the reason
)


def record_inbound(
    s: Session,
    *,
    transport: str,
    mail_from: str | None,
    rcpt_tos: Sequence[str],
    message_id: str | None,
    sha256: str,
    size: int,
    now: datetime,
) -> Inbound:
    row = Inbound(
        transport=transport,
        mail_from=mail_from,
        rcpt_tos=list(rcpt_tos),
        message_id=message_id,
        sha256=sha256,
        size=size,
        received_at=now,
        state="accepted",
        attempts=0,
    )
    s.add(row)
    s.flush()
    return row


@dataclass(frozen=True)
class NewInbound:
    """One accepted message, as record_many writes it."""
    transport: str
    mail_from: str | None
    rcpt_tos: tuple[str, ...]
    message_id: str | None
    sha256: str
    size: int
    received_at: datetime


def record_many(s: Session, messages: Sequence[NewInbound]) -> list[int]:
    """Insert accepted messages in one statement; return their ids in the order given.

    This is the accept path's group commit: every mail taken while the previous group was being
    written goes into one INSERT and one commit. A Core insert keeps the ORM's per-object bookkeeping
    off the path that answers senders.
    """
    if not messages:
        return []
    rows = [
        {"transport": m.transport, "mail_from": m.mail_from, "rcpt_tos": list(m.rcpt_tos),
         "message_id": m.message_id, "sha256": m.sha256, "size": m.size, "received_at": m.received_at,
         "state": "accepted", "attempts": 0}
        for m in messages
    ]
    result = s.execute(insert(Inbound).returning(Inbound.id, sort_by_parameter_order=True), rows)
    return list(result.scalars())


def is_recorded(s: Session, message: NewInbound) -> bool:
    """Whether this very acceptance (the same bytes taken at the same instant) already has its row."""
    return s.scalar(
        select(Inbound.id).where(Inbound.sha256 == message.sha256, Inbound.received_at == message.received_at)
        .limit(1)
    ) is not None


@dataclass(frozen=True)
class Shard:
    """One processor's share of the inbound table: the rows whose id is `index` modulo `count`.

    Processors of one daemon each take a shard, so no two of them read the same message; the row
    lock in processing would keep the result right even if they did, but the reading would be wasted.
    """
    index: int
    count: int


def pending(s: Session, *, limit: int = 100, max_attempts: int,
            shard: Shard | None = None) -> list[tuple[int, int]]:
    """(id, size) of accepted messages not yet processed, oldest first (in the shard, when one is given)."""
    q = (
        select(Inbound.id, Inbound.size)
        .where(Inbound.state == "accepted", Inbound.attempts < max_attempts)
        .order_by(Inbound.id)
        .limit(limit)
    )
    if shard is not None and shard.count > 1:
        q = q.where(Inbound.id % shard.count == shard.index)
    return [(row.id, row.size) for row in s.execute(q)]


def lock_copies(s: Session, row: Inbound) -> None:
    """Make processors of copies of one message take turns, until the transaction ends.

    The duplicate check under the row lock sees copies already processed; two copies processed at
    the same moment by two intake processes (or two daemons) would each see none and both open a
    case. On PostgreSQL a transaction-level advisory lock per identity of a copy (its digest, and its
    Message-ID with the envelope sender) orders them: the second waits, then finds the first. The keys
    are taken in sorted order, so two processors never wait for each other in a circle over one pair
    of copies. SQLite needs nothing: its one write lock already orders every processor.
    """
    if s.get_bind().dialect.name != "postgresql":
        return
    keys = {f"sha256 {row.sha256}"}
    if row.message_id:
        keys.add(f"message-id {row.mail_from or ''} {row.message_id}")
    for key in sorted(keys):
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def find_earlier_copy(s: Session, row: Inbound) -> Inbound | None:
    """An earlier, processed message that this one duplicates.

    The same bytes are a duplicate wherever they came from. A message that arrives twice with the same
    Message-ID and envelope sender but different bytes (an MTA added a Received line, or IMAP and LMTP
    both delivered it) is a duplicate too. A Message-ID alone is not enough: anybody can reuse one, and
    a stranger must not be able to suppress somebody else's mail by sending its Message-ID first.
    """
    same = Inbound.sha256 == row.sha256
    if row.message_id:
        same = or_(same, and_(Inbound.message_id == row.message_id, Inbound.mail_from == row.mail_from))
    # One query for both kinds of copy, through the digest and Message-ID indexes. The state is tested
    # here rather than in SQL: given `state = 'processed'`, SQLite would rather walk the state index,
    # through every processed message, than these two. A copy of the same bytes wins over one with
    # only the same Message-ID, then the earliest.
    copies = s.scalars(select(Inbound).where(same, Inbound.id != row.id).order_by(Inbound.id).limit(100)).all()
    earlier = [c for c in copies if c.state == "processed" and c.outcome != "duplicate"]
    by_hash = next((c for c in earlier if c.sha256 == row.sha256), None)
    return by_hash or (earlier[0] if earlier else None)


def finish(s: Session, row: Inbound, *, outcome: str, reason: str | None, case_id: int | None,
           now: datetime) -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    row.state = "processed"
    row.outcome = outcome
    row.reason = reason
    row.case_id = case_id
    row.processed_at = now


def exhausted(s: Session, *, max_attempts: int, shard: Shard | None = None) -> list[Inbound]:
    """Accepted messages that have used up their processing attempts."""
    q = select(Inbound).where(Inbound.state == "accepted", Inbound.attempts >= max_attempts)
    if shard is not None and shard.count > 1:
        q = q.where(Inbound.id % shard.count == shard.index)
    return list(s.scalars(q))
