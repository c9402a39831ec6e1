# SPDX-License-Identifier: GPL-3.0-or-later
"""The inbound log: every message received, and what became of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, insert, or_, select, text, update
from sqlalchemy.orm import Session, undefer
from sqlalchemy.orm.attributes import set_committed_value

from store.db import plain
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


# Received mail up to this size is kept in its inbound row rather than in the blob store; see
# Inbound.raw. A support mail without attachments is a few kilobytes; mail with attachments is
# usually larger and goes to the blob store.
INLINE_BYTES = 256 * 1024


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
    raw: bytes | None = None    # the bytes, when the row keeps them; else they are in the blob store


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
         "state": "accepted", "attempts": 0, "raw": m.raw}
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


# The statements of processing, built once: they run for every mail, and building a statement and
# computing its cache key cost more than running it.
_inbound = Inbound.__table__
# The raw bytes come with the lock: processing reads every one of them next.
_LOCK_MANY = (select(Inbound).where(Inbound.id.in_(bindparam("ids", expanding=True))).order_by(Inbound.id)
              .options(undefer(Inbound.raw)).with_for_update())
_COUNT_ATTEMPT = (update(_inbound).where(_inbound.c.id.in_(bindparam("ids", expanding=True)))
                  .values(attempts=_inbound.c.attempts + 1))
_LOCK_ONE = select(Inbound).where(Inbound.id == bindparam("id")).with_for_update()
_FINISH = (update(_inbound).where(_inbound.c.id == bindparam("row_id"))
           .values(state="processed", outcome=bindparam("new_outcome"), reason=bindparam("new_reason"),
                   case_id=bindparam("new_case_id"), processed_at=bindparam("new_processed_at")))
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:key))")
# A copy has the same bytes, or the same Message-ID and envelope sender (see find_earlier_copy). The
# sender is compared with IS NOT DISTINCT FROM so that one statement serves a null sender too, as
# `mail_from IS NULL`.
_SAME_BYTES = _inbound.c.sha256 == bindparam("sha256")
_SAME_MESSAGE = and_(_inbound.c.message_id == bindparam("message_id"),
                     _inbound.c.mail_from.is_not_distinct_from(bindparam("mail_from")))
_COPY_COLUMNS = select(_inbound.c.id, _inbound.c.sha256, _inbound.c.state, _inbound.c.outcome, _inbound.c.case_id)
_COPIES_BY_BYTES = (_COPY_COLUMNS.where(_SAME_BYTES, _inbound.c.id != bindparam("id"))
                    .order_by(_inbound.c.id).limit(100))
_COPIES = (_COPY_COLUMNS.where(or_(_SAME_BYTES, _SAME_MESSAGE), _inbound.c.id != bindparam("id"))
           .order_by(_inbound.c.id).limit(100))


def lock(s: Session, inbound_id: int) -> Inbound | None:
    """Load one inbound row and lock it until the transaction ends (SQLite's write lock does the same)."""
    return s.scalar(_LOCK_ONE, {"id": inbound_id})


def lock_many(s: Session, ids: Sequence[int]) -> dict[int, Inbound]:
    """Load and lock inbound rows by id, with one query; an id without a row is left out.

    The rows are locked in id order, the order processors take them in, so two processors whose
    groups overlap wait for each other instead of each holding a row the other wants.
    """
    return {row.id: row for row in s.scalars(_LOCK_MANY, {"ids": list(ids)})}


def count_attempts(s: Session, rows: Sequence[Inbound]) -> None:
    """Count one more processing attempt for each of the rows, with one UPDATE for all of them.

    The loaded objects are given the new count as their committed value, so they stay in step with
    the database without being flushed one by one (as with finish, a rolled-back savepoint does not
    take it back).
    """
    if not rows:
        return
    plain(s).execute(_COUNT_ATTEMPT, {"ids": [row.id for row in rows]})
    for row in rows:
        set_committed_value(row, "attempts", row.attempts + 1)


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
        plain(s).execute(_ADVISORY_LOCK, {"key": key})


@dataclass(frozen=True)
class Copy:
    """An earlier message that a new one duplicates: its inbound id and the case it went to."""

    id: int
    case_id: int | None


def find_earlier_copy(s: Session, row: Inbound) -> Copy | None:
    """An earlier, processed message that this one duplicates.

    The same bytes are a duplicate wherever they came from. A message that arrives twice with the same
    Message-ID and envelope sender but different bytes (an MTA added a Received line, or IMAP and LMTP
    both delivered it) is a duplicate too. A Message-ID alone is not enough: anybody can reuse one, and
    a stranger must not be able to suppress somebody else's mail by sending its Message-ID first.
    """
    # One query for both kinds of copy, through the digest and Message-ID indexes. The state is tested
    # here rather than in SQL: given `state = 'processed'`, SQLite would rather walk the state index,
    # through every processed message, than these two. A copy of the same bytes wins over one with
    # only the same Message-ID, then the earliest. Plain columns: the copies are not needed as objects.
    if row.message_id:
        copies = plain(s).execute(_COPIES, {"sha256": row.sha256, "message_id": row.message_id,
                                            "mail_from": row.mail_from, "id": row.id}).all()
    else:
        copies = plain(s).execute(_COPIES_BY_BYTES, {"sha256": row.sha256, "id": row.id}).all()
    # A quarantined copy became nothing, so a copy sent again (after a fix, say) is processed anew; if
    # the quarantined one is re-run later, it finds this one instead.
    earlier = [c for c in copies if c.state == "processed" and c.outcome not in ("duplicate", "quarantined")]
    found = next((c for c in earlier if c.sha256 == row.sha256), None) or (earlier[0] if earlier else None)
    return Copy(found.id, found.case_id) if found is not None else None


def finish(s: Session, row: Inbound, *, outcome: str, reason: str | None, case_id: int | None,
           now: datetime) -> None:
    """Record what became of a message.

    One UPDATE, at once: the outcome is the last thing processing writes, and flushing the row alone
    afterwards cost the unit of work 0.3 ms per mail. The object is given the same values as its
    committed state, so it stays in step with the database without being flushed; rolling back a
    savepoint does not take them back (see store.db.adopt for what a caller who does must do).
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    plain(s).execute(_FINISH, {"row_id": row.id, "new_outcome": outcome, "new_reason": reason,
                               "new_case_id": case_id, "new_processed_at": now})
    for key, value in (("state", "processed"), ("outcome", outcome), ("reason", reason), ("case_id", case_id),
                       ("processed_at", now)):
        set_committed_value(row, key, value)


_REQUEUE = (update(_inbound)
            .where(_inbound.c.id.in_(bindparam("ids", expanding=True)), _inbound.c.state == "processed",
                   _inbound.c.outcome == "quarantined")
            .values(state="accepted", outcome=None, attempts=0, processed_at=None)
            .returning(_inbound.c.id))


def quarantined(s: Session) -> list[Inbound]:
    """Messages that could not be processed, oldest first, with their reasons."""
    return list(s.scalars(select(Inbound).where(Inbound.outcome == "quarantined").order_by(Inbound.id)))


def requeue(s: Session, ids: Sequence[int]) -> list[int]:
    """Give quarantined messages back to processing, with their attempts counted afresh; return the ids
    that were quarantined (any other id is left alone). The last failure's reason stays on the row
    until processing writes the new outcome."""
    if not ids:
        return []
    return sorted(plain(s).execute(_REQUEUE, {"ids": list(ids)}).scalars())


def exhausted(s: Session, *, max_attempts: int, shard: Shard | None = None) -> list[Inbound]:
    """Accepted messages that have used up their processing attempts."""
    q = select(Inbound).where(Inbound.state == "accepted", Inbound.attempts >= max_attempts)
    if shard is not None and shard.count > 1:
        q = q.where(Inbound.id % shard.count == shard.index)
    return list(s.scalars(q))
