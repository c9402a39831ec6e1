# SPDX-License-Identifier: GPL-3.0-or-later
"""The sending loop: claim due outbox rows, render each once, send, and record the result.

A sent mail becomes an entry of its case's history, with the exact bytes that were sent. The write
that marks a row sent is shielded from cancellation, so a shutdown in the middle of it cannot make a
sent mail look unsent (which would send it again).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from notifier.render import Renderer
from notifier.send import MailSender, SendError
from store import cases, outbox
from store.blobs import BlobStore
from store.db import RunInThread, unit_of_work
from store.models import Case

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    give_up_after: timedelta = timedelta(hours=120)
    lease: timedelta = timedelta(minutes=10)

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> timedelta:
        # Exponential backoff with jitter, so a smarthost coming back is not hit by every retry at once.
        seconds = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return timedelta(seconds=seconds * (0.75 + 0.5 * rand()))


@dataclass(frozen=True)
class _Job:
    id: int
    case_id: int | None
    data: bytes
    subject: str
    text: str
    recipients: list[str]
    message_id: str
    template: str
    created_at: datetime
    attempts: int


class OutboxWorker:
    def __init__(self, engine: Engine, blobs: BlobStore, renderer: Renderer, sender: MailSender, *,
                 envelope_from: str, clock: Callable[[], datetime], run: RunInThread,
                 retry: RetryPolicy = RetryPolicy(), batch: int = 50) -> None:
        self._engine = engine
        self._blobs = blobs
        self._renderer = renderer
        self._sender = sender
        self._envelope_from = envelope_from
        self._clock = clock
        self._run = run
        self._retry = retry
        self._batch = batch
        self._wake = asyncio.Event()
        self._outage_logged = False
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, idle_seconds: float = 5.0) -> None:
        while not stop.is_set():
            done = await self.drain(stop)
            if done:
                continue
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=idle_seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Send one batch of due mail; return how many rows were handled."""
        jobs = await self._run(self._claim)
        for job in jobs:
            if stop is not None and stop.is_set():
                # Give the rest back at once rather than leave them to the lease.
                await self._run(lambda j=job: self._release(j))
                continue
            await self._send(job)
        return len(jobs)

    def _claim(self) -> list[_Job]:
        now = self._clock()
        with unit_of_work(self._engine) as s:
            rows = outbox.claim_due(s, now=now, lease=self._retry.lease, limit=self._batch)
            jobs = []
            for row in rows:
                if row.rendered_sha256 is None:
                    # Rendered once, at the first claim, and kept: every retry sends the same bytes.
                    try:
                        rendered = self._renderer.render(template=row.template, context=row.context,
                                                         recipients=row.recipients, message_id=row.message_id,
                                                         now=now)
                    except Exception as exc:  # noqa: BLE001 - a broken template fails its mail, not the loop.
                        log.exception("rendering outbox=%s (%s) failed", row.id, row.template)
                        outbox.mark_failed(s, row, error=f"rendering failed: {type(exc).__name__}: {exc}")
                        continue
                    row.rendered_sha256 = self._blobs.put(rendered.data)
                    subject, text, data = rendered.subject, rendered.text, rendered.data
                else:
                    data = self._blobs.get(row.rendered_sha256)
                    subject, text = _subject_and_text(data)
                jobs.append(_Job(row.id, row.case_id, data, subject, text, list(row.recipients), row.message_id,
                                 row.template, row.created_at, row.attempts))
            return jobs

    async def _send(self, job: _Job) -> None:
        try:
            refused = await self._sender.send(self._envelope_from, job.recipients, job.data)
        except SendError as exc:
            await asyncio.shield(self._run(lambda: self._failed(job, exc)))
            return
        except Exception as exc:  # noqa: BLE001 - an unexpected fault is retried, never lost.
            log.exception("sending outbox=%s failed unexpectedly", job.id)
            await asyncio.shield(self._run(lambda: self._failed(job, SendError(repr(exc), permanent=False))))
            return
        if self._outage_logged:
            log.info("the mail relay accepts mail again")
            self._outage_logged = False
        await asyncio.shield(self._run(lambda: self._sent(job, refused)))
        self.sent += 1

    def _sent(self, job: _Job, refused: list[str]) -> None:
        now = self._clock()
        with unit_of_work(self._engine) as s:
            row = outbox.get(s, job.id)
            if row is None or row.state != "sending":
                return
            outbox.mark_sent(s, row, now=now)
            if refused:
                row.last_error = "refused: " + "; ".join(refused)
            if job.case_id is not None:
                case = s.get(Case, job.case_id)
                assert case is not None
                cases.add_entry(
                    s, case, kind="notification", now=now,
                    visibility="internal" if job.template.startswith("staff/") else "public",
                    subject=job.subject, text=job.text, full_text=job.text,
                    message_id=job.message_id.strip("<>"), outbox_id=job.id,
                    details={"template": job.template, "recipients": job.recipients,
                             **({"refused": refused} if refused else {})},
                    touch=False,
                )
        log.info("sent outbox=%s %s to %s", job.id, job.message_id, ", ".join(job.recipients))

    def _failed(self, job: _Job, exc: SendError) -> None:
        now = self._clock()
        with unit_of_work(self._engine) as s:
            row = outbox.get(s, job.id)
            if row is None or row.state != "sending":
                return
            if exc.permanent or now - job.created_at > self._retry.give_up_after:
                outbox.mark_failed(s, row, error=str(exc))
                log.warning("outbox=%s failed permanently: %s", job.id, exc)
                return
            outbox.retry_later(s, row, error=str(exc), at=now + self._retry.delay(job.attempts))
        # Log an unreachable relay once per outage, not once per message.
        if not self._outage_logged:
            log.warning("sending failed, will retry: %s", exc)
            self._outage_logged = True

    def _release(self, job: _Job) -> None:
        with unit_of_work(self._engine) as s:
            row = outbox.get(s, job.id)
            if row is not None and row.state == "sending":
                row.state = "queued"
                row.attempts = max(0, row.attempts - 1)


def _subject_and_text(data: bytes) -> tuple[str, str]:
    from email import message_from_bytes
    from email.policy import default

    msg = message_from_bytes(data, policy=default)
    body = msg.get_body(("plain",))
    text = body.get_content() if body is not None else ""  # type: ignore[union-attr]
    return str(msg.get("Subject", "")), text
