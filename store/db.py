# SPDX-License-Identifier: GPL-3.0-or-later
"""Engine factory, transactions and schema migration.

casemail talks to its database through synchronous SQLAlchemy sessions run in worker threads (see
docs/architecture.md for why not the asyncio extension). On SQLite every writing transaction starts
with BEGIN IMMEDIATE: SQLite ignores SELECT ... FOR UPDATE, and taking the write lock up front is what
makes a read-then-update (claiming outbox rows, numbering cases) safe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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
        return engine
    return create_engine(url, pool_size=pool_size, pool_pre_ping=True)


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
    if conn.get_execution_options().get("casemail_readonly"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextlib.contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One writing transaction: commit on success, roll back on any exception."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


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


T = TypeVar("T")
# How async code runs blocking store work: the daemon passes a function that runs the callable in its
# database thread and awaits the result. Tests pass asyncio.to_thread.
RunInThread = Callable[[Callable[[], T]], Awaitable[T]]
