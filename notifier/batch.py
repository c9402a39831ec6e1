# SPDX-License-Identifier: GPL-3.0-or-later
"""The outbox's database and disk work, done a batch at a time.

The sending loop (notifier/loop.py) runs these in its worker thread. Each step is one short
transaction for a whole batch, because on SQLite every writing transaction holds the one write lock
(and costs an fsync at commit) that intake needs for the 250 it owes a sender:

- claim: mark up to `limit` due rows 'sending', and nothing else, so the lock is held for one query;
- prepare: render the rows seen for the first time outside any transaction, then record their bytes
  in one transaction before anything is sent, so every later attempt sends exactly the same bytes.
  Small mails (nearly all of them) go into their rows and cost a share of that one commit; a large
  one is a blob file whose fsync runs in a small thread pool while the next mail is rendered;
- record: the outcomes of every mail finished since the last record (sent, retry later, failed), and
  the case entries of the sent ones, in one transaction of Core statements.

Only prepare's commit waits for the disk. Losing a claim or a record in a power cut costs a mail sent
once more with the same bytes, which sending at least once allows for; prepare's commit also makes
the claim before it durable.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update

from notifier.render import Renderer
from store import cases, outbox
from store.blobs import BlobStore
from store.db import unit_of_work
from store.models import Outbox

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
    rendered: bytes | None
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
    # Not durable: if a power cut loses the claim, the rows are simply due again. Nothing is sent
    # before prepare's durable commit, which makes the claim durable with it when there is one.
    with unit_of_work(engine, durable=False) as s:
        rows = outbox.claim_due(s, now=now, lease=lease, limit=limit, held=held)
        return [Claimed(r.id, r.case_id, r.template, dict(r.context), list(r.recipients), r.message_id,
                        r.rendered_sha256, r.rendered, r.created_at, r.attempts) for r in rows]


def prepare(engine: Engine, blobs: BlobStore, renderer: Renderer, claimed: list[Claimed], *,
            now: datetime) -> tuple[list[Job], list[Outcome]]:
    """Turn claimed rows into jobs with their bytes; a mail that cannot be rendered fails."""
    jobs: list[Job] = []
    failed: list[Outcome] = []
    fresh: list[tuple[Claimed, Any, outbox.RenderedMail]] = []
    stored = None
    for c in claimed:
        if c.rendered_sha256 is not None:
            data = blobs.get_unless_inline(c.rendered_sha256, c.rendered)
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
        if len(rendered.data) <= outbox.INLINE_BYTES:
            kept = outbox.RenderedMail(hashlib.sha256(rendered.data).hexdigest(), rendered.data)
        else:
            stored = stored or blobs.batch()
            kept = outbox.RenderedMail(stored.add(rendered.data), None)
        fresh.append((c, rendered, kept))
    if fresh:
        if stored is not None:
            stored.finish()
        # The bytes are committed before the first attempt: a crash after it resends these bytes.
        with unit_of_work(engine) as s:
            outbox.set_rendered_many(s, {c.id: kept for c, _, kept in fresh})
        jobs.extend(_job(c, r.data, r.subject, r.text) for c, r, _ in fresh)
    jobs.sort(key=lambda j: j.id)
    return jobs, failed


def _job(c: Claimed, data: bytes, subject: str, text: str) -> Job:
    return Job(c.id, c.case_id, data, subject, text, c.recipients, c.message_id, c.template, c.created_at,
               c.attempts)


def record(engine: Engine, outcomes: Iterable[Outcome], *, now: datetime, give_up_after: timedelta,
           on_gave_up: Callable[[int, str], None] = lambda _id, _err: None) -> None:
    """Record a group of outcomes in one transaction.

    A row that is no longer 'sending' (released, or taken over after its lease) is left alone. The
    commit does not wait for the disk: losing it in a power cut means these mails go once more, with
    the same bytes and Message-IDs, which sending at least once allows for anyway.
    """
    outcomes = list(outcomes)
    if not outcomes:
        return
    with unit_of_work(engine, durable=False) as s:
        created = outbox.still_sending(s, [o.job_id for o in outcomes])
        finished, entries = decide(outcomes, created, now=now, give_up_after=give_up_after,
                                   on_gave_up=on_gave_up)
        outbox.record_finished(s, finished, now=now)
        cases.add_sent_mail_entries(s, entries, now=now)


def decide(outcomes: Iterable[Outcome], created: dict[int, datetime], *, now: datetime,
           give_up_after: timedelta, on_gave_up: Callable[[int, str], None] = lambda _id, _err: None,
           ) -> tuple[list[outbox.Finished], list[cases.SentMail]]:
    """What to write for each outcome whose row is still 'sending' (created: its creation time)."""
    finished: list[outbox.Finished] = []
    entries: list[cases.SentMail] = []
    for o in outcomes:
        created_at = created.get(o.job_id)
        if created_at is None:
            continue
        attempted = o.job is not None  # a mail that could not be rendered made no attempt
        if o.sent:
            finished.append(outbox.Finished(o.job_id, "sent", attempted,
                                            error="refused: " + "; ".join(o.refused) if o.refused else None))
            if o.job is not None and o.job.case_id is not None:
                entries.append(_entry(o.job, list(o.refused)))
        elif o.permanent or o.retry_at is None:
            finished.append(outbox.Finished(o.job_id, "failed", attempted, error=o.error))
        elif now - created_at > give_up_after:
            finished.append(outbox.Finished(o.job_id, "failed", attempted, error=o.error))
            on_gave_up(o.job_id, o.error)
        else:
            finished.append(outbox.Finished(o.job_id, "queued", attempted, error=o.error, retry_at=o.retry_at))
    return finished, entries


def _entry(job: Job, refused: list[str]) -> cases.SentMail:
    return cases.SentMail(
        case_id=job.case_id, outbox_id=job.id,  # type: ignore[arg-type] - checked by the caller
        visibility="internal" if job.template.startswith("staff/") else "public",
        subject=job.subject, text=job.text, message_id=job.message_id.strip("<>"),
        details={"template": job.template, "recipients": job.recipients, **({"refused": refused} if refused else {})},
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

