# SPDX-License-Identifier: GPL-3.0-or-later
"""Where each polled IMAP folder was left: its UIDVALIDITY and the highest UID taken from it.

The IMAP poller asks the server only for UIDs above last_uid, so a restart resumes where it stopped.
A UID means something only together with the folder's UIDVALIDITY (RFC 3501 2.3.1.1): when the
server reports a different one, every UID we remember is void and the folder is read again from the
start. Messages taken twice that way are recognised by the intake dedupe (same bytes, or the same
Message-ID and sender), so they become 'duplicate' inbound rows, never a second case entry.

It also holds the lease that lets one poller at a time serve an (account, folder) when several daemons
share a PostgreSQL store (DESIGN.md, "Scale"): see try_postgres_lease.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import BigInteger, Connection, Engine, String, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import is_sqlite
from store.models import Base, UTCDateTime


class MailboxState(Base):
    __tablename__ = "mailbox_state"

    # "user@host:port", so that pointing a mailbox entry at another server starts afresh.
    account: Mapped[str] = mapped_column(String(400), primary_key=True)
    folder: Mapped[str] = mapped_column(String(400), primary_key=True)
    # UIDVALIDITY and UIDs are unsigned 32-bit numbers: too big for a signed INTEGER on PostgreSQL.
    uidvalidity: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_uid: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


@dataclass(frozen=True)
class Position:
    uidvalidity: int
    last_uid: int


def get_position(s: Session, account: str, folder: str) -> Position | None:
    row = s.get(MailboxState, (account, folder))
    return None if row is None else Position(row.uidvalidity, row.last_uid)


def save_position(s: Session, account: str, folder: str, position: Position, *, now: datetime) -> None:
    """Record a position; last_uid never moves backwards within one UIDVALIDITY."""
    row = s.get(MailboxState, (account, folder))
    if row is None:
        s.add(MailboxState(account=account, folder=folder, uidvalidity=position.uidvalidity,
                           last_uid=position.last_uid, updated_at=now))
        return
    if row.uidvalidity == position.uidvalidity and row.last_uid >= position.last_uid:
        return
    row.uidvalidity = position.uidvalidity
    row.last_uid = position.last_uid
    row.updated_at = now


# The first key of every mailbox lease in PostgreSQL's two-key advisory lock space: "IMAP" in ASCII.
# The second key is hashtext(account || '\n' || folder). store/inbound.py locks single bigint keys,
# which PostgreSQL keeps in a space of their own (objsubid 1 in pg_locks, 2 here), so a mailbox lease
# and an inbound dedupe lock never wait on each other, whatever their hashes.
IMAP_MAILBOX_LOCK_CLASS = 0x494D4150

_TRY_LOCK = text("SELECT pg_try_advisory_lock(CAST(:lock_class AS integer), hashtext(:key))")
_UNLOCK = text("SELECT pg_advisory_unlock(CAST(:lock_class AS integer), hashtext(:key))")
# If the holder's machine dies without closing its connection, the server keeps the lock until it
# sees the connection is dead, and the other daemons stand by until then. By default the kernel's TCP
# keepalive tells it after more than two hours; these settings of the lock's session tell it within
# about two minutes (idle for 60 s, then 6 unanswered probes 10 s apart). They are ignored on a Unix socket.
_KEEPALIVES = text(
    "SELECT set_config('tcp_keepalives_idle', '60', false), set_config('tcp_keepalives_interval', '10', false), "
    "set_config('tcp_keepalives_count', '6', false)"
)
# Asked of pg_locks rather than answered by a bare SELECT 1: a Connection whose session died may
# quietly reconnect on its next use, and a new session does not hold the old one's lock.
_HELD = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
    "AND granted AND classid = CAST(:lock_class AS oid) AND objid = CAST(hashtext(:key) AS oid) "
    "AND objsubid = 2)"
)


class MailboxLease(Protocol):
    """The right to poll one (account, folder), held from a granted try until release() or its loss.

    Both methods block on the database: async callers run them in a thread (store.db.RunInThread).
    """

    def held(self) -> bool:
        """Whether the lease is still ours; once it has answered False it always does."""

    def release(self) -> None:
        """Give the lease back; never raises (a lease whose connection is gone is already given back)."""


# Try to take the lease on (account, folder): the lease, or None while another poller holds it.
TryLease = Callable[[str, str], MailboxLease | None]


def mailbox_leases(engine: Engine) -> TryLease:
    """How pollers sharing this engine's store take their leases.

    On PostgreSQL a lease is a session-level advisory lock (try_postgres_lease). On SQLite it is always
    granted: the daemon already refuses to share a SQLite database with another daemon (the lock next
    to the file, casemail.app.sqlite_lock_path), so no other poller can be serving the folder.
    """
    if is_sqlite(engine):
        return lambda account, folder: GrantedLease()

    def try_lease(account: str, folder: str) -> MailboxLease | None:
        return try_postgres_lease(engine, account, folder)

    return try_lease


class GrantedLease:
    """A lease nobody else can want: nothing is held, so nothing can be lost."""

    def held(self) -> bool:
        return True

    def release(self) -> None:
        pass


def lease_key(account: str, folder: str) -> str:
    # A newline occurs neither in an account ("user@host:port") nor in a folder name, so different
    # pairs always make different keys (their hashes may still collide, which only makes two
    # mailboxes take turns).
    return f"{account}\n{folder}"


def try_postgres_lease(engine: Engine, account: str, folder: str) -> PostgresLease | None:
    """Take the advisory lock for (account, folder) on a connection of its own, without waiting.

    The connection is taken out of the engine's pool (detached): it must never be lent to other work
    while it holds the lock, and closing it, or losing it, or dropping it unreleased, ends the session
    and with it the lock. It runs in autocommit, so holding it leaves no transaction open on the server.
    """
    key = lease_key(account, folder)
    conn = engine.connect()
    try:
        conn.detach()
        # Set on the driver's connection: the pool, which would undo execution_options on return,
        # never sees this connection again.
        engine.dialect.set_isolation_level(conn.connection.dbapi_connection, "AUTOCOMMIT")
        granted = conn.execute(_TRY_LOCK, {"lock_class": IMAP_MAILBOX_LOCK_CLASS, "key": key}).scalar()
        if granted:
            conn.execute(_KEEPALIVES)
    except BaseException:
        conn.close()
        raise
    if not granted:
        conn.close()
        return None
    return PostgresLease(conn, key)


class PostgresLease:
    """A held advisory lock and the one connection (session) that holds it."""

    def __init__(self, conn: Connection, key: str) -> None:
        self._conn = conn
        self._params = {"lock_class": IMAP_MAILBOX_LOCK_CLASS, "key": key}
        self._lost = False

    def held(self) -> bool:
        if self._lost:
            return False
        try:
            still = bool(self._conn.execute(_HELD, self._params).scalar())
        except SQLAlchemyError:
            # The session is gone (the server restarted, the connection was cut or terminated), and
            # the server released its lock when it went; another poller may hold it by now.
            still = False
        self._lost = not still
        return still

    def release(self) -> None:
        try:
            if not self._lost:
                self._conn.execute(_UNLOCK, self._params)
        except SQLAlchemyError:
            pass  # The session is gone, and its lock with it.
        finally:
            self._lost = True
            # Closing a detached connection ends the session, which would drop the lock even if the
            # unlock above had failed.
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
