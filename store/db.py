# SPDX-License-Identifier: GPL-3.0-or-later
"""Engine factory, transactions and schema migration.

casemail talks to its database through synchronous SQLAlchemy sessions run in worker threads (see
docs/architecture.md for why not the asyncio extension). On SQLite every writing transaction starts
with BEGIN IMMEDIATE: SQLite ignores SELECT ... FOR UPDATE, and taking the write lock up front is what
makes a read-then-update (claiming outbox rows, numbering cases) safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, make_transient_to_detached

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

T = TypeVar("T")


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """Create an engine for a SQLite or PostgreSQL URL, with the settings casemail relies on."""
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=pool_size,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "checkin", _sqlite_restore_sync)
        lock_path = _writer_lock_path(url)
        if lock_path is not None:
            writers = WriterLock(lock_path)
            event.listen(engine, "connect", writers.on_connect)
            event.listen(engine, "checkin", writers.on_checkin)
            event.listen(engine, "close", writers.on_close)
            engine.dialect.casemail_writers = writers  # type: ignore[attr-defined]
        return engine
    engine = create_engine(url, pool_size=pool_size, pool_pre_ping=True)
    event.listen(engine, "begin", _postgres_begin)
    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _ensure_sqlite_dir(url: str) -> None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and ":memory:" not in url:
        Path(url[len(prefix):]).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (below) instead of pysqlite's implicit deferred BEGIN.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # We answer 250 to the sending MTA after commit, so the commit must survive a power loss:
    # synchronous=NORMAL in WAL mode may lose the last transactions.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    options = conn.get_execution_options()
    if options.get("casemail_readonly"):
        conn.exec_driver_sql("BEGIN")
        return
    writers: WriterLock | None = getattr(conn.dialect, "casemail_writers", None)
    if writers is not None:
        writers.acquire(conn.connection.info)
    if options.get(_LAZY_COMMIT):
        # See unit_of_work(durable=False); the connection is set back to FULL when it returns to the pool.
        conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
        conn.connection.info[_LAZY_COMMIT] = True
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_restore_sync(dbapi_conn: Any, record: Any) -> None:
    if record.info.pop(_LAZY_COMMIT, False):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()


def _postgres_begin(conn: Any) -> None:
    if conn.get_execution_options().get(_LAZY_COMMIT):
        # Only for this transaction: the commit returns before its WAL record is flushed to disk.
        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def sqlite_file(url: str) -> Path | None:
    """The database file a sqlite:/// URL names, as SQLite opens it; None for another database or memory."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or ":memory:" in url:
        return None
    return Path(url[len(prefix):])


def _writer_lock_path(url: str) -> Path | None:
    database = sqlite_file(url)
    return database.with_name(database.name + ".writer-lock") if database is not None else None


class WriterLock:
    """Writers to one SQLite file take turns through a file lock before BEGIN IMMEDIATE.

    SQLite's own write lock is not waited on but polled: a writer that finds it taken sleeps (1, 2, 5,
    ... up to 100 ms) and looks again. With several processes writing in turn (the intake processes,
    the spool mover, the outbox) the lock was often free while every waiter slept, and a writer could
    miss its turn again and again. A blocking flock() is woken the moment the holder lets go. Each
    pooled connection has its own open file (flock locks belong to it, so threads and processes
    exclude each other alike); the lock is taken when a writing transaction begins and given back when
    the connection returns to the pool, after its commit or rollback. Read-only transactions never
    take it, and anything outside casemail that writes the file is still ordered by SQLite itself.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_connect(self, _dbapi_conn: Any, record: Any) -> None:
        record.info["casemail_writer_fd"] = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)

    def acquire(self, info: dict[str, Any]) -> None:
        fd = info.get("casemail_writer_fd")
        if fd is not None and not info.get("casemail_writer_held"):
            fcntl.flock(fd, fcntl.LOCK_EX)
            info["casemail_writer_held"] = True

    def on_checkin(self, _dbapi_conn: Any, record: Any) -> None:
        self._release(record.info)

    def on_close(self, _dbapi_conn: Any, record: Any) -> None:
        self._release(record.info)
        fd = record.info.pop("casemail_writer_fd", None)
        if fd is not None:
            os.close(fd)

    @staticmethod
    def _release(info: dict[str, Any]) -> None:
        if info.pop("casemail_writer_held", False):
            fcntl.flock(info["casemail_writer_fd"], fcntl.LOCK_UN)


_LAZY_COMMIT = "casemail_lazy_commit"


@contextlib.contextmanager
def unit_of_work(engine: Engine, *, durable: bool = True) -> Iterator[Session]:
    """One writing transaction: commit on success, roll back on any exception.

    `durable=False` is for a transaction whose loss in a power cut (not a crash of the daemon: that
    loses nothing either way) costs only work done again, such as the outbox's record of mail sent,
    whose loss means the mail goes once more with the same Message-ID. Its commit does not wait for
    the disk (SQLite: synchronous=NORMAL for it; PostgreSQL: synchronous_commit off), and the next
    durable commit on the database makes it durable too, since both write one log in order.
    """
    bind = engine if durable else engine.execution_options(**{_LAZY_COMMIT: True})
    with Session(bind, expire_on_commit=False) as session, session.begin():
        yield session


def plain(s: Session) -> Connection:
    """The session's connection, for a statement that neither loads nor writes mapped objects.

    Session.execute handles even a statement on plain columns as an ORM statement, which costs about
    40 µs per statement; intake runs several of them per mail while it holds SQLite's write lock.
    What the session holds unflushed is flushed first, as Session.execute would do before a query,
    so the statement sees this transaction's own changes; a flush with nothing pending costs nothing.
    """
    s.flush()
    return s.connection()


def adopt(s: Session, obj: T) -> T:
    """Add an object whose row was just written with a Core INSERT to the session, as persistent.

    Flushing a new object through the unit of work costs 0.3-0.6 ms, mostly bookkeeping that one plain
    row does not need, and intake inserts a contact and a case for most mails while it holds SQLite's
    write lock. Every column must be set on obj, its primary key included: one left unset would be
    read from the database again on first use.

    The session does not count the object as new in this transaction, so rolling back a savepoint
    leaves it in the identity map, and SQLite hands the rolled-back id out again. Whoever rolls back a
    savepoint and goes on with the session must therefore expunge what it holds (intake/process.py does).
    """
    make_transient_to_detached(obj)
    s.add(obj)
    return obj


@contextlib.contextmanager
def read_only(engine: Engine) -> Iterator[Session]:
    """A transaction that only reads, so it never holds SQLite's write lock."""
    ro = engine.execution_options(casemail_readonly=True)
    with Session(ro, expire_on_commit=False) as session, session.begin():
        yield session


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (the daemon and the CLI call this on start)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


# How async code runs blocking store work: the daemon passes a function that runs the callable in its
# database thread and awaits the result. Tests pass asyncio.to_thread.
RunInThread = Callable[[Callable[[], T]], Awaitable[T]]
