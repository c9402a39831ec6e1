# SPDX-License-Identifier: GPL-3.0-or-later
"""The accept spool: mail the daemon has taken, waiting to be recorded in the database.

A sender gets its 250 once the raw message is in the blob store and its envelope is committed here,
in a small SQLite file of the daemon's own (WAL, synchronous=FULL). Nothing else writes to this file,
so the answer to a sender never waits for the database's write lock, which processing holds for
milliseconds at a time on SQLite, nor for a PostgreSQL server that is slow or briefly gone. The
daemon moves what is spooled into the inbound table right after (intake.accept.SpoolMover); a crash
in between is recovered by moving it at the next start.

The stdlib sqlite3 module is used directly: this is a queue of a few columns on the hottest path,
where the ORM's bookkeeping would cost more than the work.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
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
    received_at TEXT NOT NULL
)
"""


class Spool:
    """One daemon's spool file. Safe to use from several threads (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # The 250 is sent after the commit, so the commit must survive a power loss.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def add(self, messages: Sequence[NewInbound]) -> list[int]:
        """Commit the messages (their blobs already durable); return their spool ids in order."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ids = [
                    self._db.execute(
                        "INSERT INTO spooled (transport, mail_from, rcpt_tos, message_id, sha256, size,"
                        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        (m.transport, m.mail_from, json.dumps(list(m.rcpt_tos)), m.message_id, m.sha256,
                         m.size, m.received_at.isoformat()),
                    ).fetchone()[0]
                    for m in messages
                ]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return ids

    def oldest(self, limit: int) -> list[tuple[int, NewInbound]]:
        """Up to limit spooled messages, oldest first, with their spool ids."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, transport, mail_from, rcpt_tos, message_id, sha256, size, received_at"
                " FROM spooled ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [
            (row[0], NewInbound(transport=row[1], mail_from=row[2], rcpt_tos=tuple(json.loads(row[3])),
                                message_id=row[4], sha256=row[5], size=row[6],
                                received_at=datetime.fromisoformat(row[7])))
            for row in rows
        ]

    def remove(self, ids: Sequence[int]) -> None:
        """Forget messages that the database now holds."""
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM spooled WHERE id = ?", [(i,) for i in ids])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM spooled").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
