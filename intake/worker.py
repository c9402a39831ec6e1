# SPDX-License-Identifier: GPL-3.0-or-later
"""The loop that processes accepted mail, woken at once by each accept and on a timer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import Engine

from intake.process import IntakeConfig, process_batch
from store import inbound
from store.blobs import BlobStore
from store.db import RunInThread, read_only, unit_of_work

log = logging.getLogger(__name__)


class IntakeWorker:
    def __init__(self, engine: Engine, blobs: BlobStore, cfg: IntakeConfig, *, clock: Callable[[], datetime],
                 run: RunInThread, on_outbox: Callable[[], None], batch: int = 200, group: int = 25,
                 group_bytes: int = 8 << 20, shard: inbound.Shard | None = None,
                 large_mail_turn: Callable[[], AbstractContextManager[object]] | None = None) -> None:
        self._engine = engine
        self._blobs = blobs
        self._cfg = cfg
        self._clock = clock
        self._run = run
        self._on_outbox = on_outbox
        self._batch = batch
        # Mails processed in one pair of transactions (see process_batch): enough to share the commits'
        # fsyncs under load, few enough that SQLite's write lock is never held for long. A lone mail is
        # processed at once.
        self._group = group
        # A group's mails are all read before any is applied, so a group is also kept small in bytes:
        # large mails go one or a few at a time.
        self._group_bytes = group_bytes
        self._shard = shard
        # Held while a group larger than group_bytes (one large mail) is read: reading a mail takes
        # a few times its size in memory, and the intake processes take turns so that only one of
        # them holds that at a time.
        self._large_mail_turn = large_mail_turn or contextlib.nullcontext
        self._wake = asyncio.Event()
        self.processed = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, idle_seconds: float = 5.0) -> None:
        """Process until stop is set; the current message is always finished first."""
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
        """Process every pending message once; return how many were processed.

        Messages that failed do not count, so a pass in which everything failed (the store is down)
        makes run() wait before the next one instead of retrying at once in a tight loop.
        """
        pending = await self._run(self._pending)
        processed = 0
        sizes = dict(pending)
        for group in groups(pending, max_count=self._group, max_bytes=self._group_bytes):
            if stop is not None and stop.is_set():
                break
            # Only a group of one mail goes over group_bytes (see groups()).
            large = len(group) == 1 and sizes[group[0]] > self._group_bytes
            try:
                results = await self._run(lambda g=group, large=large: self._process(g, large))
            except Exception:  # noqa: BLE001 - the store failed before anything was decided; next pass.
                log.exception("processing inbound %d..%d failed", group[0], group[-1])
                continue
            done = sum(1 for r in results if not isinstance(r, Exception))
            if done:
                # Each group's mail goes out while the next group is processed.
                self._on_outbox()
            processed += done
        self.processed += processed
        return processed

    def _process(self, group: list[int], large: bool) -> list[str | None | Exception]:
        with self._large_mail_turn() if large else contextlib.nullcontext():
            return process_batch(self._engine, self._blobs, group, self._cfg, self._clock)

    def _pending(self) -> list[tuple[int, int]]:
        with read_only(self._engine) as s:
            exhausted = bool(inbound.exhausted(s, max_attempts=self._cfg.max_attempts, shard=self._shard))
            pending = inbound.pending(s, limit=self._batch, max_attempts=self._cfg.max_attempts,
                                      shard=self._shard)
        if exhausted:
            self._quarantine_exhausted()
        return pending

    def _quarantine_exhausted(self) -> None:
        # A message whose processing crashed the daemon itself (so no failure could be recorded) has
        # used up its attempts while still 'accepted'; give it its outcome rather than leave it forever.
        # Looked for read-only first (above): this runs on every wake-up, and a writing transaction
        # would take SQLite's write lock from the accepts each time.
        with unit_of_work(self._engine) as s:
            for row in inbound.exhausted(s, max_attempts=self._cfg.max_attempts, shard=self._shard):
                inbound.finish(s, row, outcome="quarantined",
                               reason=row.reason or "processing was interrupted repeatedly", case_id=None,
                               now=self._clock())


def groups(pending: list[tuple[int, int]], *, max_count: int, max_bytes: int) -> list[list[int]]:
    """The ids of (id, size) pairs cut into groups of at most max_count mails and, unless a group is a
    single mail, at most max_bytes; in order."""
    out: list[list[int]] = []
    size = 0
    for inbound_id, n in pending:
        if not out or len(out[-1]) >= max_count or (size + n > max_bytes and out[-1]):
            out.append([])
            size = 0
        out[-1].append(inbound_id)
        size += n
    return out
