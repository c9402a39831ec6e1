# SPDX-License-Identifier: GPL-3.0-or-later
"""SQLite writers take turns through a file lock beside the database (store.db.WriterLock).

The lock is held from the BEGIN of a writing transaction until its connection is back in the pool,
whether the transaction committed or rolled back, and a read-only transaction never takes it. Another
open file on the same path (what another process or another pooled connection has) probes it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from store.db import make_engine, read_only, unit_of_work


def _held(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the probe's file also drops a lock it got
    return False


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    e = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with e.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    yield e
    e.dispose()


def test_a_writing_transaction_holds_the_lock_until_it_is_over(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lock = tmp_path / "w.db.writer-lock"
    assert not _held(lock)
    with unit_of_work(engine) as s:
        s.execute(text("INSERT INTO t VALUES (1)"))
        assert _held(lock)
    assert not _held(lock)

    with pytest.raises(RuntimeError), unit_of_work(engine) as s:
        s.execute(text("INSERT INTO t VALUES (2)"))
        assert _held(lock)
        raise RuntimeError("rolled back")
    assert not _held(lock)
    with read_only(engine) as s:
        assert s.scalar(text("SELECT count(*) FROM t")) == 1


def test_reading_takes_no_lock(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with read_only(engine) as s:
        s.scalar(text("SELECT count(*) FROM t"))
        assert not _held(tmp_path / "w.db.writer-lock")


def test_a_second_writer_waits_for_the_first(engine) -> None:  # type: ignore[no-untyped-def]
    import threading

    events: list[str] = []
    started = threading.Event()

    def second() -> None:
        started.set()
        with unit_of_work(engine) as s:
            # The transaction begins with its first statement.
            s.execute(text("INSERT INTO t VALUES (20)"))
            events.append("second wrote")

    with unit_of_work(engine) as s:
        s.execute(text("INSERT INTO t VALUES (10)"))
        worker = threading.Thread(target=second)
        worker.start()
        started.wait(5)
        worker.join(0.3)   # it cannot finish: it waits for this transaction
        assert worker.is_alive() and events == []
        events.append("first commits")
    worker.join(10)
    assert events == ["first commits", "second wrote"]
