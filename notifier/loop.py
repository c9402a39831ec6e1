# SPDX-License-Identifier: GPL-3.0-or-later
"""The sending loop: claim due outbox rows, render each once, send, and record the result.

Three stages run side by side, so the smarthost connections are never idle while the database works:

- the feeder claims a batch (one short transaction), renders the new rows and stores their bytes
  (notifier/batch.py), and queues them; it claims the next batch while the last is still being sent;
- `connections` sender tasks take queued mails one at a time, each on its own reused SMTP connection;
- the recorder writes what became of every mail finished since its last write in one transaction
  (sent with its case entry, retry later, failed), while the senders go on sending.

A mail is marked sent only after the smarthost's 250, so sending is at least once: a daemon killed
between a 250 and the recording sends that mail again after the lease, with the same bytes and
Message-ID (receivers drop the duplicate). At a shutdown the senders finish the mail in hand, the
mails still queued are given back at once, and every outcome collected is written before the loop
returns; that write is shielded from cancellation, so a sent mail never loses its mark. Only if the
daemon's grace period runs out are the sends in flight (at most one per connection) cut off, and
those mails go again later.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from notifier import batch
from notifier.batch import Job, Outcome
from notifier.render import Renderer
from notifier.send import MailSender, SendError
from store.blobs import BlobStore
from store.db import RunInThread

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


async def _wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class OutboxWorker:
    def __init__(self, engine: Engine, blobs: BlobStore, renderer: Renderer, sender: MailSender, *,
                 envelope_from: str, clock: Callable[[], datetime], run: RunInThread,
                 retry: RetryPolicy = RetryPolicy(), batch: int = 100, connections: int = 1) -> None:
        if connections < 1:
            raise ValueError(f"connections must be at least 1, got {connections}")
        self._engine = engine
        self._blobs = blobs
        self._renderer = renderer
        self._sender = sender
        self._envelope_from = envelope_from
        self._clock = clock
        self._run = run
        self._retry = retry
        self._batch = batch
        self._connections = connections
        self._wake = asyncio.Event()
        self._taken = asyncio.Event()
        self._finished = asyncio.Event()
        self._outcomes: list[Outcome] = []
        # Rows this worker has claimed and not yet recorded or released: never claimed again meanwhile.
        self._held: set[int] = set()
        self._outage_logged = False
        self._busy = False
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, idle_seconds: float = 5.0) -> None:
        queue: asyncio.Queue[Job | None] = asyncio.Queue()
        senders = [asyncio.create_task(self._sending(queue), name=f"outbox-send-{i}")
                   for i in range(self._connections)]
        recorder_done = asyncio.Event()
        recorder = asyncio.create_task(self._recording(recorder_done), name="outbox-record")
        cancelled = False
        try:
            while not stop.is_set():
                if queue.qsize() >= self._batch:
                    # A whole batch is still waiting for a connection: claim no further ahead.
                    self._taken.clear()
                    await _wait_any(self._taken, stop)
                    continue
                self._wake.clear()
                try:
                    claimed = await self._feed(queue)
                except Exception:  # noqa: BLE001 - the database may come back; the loop must not die.
                    log.exception("claiming outbox mail failed; trying again")
                    claimed = 0
                    await _wait_any(stop, timeout=idle_seconds)
                if claimed:
                    continue
                await _wait_any(self._wake, stop, timeout=idle_seconds)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            await self._shutdown(queue, senders, recorder, recorder_done, cut_off=cancelled)

    async def _feed(self, queue: asyncio.Queue[Job | None]) -> int:
        held = frozenset(self._held)  # taken here: the set is only ever changed on the event loop
        # Coming from idle, the connections wait for whatever is claimed first to be rendered and
        # stored: a small first batch gets mail moving at once, full batches follow behind it.
        limit = self._batch if self._busy else min(self._batch, 2 * self._connections)

        def work() -> tuple[list[int], list[Job], list[Outcome]]:
            now = self._clock()
            claimed = batch.claim(self._engine, now=now, lease=self._retry.lease, limit=limit, held=held)
            if not claimed:
                return [], [], []
            try:
                jobs, failed = batch.prepare(self._engine, self._blobs, self._renderer, claimed, now=now)
            except Exception:
                # The bytes could not be stored (disk full?): give the rows back rather than hold them
                # for the whole lease.
                batch.release(self._engine, [c.id for c in claimed])
                raise
            return [c.id for c in claimed], jobs, failed

        ids, jobs, failed = await self._run(work)
        self._held.update(ids)
        self._busy = bool(ids)
        for job in jobs:
            queue.put_nowait(job)
        if failed:
            for outcome in failed:
                log.warning("outbox=%s failed permanently: %s", outcome.job_id, outcome.error)
            self._add_outcomes(failed)
        return len(ids)

    async def _sending(self, queue: asyncio.Queue[Job | None]) -> None:
        while True:
            job = await queue.get()
            if job is None:
                return
            self._taken.set()
            self._add_outcomes([await self._attempt(job)])

    async def _attempt(self, job: Job) -> Outcome:
        try:
            refused = await self._sender.send(self._envelope_from, job.recipients, job.data)
        except SendError as exc:
            return self._failure(job, exc)
        except Exception as exc:  # noqa: BLE001 - an unexpected fault is retried, never lost.
            log.exception("sending outbox=%s failed unexpectedly", job.id)
            return self._failure(job, SendError(repr(exc), permanent=False))
        if self._outage_logged:
            log.info("the mail relay accepts mail again")
            self._outage_logged = False
        return Outcome(job.id, sent=True, refused=tuple(refused), job=job)

    def _failure(self, job: Job, exc: SendError) -> Outcome:
        if exc.permanent:
            log.warning("outbox=%s failed permanently: %s", job.id, exc)
            return Outcome(job.id, sent=False, error=str(exc), permanent=True, job=job)
        # Log an unreachable relay once per outage, not once per message.
        if not self._outage_logged:
            log.warning("sending failed, will retry: %s", exc)
            self._outage_logged = True
        return Outcome(job.id, sent=False, error=str(exc), job=job,
                       retry_at=self._clock() + self._retry.delay(job.attempts + 1))

    def _add_outcomes(self, outcomes: list[Outcome]) -> None:
        self._outcomes.extend(outcomes)
        self._finished.set()

    async def _recording(self, done: asyncio.Event) -> None:
        """Write the collected outcomes, a group per transaction, until `done` and nothing is left."""
        while True:
            if not self._outcomes:
                if done.is_set():
                    return
                self._finished.clear()
                await _wait_any(self._finished, done)
                continue
            group, self._outcomes = self._outcomes, []
            try:
                await self._record(group)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the rows keep their claim; try the same group again.
                log.exception("recording %d outbox results failed; trying again", len(group))
                self._outcomes[:0] = group
                await asyncio.sleep(1.0)

    async def _record(self, group: list[Outcome]) -> None:
        def gave_up(outbox_id: int, error: str) -> None:
            log.warning("outbox=%s failed permanently (retried too long): %s", outbox_id, error)

        def work() -> None:
            batch.record(self._engine, group, now=self._clock(), give_up_after=self._retry.give_up_after,
                         on_gave_up=gave_up)

        # Shielded: a loop cancelled while the group is in the database thread does not wait for it,
        # but the commit still completes (the daemon joins that thread before exiting): marks are kept.
        await asyncio.shield(self._run(work))
        self._held.difference_update(o.job_id for o in group)
        for o in group:
            if o.sent and o.job is not None:
                self.sent += 1
                log.info("sent outbox=%s %s to %s", o.job_id, o.job.message_id, ", ".join(o.job.recipients))

    async def _shutdown(self, queue: asyncio.Queue[Job | None], senders: list[asyncio.Task[None]],
                        recorder: asyncio.Task[None], recorder_done: asyncio.Event, *, cut_off: bool) -> None:
        # Mails not yet taken by a connection go back to the queue at once rather than wait for the lease.
        unsent: list[int] = []
        while not queue.empty():
            job = queue.get_nowait()
            if job is not None:
                unsent.append(job.id)
        for _ in senders:
            queue.put_nowait(None)
        if cut_off:
            # The grace period is over: the sends in flight are abandoned (those mails go again later).
            for task in senders:
                task.cancel()
        try:
            # Each connection finishes the mail in hand.
            await asyncio.gather(*senders, return_exceptions=cut_off)
        finally:
            for task in senders:
                task.cancel()
            recorder_done.set()
            current = asyncio.current_task()
            if cut_off or (current is not None and current.cancelling()):
                # It may be retrying a write against an unreachable database; the rest is written below.
                recorder.cancel()
            try:
                await recorder
            except asyncio.CancelledError:
                pass
            # Whatever the recorder had not taken yet (it was cancelled) is written here.
            if self._outcomes:
                group, self._outcomes = self._outcomes, []
                await self._record(group)
            if unsent:
                await asyncio.shield(self._run(lambda: batch.release(self._engine, unsent)))
                self._held.difference_update(unsent)
