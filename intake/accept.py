# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way mail comes in: raw bytes and an envelope become durable before anyone is told so.

Every transport (SMTP, LMTP, IMAP, the pipe command, import) calls accept(). It makes the raw message
and its envelope durable, and only then returns, so the transport can acknowledge the mail knowing
nothing can lose it. In the daemon both go to the accept spool (store/spool.py) in one commit per
group, and SpoolMover records the inbound row right after; the commands without a daemon (the pipe
command, import) record the inbound row directly. Either way a small mail's bytes are kept in its
row, and a large one's are written to the blob store (fsynced) before the row naming them. Parsing
and threading happen afterwards, from the inbound table; a crash at any point is recovered at the
next start, from the spool or from the inbound table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import Engine

from store import inbound
from store.blobs import BlobStore
from store.db import RunInThread, unit_of_work
from store.spool import Spool

log = logging.getLogger(__name__)

_HEADER_END = re.compile(rb"\r?\n\r?\n")

# Mails up to this size are spooled with their bytes; larger ones go to the blob store before the 250.
SPOOL_INLINE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Envelope:
    transport: str
    mail_from: str | None          # "" for the null sender <>, None when there was no envelope
    rcpt_tos: tuple[str, ...]


class TransientFailure(Exception):
    """The mail could not be stored now; the sender should try again later."""


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID of a raw message, read from its header block only."""
    match = _HEADER_END.search(raw)
    head = raw[: match.end()] if match else raw[:65536]
    try:
        value = BytesHeaderParser(policy=compat32).parsebytes(head).get("Message-ID")
    except Exception:  # noqa: BLE001 - a header we cannot read just means no Message-ID for dedup.
        return None
    if value is None:
        return None
    text = str(value).strip().replace("\r", "").replace("\n", "").replace("\x00", "")
    text = text.strip("<> \t")
    return text[:998] or None


class Acceptor:
    """Stores incoming mail durably; see the module docstring.

    Concurrent accepts are committed in groups: while one group is being written (one spool commit,
    or one commit of its rows without a spool), the mails that arrive queue up and become the next
    group, so the cost of the fsyncs and the commit is shared by every mail in the group. A lone mail is written
    at once, so grouping adds no waiting at one connection. Each sender still gets its 250 only after
    its own mail is committed.
    """

    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        *,
        run_db: RunInThread,
        clock: Callable[[], datetime],
        on_accepted: Callable[[], None],
        spool: Spool | None = None,
        max_group: int = 256,
    ) -> None:
        self._engine = engine
        self._spool = spool
        self._blobs = blobs
        self._run_db = run_db
        self._clock = clock
        self._on_accepted = on_accepted
        self._max_group = max_group
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def accept(self, raw: bytes, envelope: Envelope) -> int:
        """Store one message; return its receipt number (its spool id, or its inbound id without a spool).

        Raises TransientFailure if it could not be stored.
        """
        waiting = _Waiting(raw, envelope, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups(), name="accept-writer")
        try:
            # Shielded: a sender that hangs up does not take the group's write down with it.
            inbound_id = await asyncio.shield(waiting.done)
        except asyncio.CancelledError:
            waiting.done.add_done_callback(_consume)
            raise
        except Exception as exc:
            log.error("could not store mail from %r via %s: %s", envelope.mail_from, envelope.transport, exc)
            raise TransientFailure(str(exc)) from exc
        log.info("accepted %s=%s via %s from=%r size=%d", "spool" if self._spool else "inbound", inbound_id,
                 envelope.transport, envelope.mail_from, len(raw))
        return inbound_id

    def accept_sync(self, raw: bytes, envelope: Envelope) -> int:
        """The same for callers without an event loop (the pipe command, import): the inbound row is
        written directly, and its id returned."""
        return self._record_directly([(raw, envelope)])[0]

    async def _write_groups(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[: self._max_group], self._waiting[self._max_group:]
            try:
                await self._write_group(group)
            finally:
                # Nobody may wait forever, whatever went wrong above (a cancelled task at shutdown).
                for w in group:
                    _settle(w, TransientFailure("the mail could not be stored"))

    async def _write_group(self, group: list[_Waiting]) -> None:
        items = [(w.raw, w.envelope) for w in group]
        try:
            ids = await self._run_db(lambda: self._store(items))
        except Exception as exc:  # noqa: BLE001 - handed to each waiting sender below.
            if len(group) > 1:
                # One message must not fail its neighbours: write each alone, so only the one
                # that cannot be stored gets the temporary failure.
                log.warning("a group of %d mails could not be stored (%s); storing them one by one",
                            len(group), exc)
                for w in group:
                    await self._write_group([w])
            else:
                log.exception("could not store a mail from %r", group[0].envelope.mail_from)
                _settle(group[0], exc)
            return
        for w, inbound_id in zip(group, ids, strict=True):
            _settle(w, inbound_id)
        self._on_accepted()

    def _store(self, items: list[tuple[bytes, Envelope]]) -> list[int]:
        if self._spool is None:
            return self._record_directly(items)
        # A mail's bytes go into the spool's commit with its envelope: one fsync for the whole group.
        # A large mail is written to the blob store first instead, as without a spool: its fsyncs are
        # small beside its bytes, and SQLite would hold extra copies of it while writing and reading.
        return self._spool.add(self._kept(items, SPOOL_INLINE_BYTES))

    def _record_directly(self, items: list[tuple[bytes, Envelope]]) -> list[int]:
        # Straight into the inbound table, without a spool: a small mail's bytes go into its row, in
        # the one commit, as the spool mover records them.
        return self._record(self._kept(items, inbound.INLINE_BYTES))

    def _kept(self, items: list[tuple[bytes, Envelope]], inline_bytes: int) -> list[inbound.NewInbound]:
        """Each mail described, with its bytes when it is at most inline_bytes long; the bytes of a
        longer one are written to the blob store (fsynced) here instead."""
        inline = [len(raw) <= inline_bytes for raw, _ in items]
        written = iter(self._write_blobs([item for item, small in zip(items, inline) if not small]))
        kept: list[inbound.NewInbound] = []
        for (raw, envelope), small in zip(items, inline, strict=True):
            if small:
                (message,) = self._describe([(raw, envelope)], [hashlib.sha256(raw).hexdigest()])
                kept.append(dataclasses.replace(message, raw=raw))
            else:
                kept.append(next(written))
        return kept

    def _write_blobs(self, items: list[tuple[bytes, Envelope]]) -> list[inbound.NewInbound]:
        # Every blob is fsynced before the envelopes naming them are committed.
        return self._describe(items, self._blobs.put_all([raw for raw, _ in items]))

    def _describe(self, items: list[tuple[bytes, Envelope]], shas: list[str]) -> list[inbound.NewInbound]:
        # Each message gets its own instant: with its digest it names this acceptance when the spool
        # is recovered after a crash (see SpoolMover).
        return [
            inbound.NewInbound(transport=env.transport, mail_from=env.mail_from, rcpt_tos=env.rcpt_tos,
                               message_id=header_message_id(raw), sha256=sha, size=len(raw),
                               received_at=self._clock())
            for (raw, env), sha in zip(items, shas, strict=True)
        ]

    def _record(self, messages: list[inbound.NewInbound]) -> list[int]:
        with unit_of_work(self._engine) as s:
            return inbound.record_many(s, messages)


@dataclass
class _Waiting:
    raw: bytes
    envelope: Envelope
    done: asyncio.Future[int]


def _consume(done: asyncio.Future[int]) -> None:
    # The sender hung up; its outcome is read here so asyncio does not report it as never retrieved.
    if not done.cancelled():
        done.exception()


def _settle(w: _Waiting, outcome: int | BaseException) -> None:
    if w.done.done():
        return
    if isinstance(outcome, BaseException):
        w.done.set_exception(outcome)
    else:
        w.done.set_result(outcome)
