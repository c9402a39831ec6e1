# SPDX-License-Identifier: GPL-3.0-or-later
"""The accept spool: mail the daemon has taken, waiting to be recorded in the database.

A sender gets its 250 once the raw message and its envelope are committed here, in a SQLite file of
the daemon's own (WAL, synchronous=FULL). One commit makes a whole group of mails durable with one
fsync of the log. Writing each mail to the blob store first, as a file of its own, cost a file fsync
and up to three directory fsyncs per mail before the 250; that is now done after the 250, by the
spool mover (intake/spoolmover.py), which writes the blobs, records the inbound rows and only then
forgets the mail here. Nothing else writes to this file, so the answer to a sender never waits for
the database's write lock, which processing holds for milliseconds at a time on SQLite, nor for a
PostgreSQL server that is slow or briefly gone. A crash at any point is recovered by moving what is
still spooled at the next start.

The accept side and the mover's side use a connection each: WAL lets the mover read a group while
the next one is being committed, and the log's checkpoints (copying it into the file, with fsyncs of
their own) run on the mover's connection only, never inside a commit that a sender is waiting for.

The stdlib sqlite3 module is used directly: this is a queue of a few columns on the hottest path,
where the ORM's bookkeeping would cost more than the work.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from store.inbound import NewInbound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spooled (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the id is the receipt in the 250 reply
    transport TEXT NOT NULL,
    mail_from TEXT,
    rcpt_tos TEXT NOT NULL,
    message_id TEXT,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    raw BLOB  -- NULL when the bytes are already in the blob store (spooled by an earlier version)
)
"""

# After a burst the log is cut back to this size, so a burst of large mails does not keep its space.
_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class SpooledMail:
    """One spooled message: its receipt, and its envelope, digest and bytes (message.raw is None when
    the bytes are in the blob store)."""

    spool_id: int
    message: NewInbound

    @property
    def raw(self) -> bytes | None:
        return self.message.raw


class Spool:
    """One daemon's spool file. Safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._accept_lock = threading.Lock()
        self._mover_lock = threading.Lock()
        self._accept_db = _connect(path)
        # The accepting connection never checkpoints: a commit a sender waits for does one fsync only.
        self._accept_db.execute("PRAGMA wal_autocheckpoint=0")
        self._accept_db.execute(_SCHEMA)
        columns = {row[1] for row in self._accept_db.execute("PRAGMA table_info(spooled)")}
        if "raw" not in columns:
            # A spool left by a version that wrote the blob before spooling: its rows keep NULL.
            self._accept_db.execute("ALTER TABLE spooled ADD COLUMN raw BLOB")
        self._mover_db = _connect(path)
        self._mover_db.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT}")

    def add(self, messages: Sequence[NewInbound]) -> list[int]:
        """Commit messages with their bytes (raw None: already durable in the blob store); return
        their spool ids in order."""
        with self._accept_lock:
            db = self._accept_db
            db.execute("BEGIN IMMEDIATE")
            try:
                ids = [
                    db.execute(
                        "INSERT INTO spooled (transport, mail_from, rcpt_tos, message_id, sha256, size,"
                        " received_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        (m.transport, m.mail_from, json.dumps(list(m.rcpt_tos)), m.message_id, m.sha256,
                         m.size, m.received_at.isoformat(), m.raw),
                    ).fetchone()[0]
                    for m in messages
                ]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return ids

    def oldest(self, limit: int, max_bytes: int | None = None) -> list[SpooledMail]:
        """The oldest spooled messages with their bytes: up to limit of them, and no more than
        max_bytes of bytes in all, except that the oldest is always included however large."""
        with self._mover_lock:
            sizes = self._mover_db.execute(
                "SELECT id, size FROM spooled ORDER BY id LIMIT ?", (limit,)).fetchall()
            taken, total = 0, 0
            for _id, size in sizes:
                if taken and max_bytes is not None and total + size > max_bytes:
                    break
                taken += 1
                total += size
            if not taken:
                return []
            rows = self._mover_db.execute(
                "SELECT id, transport, mail_from, rcpt_tos, message_id, sha256, size, received_at, raw"
                " FROM spooled WHERE id <= ? ORDER BY id LIMIT ?", (sizes[taken - 1][0], taken)).fetchall()
        return [
            SpooledMail(row[0], NewInbound(transport=row[1], mail_from=row[2], rcpt_tos=tuple(json.loads(row[3])),
                                           message_id=row[4], sha256=row[5], size=row[6],
                                           received_at=datetime.fromisoformat(row[7]), raw=row[8]))
            for row in rows
        ]

    def remove(self, ids: Sequence[int]) -> None:
        """Forget messages that the database (and the blob store) now holds."""
        if not ids:
            return
        with self._mover_lock:
            db = self._mover_db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM spooled WHERE id = ?", [(i,) for i in ids])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def count(self) -> int:
        with self._mover_lock:
            return int(self._mover_db.execute("SELECT count(*) FROM spooled").fetchone()[0])

    def close(self) -> None:
        with self._accept_lock, self._mover_lock:
            self._mover_db.close()
            self._accept_db.close()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    # The 250 is sent after the commit, so the commit must survive a power loss.
    db.execute("PRAGMA synchronous=FULL")
    return db
