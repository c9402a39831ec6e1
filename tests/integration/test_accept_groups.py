# SPDX-License-Identifier: GPL-3.0-or-later
"""Group commit on accept: mails that arrive together are stored together, each one exactly once.

The acceptor writes the mails that queued up while the previous group was being stored as one group
(blobs fsynced, one INSERT, one commit). These tests hold it to what a single accept promised: every
caller gets the id of its own row, every row names its own bytes, and a mail that cannot be stored
fails alone, not its neighbours.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import pytest

from casemail.app import open_store
from casemail.settings import settings_from_dict
from intake.accept import Acceptor, Envelope, TransientFailure
from store.blobs import BlobBatch, BlobStore
from store.db import read_only
from store.models import Inbound

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _mail(n: int, body: str = "") -> bytes:
    return (f"From: c{n}@customer.example\r\nTo: support@example.com\r\nSubject: Case {n}\r\n"
            f"Message-ID: <m{n}@customer.example>\r\n\r\nMail number {n}. {body}\r\n").encode()


class _CountingRunner:
    """Runs store work in a thread like the daemon's database thread, counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, fn: Callable[[], T]) -> T:
        self.calls += 1
        # A little slower than a real disk at its best, so that mails queue up behind a write.
        await asyncio.sleep(0.01)
        return await asyncio.to_thread(fn)


class _PoisonBatch(BlobBatch):
    def add(self, data: bytes) -> str:
        if b"POISON" in data:
            raise OSError("cannot write this one")
        return super().add(data)


class _PoisonBlobs(BlobStore):
    """A blob store that cannot store any mail containing POISON (a full disk for that one mail)."""

    def put(self, data: bytes) -> str:
        if b"POISON" in data:
            raise OSError("cannot write this one")
        return super().put(data)

    def batch(self) -> BlobBatch:
        return _PoisonBatch(self, None)


@pytest.fixture
def store(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    settings = settings_from_dict({"database": {"url": database_url}}, base_dir=tmp_path)
    opened = open_store(settings)
    yield opened
    opened.engine.dispose()


def _rows(store) -> dict[int, Inbound]:  # type: ignore[no-untyped-def]
    with read_only(store.engine) as s:
        return {row.id: row for row in s.query(Inbound).all()}


async def test_concurrent_accepts_are_grouped_and_each_gets_its_own_row(store) -> None:  # type: ignore[no-untyped-def]
    runner = _CountingRunner()
    woken: list[int] = []
    acceptor = Acceptor(store.engine, store.blobs, run_db=runner, clock=_now, on_accepted=lambda: woken.append(1))
    mails = [_mail(n) for n in range(60)]

    ids = await asyncio.gather(*(acceptor.accept(raw, Envelope("smtp", f"c{n}@customer.example",
                                                                  ("support@example.com",)))
                                 for n, raw in enumerate(mails)))

    assert len(set(ids)) == 60
    # Grouped: far fewer writes than mails (the first mail is written alone, the rest queue behind it).
    assert runner.calls < 10
    assert woken and len(woken) == runner.calls
    rows = _rows(store)
    assert set(rows) == set(ids)
    for n, (raw, inbound_id) in enumerate(zip(mails, ids, strict=True)):
        row = rows[inbound_id]
        assert row.sha256 == hashlib.sha256(raw).hexdigest()
        assert row.message_id == f"m{n}@customer.example"
        assert row.mail_from == f"c{n}@customer.example"
        assert row.rcpt_tos == ["support@example.com"]
        assert row.size == len(raw)
        assert row.state == "accepted"
        assert store.blobs.get(row.sha256) == raw


async def test_a_mail_that_cannot_be_stored_fails_alone(tmp_path: Path, store) -> None:  # type: ignore[no-untyped-def]
    blobs = _PoisonBlobs(tmp_path / "poison-blobs")
    acceptor = Acceptor(store.engine, blobs, run_db=_CountingRunner(), clock=_now, on_accepted=lambda: None)
    mails = [_mail(n, "POISON" if n == 7 else "") for n in range(20)]

    results = await asyncio.gather(*(acceptor.accept(raw, Envelope("smtp", None, ("support@example.com",)))
                                     for raw in mails), return_exceptions=True)

    assert isinstance(results[7], TransientFailure)
    stored = [r for n, r in enumerate(results) if n != 7]
    assert all(isinstance(r, int) for r in stored)
    rows = _rows(store)
    assert len(rows) == 19
    assert {rows[i].message_id for i in stored} == {f"m{n}@customer.example" for n in range(20) if n != 7}


async def test_a_failed_store_reaches_every_waiting_sender(store) -> None:  # type: ignore[no-untyped-def]
    async def broken(fn: Callable[[], T]) -> T:
        raise OSError("database is gone")

    acceptor = Acceptor(store.engine, store.blobs, run_db=broken, clock=_now, on_accepted=lambda: None)
    results = await asyncio.wait_for(
        asyncio.gather(*(acceptor.accept(_mail(n), Envelope("smtp", None, ("support@example.com",)))
                         for n in range(5)), return_exceptions=True),
        timeout=10)
    assert all(isinstance(r, TransientFailure) for r in results)
    assert _rows(store) == {}
