# SPDX-License-Identifier: GPL-3.0-or-later
"""Moving accepted mail from the daemon's spool into the inbound table, where processing finds it.

The acceptor commits each mail's bytes and envelope to the spool before its 250 (store/spool.py);
this loop records what is spooled as inbound rows a group at a time, then forgets it in the spool.
A small mail's bytes go into its row, in the group's one commit; a larger one's go to the blob
store (fsynced) first, so a row never names bytes a crash could take away. A crash between the
commit and the spool's clean-up leaves a mail in both places, never in neither: the first pass
after a start therefore skips spooled mail whose row exists (the same digest taken at the same
instant). Writing a blob twice is harmless (the store is content-addressed). While the database is
unreachable the spool simply grows, senders keep getting their 250, and the move is retried with a
growing pause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import Engine

from store import inbound
from store.blobs import BlobStore
from store.db import RunInThread, unit_of_work
from store.spool import Spool, SpooledMail

log = logging.getLogger(__name__)

# The longest pause between tries while the database cannot be written.
MAX_RETRY_SECONDS = 30.0
# A pass holds the bytes of the mails it moves; this bounds them (a larger mail is moved alone).
MAX_BATCH_BYTES = 8 * 1024 * 1024


class SpoolMover:
    def __init__(self, spool: Spool, engine: Engine, blobs: BlobStore, *, run: RunInThread,
                 on_moved: Callable[[], None], batch: int = 1000, max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        self._spool = spool
        self._engine = engine
        self._blobs = blobs
        self._run = run
        self._on_moved = on_moved
        self._batch = batch
        self._max_batch_bytes = max_batch_bytes
        self._wake = asyncio.Event()
        # While this is set (at the start, and after a failed pass) spooled mail may already have its
        # inbound row; it is cleared by a pass that finds the spool empty.
        self._recovering = True
        self.moved = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, idle_seconds: float = 1.0) -> None:
        """Move until stop is set, then once more for what was accepted before the stop."""
        pause = 0.5
        while True:
            self._wake.clear()
            try:
                moved = await self._run(self.move_once)
            except Exception:  # noqa: BLE001 - the spool keeps the mail; try again after a pause.
                log.exception("could not record spooled mail in the database; trying again in %.0f s", pause)
                if stop.is_set():
                    log.warning("stopping with %d mails still spooled; they are recorded at the next start",
                                await self._run(self._spool.count))
                    return
                await _wait_for_any((stop,), pause)
                pause = min(pause * 2, MAX_RETRY_SECONDS)
                continue
            pause = 0.5
            if moved:
                self._on_moved()
                continue
            if stop.is_set():
                return
            await _wait_for_any((self._wake, stop), idle_seconds)

    def move_once(self) -> int:
        """Record up to one batch of spooled mail; return how many spooled mails were handled."""
        spooled = self._spool.oldest(self._batch, self._max_batch_bytes)
        if not spooled:
            self._recovering = False
            return 0
        try:
            messages = [kept_inline(m) for m in spooled]
            # Durable before the rows naming them are committed.
            self._blobs.put_all([m.raw for m, new in zip(spooled, messages, strict=True)
                                 if m.raw is not None and new.raw is None])
            with unit_of_work(self._engine) as s:
                todo = [m for m in messages if not (self._recovering and inbound.is_recorded(s, m))]
                ids = inbound.record_many(s, todo)
            self._spool.remove([m.spool_id for m in spooled])
        except BaseException:
            # The inbound commit may have happened before the failure (of the spool's clean-up, say):
            # the next pass must look before it records, as after a crash.
            self._recovering = True
            raise
        if len(todo) < len(spooled):
            log.info("%d spooled mails were already recorded before a restart", len(spooled) - len(todo))
        if ids:
            log.debug("recorded spooled mail as inbound %d..%d", ids[0], ids[-1])
        self.moved += len(ids)
        return len(spooled)


def kept_inline(spooled: SpooledMail) -> inbound.NewInbound:
    """The inbound row of a spooled mail, carrying its bytes only when the row is to keep them."""
    if spooled.raw is not None and len(spooled.raw) > inbound.INLINE_BYTES:
        return replace(spooled.message, raw=None)
    return spooled.message


async def _wait_for_any(events: tuple[asyncio.Event, ...], timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
