# SPDX-License-Identifier: GPL-3.0-or-later
"""The lease one IMAP poller holds on its (account, folder): an advisory lock on PostgreSQL, a formality on SQLite."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, text

from store.db import make_engine
from store.mailboxes import (
    IMAP_MAILBOX_LOCK_CLASS,
    lease_key,
    mailbox_leases,
    try_postgres_lease,
)

# The PostgreSQL server is shared with other test runs, so every account here is a new one.
only_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
only_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def new_account() -> str:
    return f"lease-{uuid.uuid4().hex[:12]}@imap.example:993"


def holder_pid(engine: Engine, account: str, folder: str) -> int | None:
    """The server process (session) that holds the lease on (account, folder), as pg_locks shows it."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = CAST(:c AS oid) "
            "AND objid = CAST(hashtext(:key) AS oid) AND objsubid = 2"),
            {"c": IMAP_MAILBOX_LOCK_CLASS, "key": lease_key(account, folder)}).scalar()


@only_postgresql
def test_a_second_lease_on_the_same_folder_is_refused_until_the_first_is_released(engine: Engine) -> None:
    try_lease = mailbox_leases(engine)
    account = new_account()
    first = try_lease(account, "INBOX")
    assert first is not None and first.held()
    # Another daemon's engine, as a second daemon on the same database would have.
    other = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        assert try_postgres_lease(other, account, "INBOX") is None
        assert try_lease(account, "INBOX") is None  # the same engine gets no second lease either
        first.release()
        assert not first.held()
        assert holder_pid(engine, account, "INBOX") is None
        second = try_postgres_lease(other, account, "INBOX")
        assert second is not None and second.held()
        second.release()
    finally:
        other.dispose()


@only_postgresql
def test_leases_on_other_folders_or_accounts_do_not_conflict(engine: Engine) -> None:
    try_lease = mailbox_leases(engine)
    account = new_account()
    leases = [try_lease(account, "INBOX"), try_lease(account, "Support"), try_lease(new_account(), "INBOX")]
    try:
        assert all(lease is not None and lease.held() for lease in leases)
        assert len({holder_pid(engine, account, "INBOX"), holder_pid(engine, account, "Support")}) == 2
    finally:
        for lease in leases:
            if lease is not None:
                lease.release()


@only_postgresql
def test_a_lease_is_not_in_the_key_space_of_the_single_key_locks(engine: Engine) -> None:
    """store/inbound.py locks bigint keys; even the bigint made of the lease's two keys is another lock."""
    account = new_account()
    lease = try_postgres_lease(engine, account, "INBOX")
    assert lease is not None
    try:
        with engine.connect() as conn:
            second_key = conn.execute(text("SELECT hashtext(:key)"), {"key": lease_key(account, "INBOX")}).scalar()
            combined = (IMAP_MAILBOX_LOCK_CLASS << 32) | (second_key & 0xFFFFFFFF)
            assert conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": combined}).scalar() is True
            conn.rollback()
    finally:
        lease.release()


@only_postgresql
def test_a_lease_whose_session_is_terminated_reports_itself_lost(engine: Engine) -> None:
    account = new_account()
    lease = try_postgres_lease(engine, account, "INBOX")
    assert lease is not None and lease.held()
    pid = holder_pid(engine, account, "INBOX")
    assert pid is not None
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar() is True
        conn.commit()

    assert not lease.held()
    # The server dropped the lock with the session, so another poller may have it now; and a lost
    # lease stays lost, even if its connection object would reconnect.
    successor = try_postgres_lease(engine, account, "INBOX")
    assert successor is not None and successor.held()
    assert not lease.held()
    lease.release()  # gives back nothing, raises nothing, and leaves the successor's lock alone
    assert successor.held()
    successor.release()


@only_postgresql
def test_a_lease_session_is_out_of_the_pool_idle_and_probed_for_a_dead_peer(engine: Engine) -> None:
    account = new_account()
    lease = try_postgres_lease(engine, account, "INBOX")
    assert lease is not None
    try:
        assert lease.held()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        with engine.connect() as conn:
            state = conn.execute(text("SELECT state FROM pg_stat_activity WHERE pid = :pid"),
                                 {"pid": holder_pid(engine, account, "INBOX")}).scalar()
        # Not "idle in transaction": a session parked for days must not hold a transaction open.
        assert state == "idle"
        # Session settings can only be read from the session itself, hence the private connection.
        keepalives = [lease._conn.execute(text(f"SHOW tcp_keepalives_{name}")).scalar()  # type: ignore[attr-defined]
                      for name in ("idle", "interval", "count")]
        assert keepalives == ["60", "10", "6"]
    finally:
        lease.release()


@only_sqlite
def test_on_sqlite_a_lease_is_always_granted(engine: Engine) -> None:
    try_lease = mailbox_leases(engine)
    account = new_account()
    first, second = try_lease(account, "INBOX"), try_lease(account, "INBOX")
    assert first is not None and second is not None
    assert first.held() and second.held()
    first.release()
    assert second.held()
    # No connection is held for it.
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
