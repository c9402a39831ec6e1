# SPDX-License-Identifier: GPL-3.0-or-later
"""Where each polled IMAP folder was left: its UIDVALIDITY and the highest UID taken from it.

The IMAP poller asks the server only for UIDs above last_uid, so a restart resumes where it stopped.
A UID means something only together with the folder's UIDVALIDITY (RFC 3501 2.3.1.1): when the
server reports a different one, every UID we remember is void and the folder is read again from the
start. Messages taken twice that way are recognised by the intake dedupe (same bytes, or the same
Message-ID and sender), so they become 'duplicate' inbound rows, never a second case entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, Session, mapped_column

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
