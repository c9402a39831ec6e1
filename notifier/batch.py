# SPDX-License-Identifier: GPL-3.0-or-later
"""The outbox's database and disk work, done a batch at a time.

The sending loop (notifier/loop.py) runs these in its worker thread. Each step is one short
transaction for a whole batch, because on SQLite every writing transaction holds the one write lock
(and costs an fsync at commit) that intake needs for the 250 it owes a sender:

- claim: mark up to `limit` due rows 'sending', and nothing else, so the lock is held for one query;
- prepare: render the rows seen for the first time outside any transaction, store the bytes (each
  file's fsync runs in a small thread pool while the next mail is rendered, each directory is synced
  once), then record their digests in one transaction before anything is sent, so every later
  attempt sends exactly the same bytes;
- record: the outcomes of every mail finished since the last record (sent, retry later, failed), and
  the case entries of the sent ones, in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update

from notifier.render import Renderer
from store import outbox
from store.blobs import BlobStore
from store.db import unit_of_work
from store.models import Entry, Outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    id: int
    case_id: int | None
    template: str
    context: dict[str, Any]
    recipients: list[str]
    message_id: str
    rendered_sha256: str | None
    created_at: datetime
    attempts: int


@dataclass(frozen=True)
class Job:
    id: int
    case_id: int | None
    data: bytes
    subject: str
    text: str
    recipients: list[str]
    message_id: str
    template: str
    created_at: datetime
    attempts: int  # attempts recorded before this one


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed mail: sent (with any refused recipients), or an error."""

    job_id: int
    sent: bool
    refused: tuple[str, ...] = ()
    error: str = ""
    permanent: bool = False
    retry_at: datetime | None = None
    job: Job | None = None


def claim(engine: Engine, *, now: datetime, lease: timedelta, limit: int,
          held: Collection[int] = ()) -> list[Claimed]:
    with unit_of_work(engine) as s:
        rows = outbox.claim_due(s, now=now, lease=lease, limit=limit, held=held)
        return [Claimed(r.id, r.case_id, r.template, dict(r.context), list(r.recipients), r.message_id,
                        r.rendered_sha256, r.created_at, r.attempts) for r in rows]


def prepare(engine: Engine, blobs: BlobStore, renderer: Renderer, claimed: list[Claimed], *,
            now: datetime) -> tuple[list[Job], list[Outcome]]:
    """Turn claimed rows into jobs with their bytes; a mail that cannot be rendered fails."""
    jobs: list[Job] = []
    failed: list[Outcome] = []
    fresh: list[tuple[Claimed, Any, str]] = []
    stored = blobs.batch()
    for c in claimed:
        if c.rendered_sha256 is not None:
            data = blobs.get(c.rendered_sha256)
            subject, text = subject_and_text(data)
            jobs.append(_job(c, data, subject, text))
            continue
        try:
            rendered = renderer.render(template=c.template, context=c.context, recipients=c.recipients,
                                       message_id=c.message_id, now=now)
        except Exception as exc:  # noqa: BLE001 - a broken template fails its mail, not the loop.
            log.exception("rendering outbox=%s (%s) failed", c.id, c.template)
            failed.append(Outcome(c.id, sent=False, error=f"rendering failed: {type(exc).__name__}: {exc}",
                                  permanent=True))
            continue
        fresh.append((c, rendered, stored.add(rendered.data)))
    if fresh:
        stored.finish()
        # The digests are committed before the first attempt: a crash after it resends these bytes.
        with unit_of_work(engine) as s:
            outbox.set_rendered_many(s, {c.id: digest for c, _, digest in fresh})
        jobs.extend(_job(c, r.data, r.subject, r.text) for c, r, _ in fresh)
    jobs.sort(key=lambda j: j.id)
    return jobs, failed


def _job(c: Claimed, data: bytes, subject: str, text: str) -> Job:
    return Job(c.id, c.case_id, data, subject, text, c.recipients, c.message_id, c.template, c.created_at,
               c.attempts)


def record(engine: Engine, outcomes: Iterable[Outcome], *, now: datetime, give_up_after: timedelta,
           on_gave_up: Callable[[int, str], None] = lambda _id, _err: None) -> None:
    """Record a group of outcomes in one transaction.

    A row that is no longer 'sending' (released, or taken over after its lease) is left alone, as
    the one-row-at-a-time recording did.
    """
    outcomes = list(outcomes)
    if not outcomes:
        return
    with unit_of_work(engine) as s:
        ids = [o.job_id for o in outcomes]
        rows = {r.id: r for r in s.scalars(select(Outbox).where(Outbox.id.in_(ids)))}
        entries: list[Entry] = []
        for o in outcomes:
            row = rows.get(o.job_id)
            if row is None or row.state != "sending":
                continue
            if o.job is not None:
                row.attempts += 1  # one more attempt made (a mail that could not be rendered made none)
            if o.sent:
                outbox.mark_sent(s, row, now=now)
                if o.refused:
                    row.last_error = "refused: " + "; ".join(o.refused)
                if o.job is not None and o.job.case_id is not None:
                    entries.append(_entry(o.job, list(o.refused), now))
            elif o.permanent or o.retry_at is None:
                outbox.mark_failed(s, row, error=o.error)
            elif now - row.created_at > give_up_after:
                outbox.mark_failed(s, row, error=o.error)
                on_gave_up(row.id, o.error)
            else:
                outbox.retry_later(s, row, error=o.error, at=o.retry_at)
        # The entries of a group go in together: one multi-row INSERT instead of one per mail.
        s.add_all(entries)


def _entry(job: Job, refused: list[str], now: datetime) -> Entry:
    # The same entry cases.add_entry(kind="notification", touch=False) makes for a sent mail.
    return Entry(
        case_id=job.case_id, kind="notification",
        visibility="internal" if job.template.startswith("staff/") else "public",
        author_id=None, subject=job.subject, text=job.text, full_text=job.text, html=None,
        message_id=job.message_id.strip("<>"), matched_by=None, outbox_id=job.id, inbound_id=None,
        details={"template": job.template, "recipients": job.recipients, **({"refused": refused} if refused else {})},
        created_at=now,
    )


def release(engine: Engine, ids: list[int]) -> None:
    """Give claimed but unsent rows back at once (at shutdown) rather than leave them to the lease."""
    if not ids:
        return
    with unit_of_work(engine) as s:
        s.execute(update(Outbox).where(Outbox.id.in_(ids), Outbox.state == "sending").values(state="queued"))


def subject_and_text(data: bytes) -> tuple[str, str]:
    from email import message_from_bytes
    from email.policy import default

    msg = message_from_bytes(data, policy=default)
    body = msg.get_body(("plain",))
    text = body.get_content() if body is not None else ""  # type: ignore[union-attr]
    return str(msg.get("Subject", "")), text

