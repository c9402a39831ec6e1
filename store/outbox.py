# SPDX-License-Identifier: GPL-3.0-or-later
"""The outbox: mail waiting to be sent, and what became of each one.

Rows move queued -> sending -> sent, or back to queued with a later next_attempt_at after a temporary
failure, or to failed with the reason after a permanent one. Nothing is ever deleted. A row left in
'sending' by a crashed or killed daemon is taken again once its lease has run out; sending is
therefore at-least-once, and the Message-ID fixed at queueing time lets receivers drop the rare
duplicate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, undefer

from store.db import plain
from store.models import Outbox


@dataclass(frozen=True)
class Queued:
    """What the caller of enqueue learns about the row it queued (the row is not kept in the session)."""

    id: int
    template: str
    message_id: str
    recipients: tuple[str, ...]


_table = Outbox.__table__
_INSERT = insert(_table).returning(_table.c.id)
_BY_MESSAGE_ID = select(Outbox).where(Outbox.message_id == bindparam("message_id"))
_TEMPLATE_BY_MESSAGE_ID = select(Outbox.template).where(Outbox.message_id == bindparam("message_id"))
_SET_RENDERED = (update(_table).where(_table.c.id == bindparam("row_id"), _table.c.rendered_sha256.is_(None))
                 .values(rendered_sha256=bindparam("digest"), rendered=bindparam("inline")))
_RECIPIENTS_SINCE = select(Outbox.recipients).where(Outbox.template.in_(bindparam("templates", expanding=True)),
                                                    Outbox.created_at >= bindparam("since"))
# The key in Session.info under which `unmailed` marks a session that queues nothing.
_UNMAILED = "casemail_unmailed"


def enqueue(
    s: Session,
    *,
    template: str,
    context: dict[str, Any],
    recipients: Sequence[str],
    message_id: str,
    case_id: int | None,
    now: datetime,
) -> Queued | None:
    """Queue a mail in the caller's transaction; None inside `unmailed`, where nothing is queued.

    One Core INSERT: a mail is queued on every processed message, and the ORM's unit of work for the
    row cost 0.4 ms of the time SQLite's write lock is held. The row is not kept in the session; what
    needs it later (the notifier, a bounce about it) loads it.
    """
    if s.info.get(_UNMAILED):
        return None
    row_id: int = plain(s).execute(_INSERT, {
        "case_id": case_id,
        "template": template,
        "context": context,
        "recipients": list(recipients),
        "message_id": message_id,
        "state": "queued",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }).scalar_one()
    return Queued(row_id, template, message_id, tuple(recipients))


@contextlib.contextmanager
def unmailed(s: Session) -> Iterator[None]:
    """Queue no mail in s while the block runs (`casemail import` without --notify).

    Mail is queued in many places besides a plan's notices (answers to requests, command
    confirmations, the notices that follow a close, lost attachments), all through enqueue, which is
    therefore the one point that sees them all: the outbox keeps no trace of mail never meant to go.
    """
    s.info[_UNMAILED] = True
    try:
        yield
    finally:
        del s.info[_UNMAILED]


def claim_due(s: Session, *, now: datetime, lease: timedelta, limit: int,
              held: Collection[int] = ()) -> list[Outbox]:
    """Take up to `limit` rows that are due, marking them 'sending' in the caller's transaction.

    `held` are rows the caller claimed itself and has not finished yet: their lease may have run out
    by the clock while they wait to be sent or recorded, and taking them again would send them twice.
    `attempts` counts attempts whose outcome was recorded, so it is not raised here: the caller raises
    it with the outcome, and a row in flight still shows how many attempts came before.

    On PostgreSQL, FOR UPDATE SKIP LOCKED lets several daemons claim side by side without waiting for
    or duplicating each other. SQLite drops that clause, but there the transaction began with BEGIN
    IMMEDIATE and holds the only write lock, which gives the same guarantee.
    """
    due = or_(
        (Outbox.state == "queued") & (Outbox.next_attempt_at <= now),
        (Outbox.state == "sending") & (Outbox.claimed_at < now - lease),
    )
    q = select(Outbox).where(due).options(undefer(Outbox.rendered))
    if held:
        q = q.where(Outbox.id.not_in(list(held)))
    q = q.order_by(Outbox.next_attempt_at, Outbox.id).limit(limit)
    rows = list(s.scalars(q.with_for_update(skip_locked=True)))
    for row in rows:
        row.state = "sending"
        row.claimed_at = now
    s.flush()
    return rows


# Rendered mail up to this size is kept in its outbox row rather than in the blob store; see
# Outbox.rendered. An acknowledgement or a notice is a few kilobytes; a relayed reply that carries
# attachments is usually far larger and goes to the blob store, as received mail does.
INLINE_BYTES = 256 * 1024


@dataclass(frozen=True)
class RenderedMail:
    """What set_rendered_many records for one row: the digest, and the bytes when they are inline."""

    sha256: str
    inline: bytes | None


def set_rendered_many(s: Session, rendered: dict[int, RenderedMail]) -> None:
    """Record freshly rendered rows as one executemany; a row rendered before keeps what it has."""
    if not rendered:
        return
    plain(s).execute(_SET_RENDERED, [{"row_id": i, "digest": r.sha256, "inline": r.inline}
                                     for i, r in rendered.items()])


@dataclass(frozen=True)
class Finished:
    """What record_finished writes for one mail that was tried."""

    id: int
    state: str                     # "sent", "failed", or "queued" to be tried again at retry_at
    attempted: bool                # False for a mail that could not be rendered: no attempt was made
    error: str | None = None       # for a sent mail, the recipients refused, if any
    retry_at: datetime | None = None


_STILL_SENDING = select(_table.c.id, _table.c.created_at).where(
    _table.c.id.in_(bindparam("ids", expanding=True)), _table.c.state == "sending").with_for_update()


def _finishing(state: str, **values: Any) -> Any:
    # Guarded by state = 'sending', like still_sending: a row taken over meanwhile is left alone.
    return (update(_table).where(_table.c.id == bindparam("row_id"), _table.c.state == "sending")
            .values(state=state, last_error=bindparam("error"), attempts=_table.c.attempts + bindparam("attempted"),
                    **values))


# One statement per kind of outcome; "at" is when it was sent, or when to try again.
_FINISH = {"sent": _finishing("sent", sent_at=bindparam("at")),
           "failed": _finishing("failed"),
           "queued": _finishing("queued", next_attempt_at=bindparam("at"))}


def still_sending(s: Session, ids: Collection[int]) -> dict[int, datetime]:
    """The creation time of each of ids still 'sending', locked (PostgreSQL) until the transaction ends.

    A row no longer 'sending' was released, or taken over by another daemon after its lease: what this
    worker learnt about it is not written.
    """
    if not ids:
        return {}
    return {row_id: created for row_id, created in plain(s).execute(_STILL_SENDING, {"ids": list(ids)})}


def record_finished(s: Session, finished: Sequence[Finished], *, now: datetime) -> None:
    """Write what became of each mail, one executemany per kind of outcome, with Core statements:
    the outbox records a few hundred outcomes a second."""
    for state, statement in _FINISH.items():
        rows = [{"row_id": f.id, "attempted": int(f.attempted),
                 "error": f.error[:2000] if f.error is not None else None,
                 "at": now if state == "sent" else f.retry_at}
                for f in finished if f.state == state]
        if rows:
            plain(s).execute(statement, rows)


def release_claims(s: Session) -> int:
    """Put every row left in 'sending' back in the queue.

    Only safe when no other daemon can be sending: the SQLite deployment, where a file lock makes
    this daemon the only one. There a restart need not wait for the lease of a killed predecessor.
    """
    result = s.execute(update(Outbox).where(Outbox.state == "sending").values(state="queued"))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def find_by_message_id(s: Session, message_id: str) -> Outbox | None:
    return s.scalar(_BY_MESSAGE_ID, {"message_id": _bracketed(message_id)})


def template_of(s: Session, message_id: str) -> str | None:
    """The template of the mail queued with this Message-ID, if we queued one.

    Intake asks this of every In-Reply-To; the template alone spares loading the row and its context.
    """
    return plain(s).execute(_TEMPLATE_BY_MESSAGE_ID, {"message_id": _bracketed(message_id)}).scalar()


def _bracketed(message_id: str) -> str:
    return f"<{message_id.strip().strip('<>')}>"


def mark_bounced(s: Session, row: Outbox, *, reason: str) -> None:
    """A mail the relay accepted came back as undeliverable: it failed after all."""
    row.state = "failed"
    row.last_error = f"bounced: {reason}"[:2000]


def sent_to_since(s: Session, *, template: str | tuple[str, ...], recipient_key: str, since: datetime) -> int:
    """How many mails of one template (or of any of several) were queued for one address since a moment."""
    templates = [template] if isinstance(template, str) else list(template)
    rows = plain(s).execute(_RECIPIENTS_SINCE, {"templates": templates, "since": since})
    # Recipients are a JSON list, so the address is matched here; the rows are the few recent ones of
    # one template.
    return sum(1 for (rcpts,) in rows if any(r.lower() == recipient_key for r in rcpts or ()))
