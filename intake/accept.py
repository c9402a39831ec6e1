# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way mail comes in: raw bytes and an envelope become a durable inbound row.

Every transport (SMTP, LMTP, IMAP, the pipe command, import) calls accept(). It writes the raw message
to the blob store (fsynced) and commits the inbound row, and only then returns, so the transport can
acknowledge the mail knowing nothing can lose it. Parsing and threading happen afterwards, from the
inbound table; a crash between the two is recovered by processing the row on restart.
"""

from __future__ import annotations

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

log = logging.getLogger(__name__)

_HEADER_END = re.compile(rb"\r?\n\r?\n")


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
    """Stores incoming mail durably; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        *,
        run_db: RunInThread,
        run_io: RunInThread,
        clock: Callable[[], datetime],
        on_accepted: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._blobs = blobs
        self._run_db = run_db
        self._run_io = run_io
        self._clock = clock
        self._on_accepted = on_accepted

    async def accept(self, raw: bytes, envelope: Envelope) -> int:
        """Store one message; return its inbound id. Raises TransientFailure if it could not be stored."""
        try:
            sha = await self._run_io(lambda: self._blobs.put(raw))
            inbound_id = await self._run_db(lambda: self._record(raw, sha, envelope))
        except Exception as exc:
            log.exception("could not store mail from %r via %s", envelope.mail_from, envelope.transport)
            raise TransientFailure(str(exc)) from exc
        log.info("accepted inbound=%s via %s from=%r size=%d", inbound_id, envelope.transport,
                 envelope.mail_from, len(raw))
        self._on_accepted()
        return inbound_id

    def accept_sync(self, raw: bytes, envelope: Envelope) -> int:
        """The same, for callers without an event loop (the pipe command, import)."""
        sha = self._blobs.put(raw)
        return self._record(raw, sha, envelope)

    def _record(self, raw: bytes, sha: str, envelope: Envelope) -> int:
        with unit_of_work(self._engine) as s:
            row = inbound.record_inbound(
                s,
                transport=envelope.transport,
                mail_from=envelope.mail_from,
                rcpt_tos=envelope.rcpt_tos,
                message_id=header_message_id(raw),
                sha256=sha,
                size=len(raw),
                now=self._clock(),
            )
            return row.id
