# SPDX-License-Identifier: GPL-3.0-or-later
"""unit_of_work(durable=False) waits for no disk, and only that transaction: the next one waits again.

The outbox's claim and record use it; everything that answers a sender or records received mail must
not. A pooled connection that kept the lazy setting would quietly make the next transaction on it
lazy too, so the tests run many transactions on a pool of one connection.
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from store.db import is_sqlite, make_engine, migrate, unit_of_work


def waits_for_the_disk(engine: Engine, s: Session) -> bool:
    if is_sqlite(engine):
        return s.execute(text("PRAGMA synchronous")).scalar() == 2       # FULL
    return s.execute(text("SHOW synchronous_commit")).scalar() == "on"


def test_only_the_lazy_transaction_is_lazy(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        migrate(engine)
        for _ in range(3):
            with unit_of_work(engine) as s:
                assert waits_for_the_disk(engine, s)
            with unit_of_work(engine, durable=False) as s:
                assert not waits_for_the_disk(engine, s)
        # A lazy transaction that fails leaves no lazy connection behind either.
        try:
            with unit_of_work(engine, durable=False) as s:
                s.execute(text("SELECT 1"))
                raise RuntimeError("the work failed")
        except RuntimeError:
            pass
        with unit_of_work(engine) as s:
            assert waits_for_the_disk(engine, s)
    finally:
        engine.dispose()


def test_what_a_lazy_transaction_wrote_is_committed(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        migrate(engine)
        with unit_of_work(engine, durable=False) as s:
            s.execute(text("INSERT INTO counter (name, value) VALUES ('lazy', 41)"))
        with unit_of_work(engine) as s:
            assert s.execute(text("SELECT value FROM counter WHERE name = 'lazy'")).scalar() == 41
    finally:
        engine.dispose()
