# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the transport tests: test mail, and waiting on the store for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from store.models import Case, Inbound

T = TypeVar("T")


def raw_mail(subject: str, *, message_id: str, sender: str = "jane@customer.example",
             to: str = "support@example.com", body: str = "Hello,\r\nit is broken.\r\n") -> bytes:
    return (f"From: Jane Doe <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n"
            f"Date: Sun, 29 Nov 2026 04:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


async def eventually(check: Callable[[], T | None], *, timeout: float = 10.0, what: str = "condition") -> T:
    """Poll check (in a thread) until it returns something truthy.

    The daemon runs in another task or process and offers no event for "this mail is now a case";
    its store is the only witness, so the test asks it, often and for a bounded time.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def loopback_server(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                          ) -> AsyncIterator[int]:
    """A TCP server on a free loopback port for a test's proxy; yields the port."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


def spooled(path: Path) -> int:
    """How many accepted mails wait in a daemon's accept spool (0 when it has none yet)."""
    return len(spooled_message_ids(path))


def spooled_message_ids(path: Path) -> list[str | None]:
    """The Message-IDs of the mails in a daemon's accept spool."""
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return [row[0] for row in db.execute("SELECT message_id FROM spooled")]


class StoreView:
    """Read-only looks into a daemon's database from the test."""

    def __init__(self, url: str) -> None:
        self._engine = create_engine(url)

    def close(self) -> None:
        self._engine.dispose()

    def inbound(self) -> list[tuple[str, str | None, str | None]]:
        """(state, outcome, message_id) of every inbound row, in order."""
        with Session(self._engine) as s:
            return [(r.state, r.outcome, r.message_id) for r in s.scalars(select(Inbound).order_by(Inbound.id))]

    def subjects(self) -> list[str]:
        with Session(self._engine) as s:
            return [c.subject for c in s.scalars(select(Case).order_by(Case.number))]

    def settled(self, count: int) -> bool:
        """True once there are at least count inbound rows and all of them are processed."""
        rows = self.inbound()
        return len(rows) >= count and all(state == "processed" for state, _, _ in rows)
