# SPDX-License-Identifier: GPL-3.0-or-later
"""Accepting mail: group commit into the spool, and the move from the spool into the inbound table.

The acceptor writes the mails that queued up while the previous group was being stored as one group
(bytes and envelopes in one spool commit; without a spool, blobs fsynced and one database commit).
These tests hold it to what a single accept promised: every caller gets the receipt of its own mail,
every recorded row names its own bytes and envelope, a mail that cannot be stored fails alone, not
its neighbours, a row never names a blob that is not yet stored, and a crash between the inbound
commit and the spool's clean-up records nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy.orm import undefer

from casemail.app import open_store
from casemail.settings import settings_from_dict
from intake.accept import Acceptor, Envelope, TransientFailure
from intake.spoolmover import SpoolMover
from store import inbound
from store.blobs import BlobBatch, BlobStore
from store.db import read_only, unit_of_work
from store.models import Inbound
from store.spool import Spool

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
        return {row.id: row for row in s.query(Inbound).options(undefer(Inbound.raw)).all()}


def _stored(store, row: Inbound) -> bytes:  # type: ignore[no-untyped-def]
    """The bytes an inbound row names: in the row for small mail, in the blob store for large."""
    return store.blobs.get_unless_inline(row.sha256, row.raw)


@pytest.fixture
def spool(tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = Spool(tmp_path / "spool.sqlite")
    yield opened
    opened.close()


async def test_concurrent_accepts_are_grouped_and_each_is_recorded_once(store, spool) -> None:  # type: ignore[no-untyped-def]
    runner = _CountingRunner()
    woken: list[int] = []
    acceptor = Acceptor(store.engine, store.blobs, spool=spool, run_db=runner, clock=_now,
                        on_accepted=lambda: woken.append(1))
    mails = [_mail(n) for n in range(60)]

    receipts = await asyncio.gather(*(acceptor.accept(raw, Envelope("smtp", f"c{n}@customer.example",
                                                                       ("support@example.com",)))
                                      for n, raw in enumerate(mails)))

    assert len(set(receipts)) == 60
    # Grouped: far fewer writes than mails (the first mail is written alone, the rest queue behind it).
    assert runner.calls < 10
    assert woken and len(woken) == runner.calls
    # Spooled with their bytes, in the order the receipts say, and not yet in the database nor in the
    # blob store: the 250 waited for the spool's commit only.
    spooled = {m.spool_id: m for m in spool.oldest(100)}
    assert _rows(store) == {}
    for n, receipt in enumerate(receipts):
        assert spooled[receipt].message.message_id == f"m{n}@customer.example"
        assert spooled[receipt].raw == mails[n]
        assert not store.blobs.path(hashlib.sha256(mails[n]).hexdigest()).exists()

    moved: list[int] = []
    mover = SpoolMover(spool, store.engine, store.blobs, run=asyncio.to_thread, on_moved=lambda: moved.append(1))
    assert mover.move_once() == 60
    assert mover.move_once() == 0
    assert spool.count() == 0
    rows = {row.message_id: row for row in _rows(store).values()}
    assert len(rows) == 60
    for n, raw in enumerate(mails):
        row = rows[f"m{n}@customer.example"]
        assert row.sha256 == hashlib.sha256(raw).hexdigest()
        assert row.mail_from == f"c{n}@customer.example"
        assert row.rcpt_tos == ["support@example.com"]
        assert row.size == len(raw)
        assert row.state == "accepted"
        assert row.received_at == spooled[receipts[n]].message.received_at
        # A small mail's bytes are kept in its row; no blob file is written for it.
        assert row.raw == raw
        assert not store.blobs.path(row.sha256).exists()


async def test_without_a_spool_the_rows_are_written_directly(store) -> None:  # type: ignore[no-untyped-def]
    acceptor = Acceptor(store.engine, store.blobs, run_db=_CountingRunner(), clock=_now, on_accepted=lambda: None)
    ids = await asyncio.gather(*(acceptor.accept(_mail(n), Envelope("smtp", None, ("support@example.com",)))
                                 for n in range(20)))
    rows = _rows(store)
    assert sorted(ids) == sorted(rows)
    assert {rows[i].message_id for i in ids} == {f"m{n}@customer.example" for n in range(20)}
    # Small mail keeps its bytes in its row, and no blob file is written for it.
    assert sorted(row.raw for row in rows.values()) == sorted(_mail(n) for n in range(20))
    assert not any(store.blobs.path(row.sha256).exists() for row in rows.values())


def test_accept_sync_keeps_small_mail_in_its_row_and_large_mail_in_the_blob_store(store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    small, large = _mail(1), _mail(2, "x" * 500)
    monkeypatch.setattr(inbound, "INLINE_BYTES", len(small))
    acceptor = Acceptor(store.engine, store.blobs, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    first, second = (acceptor.accept_sync(raw, Envelope("import", None, ("support@example.com",)))
                     for raw in (small, large))
    rows = _rows(store)
    assert rows[first].raw == small and not store.blobs.path(rows[first].sha256).exists()
    assert rows[second].raw is None and store.blobs.get(rows[second].sha256) == large


def test_a_restart_records_nothing_twice(store, spool) -> None:  # type: ignore[no-untyped-def]
    acceptor = Acceptor(store.engine, store.blobs, spool=spool, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    spooled = [acceptor._store([(_mail(n), Envelope("smtp", None, ("support@example.com",)))])[0]
               for n in range(5)]
    # The state a crash leaves between the inbound commit and the spool's clean-up: the first three
    # are in both places.
    with unit_of_work(store.engine) as s:
        inbound.record_many(s, [m.message for m in spool.oldest(3)])

    mover = SpoolMover(spool, store.engine, store.blobs, run=asyncio.to_thread, on_moved=lambda: None)
    assert mover.move_once() == 5
    assert spool.count() == 0
    assert mover.moved == 2
    rows = _rows(store)
    assert sorted(row.message_id for row in rows.values()) == [f"m{n}@customer.example" for n in range(5)]
    assert len(spooled) == 5


def test_a_failed_clean_up_of_the_spool_records_nothing_twice(store, spool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    mover = SpoolMover(spool, store.engine, store.blobs, run=asyncio.to_thread, on_moved=lambda: None)
    assert mover.move_once() == 0   # an empty spool: nothing left over from an earlier run
    acceptor = Acceptor(store.engine, store.blobs, spool=spool, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    for n in range(3):
        acceptor._store([(_mail(n), Envelope("smtp", None, ("support@example.com",)))])
    real_remove = spool.remove

    def remove_fails_once(ids):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(spool, "remove", real_remove)
        raise OSError("disk full")

    monkeypatch.setattr(spool, "remove", remove_fails_once)
    with pytest.raises(OSError):
        mover.move_once()           # the rows were committed; the spool still holds them
    assert mover.move_once() == 3
    assert spool.count() == 0
    assert sorted(row.message_id for row in _rows(store).values()) == [f"m{n}@customer.example" for n in range(3)]


def test_a_database_that_cannot_be_written_leaves_the_mail_spooled(tmp_path: Path, spool) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    spool.add([inbound.NewInbound(transport="smtp", mail_from=None, rcpt_tos=("support@example.com",),
                                  message_id="<x@y>", sha256=hashlib.sha256(b"x").hexdigest(), size=1,
                                  received_at=_now(), raw=b"x")])
    # A database without the schema: every insert fails, as it would with the server gone.
    broken = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    mover = SpoolMover(spool, broken, BlobStore(tmp_path / 'blobs'), run=asyncio.to_thread, on_moved=lambda: None)
    with pytest.raises(Exception):
        mover.move_once()
    assert spool.count() == 1
    broken.dispose()


async def test_the_mover_records_what_is_spooled_before_it_stops(store, spool) -> None:  # type: ignore[no-untyped-def]
    acceptor = Acceptor(store.engine, store.blobs, spool=spool, run_db=asyncio.to_thread, clock=_now,
                        on_accepted=lambda: None)
    for n in range(3):
        await acceptor.accept(_mail(n), Envelope("smtp", None, ("support@example.com",)))
    stop = asyncio.Event()
    stop.set()
    moved: list[int] = []
    mover = SpoolMover(spool, store.engine, store.blobs, run=asyncio.to_thread, on_moved=lambda: moved.append(1))
    await asyncio.wait_for(mover.run(stop), 10)
    assert spool.count() == 0
    assert len(_rows(store)) == 3
    assert moved


async def test_a_mail_that_cannot_be_stored_fails_alone(tmp_path: Path, store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Mails too large to be kept in their rows, so that their bytes go to the blob store.
    monkeypatch.setattr(inbound, "INLINE_BYTES", 10)
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


def _spool_mails(spool: Spool, store, count: int, body: str = "") -> list[bytes]:  # type: ignore[no-untyped-def]
    acceptor = Acceptor(store.engine, store.blobs, spool=spool, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    mails = [_mail(n, body) for n in range(count)]
    acceptor._store([(raw, Envelope("smtp", None, ("support@example.com",))) for raw in mails])
    return mails


def test_spooled_mail_outlives_its_spool_connection(tmp_path: Path, store) -> None:  # type: ignore[no-untyped-def]
    # What a crash right after the 250 leaves: the bytes only in the spool file.
    first = Spool(tmp_path / "spool.sqlite")
    mails = _spool_mails(first, store, 3)
    first.close()

    reopened = Spool(tmp_path / "spool.sqlite")
    mover = SpoolMover(reopened, store.engine, store.blobs, run=asyncio.to_thread, on_moved=lambda: None)
    assert mover.move_once() == 3
    reopened.close()
    rows = list(_rows(store).values())
    assert sorted(_stored(store, row) for row in rows) == sorted(mails)


def test_a_blob_that_cannot_be_written_leaves_the_mail_spooled(tmp_path: Path, store, spool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Mails too large to be kept in their rows: the mover writes them to the blob store first.
    monkeypatch.setattr(inbound, "INLINE_BYTES", 10)
    mails = _spool_mails(spool, store, 4, "POISON")
    failing = SpoolMover(spool, store.engine, _PoisonBlobs(tmp_path / "poison-blobs"), run=asyncio.to_thread,
                         on_moved=lambda: None)
    with pytest.raises(OSError):
        failing.move_once()
    # No row names bytes that were not stored, and nothing left the spool.
    assert _rows(store) == {}
    assert spool.count() == 4

    mover = SpoolMover(spool, store.engine, store.blobs, run=asyncio.to_thread, on_moved=lambda: None)
    assert mover.move_once() == 4
    rows = _rows(store).values()
    assert all(row.raw is None for row in rows)
    assert sorted(store.blobs.get(row.sha256) for row in rows) == sorted(mails)


def test_a_pass_holds_a_bounded_number_of_bytes(store, spool) -> None:  # type: ignore[no-untyped-def]
    mails = _spool_mails(spool, store, 5, "x" * 4000)
    size = len(mails[0])
    assert [m.raw for m in spool.oldest(100, max_bytes=2 * size)] == mails[:2]
    # The oldest mail is always taken, however large, or it would never move.
    assert [m.raw for m in spool.oldest(100, max_bytes=10)] == mails[:1]
    mover = SpoolMover(spool, store.engine, store.blobs, run=asyncio.to_thread, on_moved=lambda: None,
                       max_batch_bytes=2 * size)
    assert [mover.move_once() for _ in range(4)] == [2, 2, 1, 0]
    assert len(_rows(store)) == 5


def test_a_spool_left_by_an_earlier_version_is_moved(tmp_path: Path, store) -> None:  # type: ignore[no-untyped-def]
    # An earlier version wrote the blob before the 250 and spooled only the envelope, without a raw column.
    import sqlite3

    raw = _mail(1)
    sha = store.blobs.put(raw)
    path = tmp_path / "old-spool.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE spooled (id INTEGER PRIMARY KEY AUTOINCREMENT, transport TEXT NOT NULL,"
                " mail_from TEXT, rcpt_tos TEXT NOT NULL, message_id TEXT, sha256 TEXT NOT NULL,"
                " size INTEGER NOT NULL, received_at TEXT NOT NULL)")
    old.execute("INSERT INTO spooled (transport, mail_from, rcpt_tos, message_id, sha256, size, received_at)"
                " VALUES ('smtp', NULL, '[\"support@example.com\"]', 'm1@customer.example', ?, ?, ?)",
                (sha, len(raw), _now().isoformat()))
    old.commit()
    old.close()

    spool = Spool(path)
    try:
        (spooled,) = spool.oldest(10)
        assert spooled.raw is None
        mover = SpoolMover(spool, store.engine, store.blobs, run=asyncio.to_thread, on_moved=lambda: None)
        assert mover.move_once() == 1
        assert spool.count() == 0
    finally:
        spool.close()
    (row,) = _rows(store).values()
    assert row.message_id == "m1@customer.example"
    assert store.blobs.get(row.sha256) == raw and row.raw is None


def test_a_large_mail_is_in_the_blob_store_before_its_250(store, spool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import intake.accept

    small, large = _mail(1), _mail(2, "x" * 500)
    monkeypatch.setattr(intake.accept, "SPOOL_INLINE_BYTES", len(small))
    acceptor = Acceptor(store.engine, store.blobs, spool=spool, run_db=None, clock=_now,  # type: ignore[arg-type]
                        on_accepted=lambda: None)
    acceptor._store([(raw, Envelope("smtp", None, ("support@example.com",))) for raw in (large, small)])

    # The large one was written to the blob store and spooled without its bytes; the small one is
    # spooled with them. Both keep their order.
    first, second = spool.oldest(10)
    assert (first.raw, first.message.message_id) == (None, "m2@customer.example")
    assert store.blobs.get(first.message.sha256) == large
    assert second.raw == small
    assert not store.blobs.path(second.message.sha256).exists()

    mover = SpoolMover(spool, store.engine, store.blobs, run=asyncio.to_thread, on_moved=lambda: None)
    assert mover.move_once() == 2
    assert sorted(_stored(store, row) for row in _rows(store).values()) == sorted([small, large])
