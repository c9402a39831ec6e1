# SPDX-License-Identifier: GPL-3.0-or-later
"""The IMAP poller: takes mail out of an existing mailbox, exactly once.

For each configured folder it keeps one connection, sweeps the UIDs above the last one taken, and
then waits in IDLE (or, without IDLE, for the poll interval) before sweeping again. IDLE is only a
hint: a sweep also runs on every wake-up and every poll_seconds, because servers may coalesce or
miss notifications.

The order of events for one message is what makes a crash harmless:
  1. UID FETCH BODY.PEEK[] (the server copy is left untouched, not even marked \\Seen);
  2. accept(): the raw bytes and the inbound row are committed;
  3. only then the server copy is moved to the processed folder (or flagged \\Seen);
  4. the folder position (UIDVALIDITY, last UID) is saved.
A crash before 2 leaves the message in the folder to be fetched again. A crash between 2 and 4 makes
the next sweep accept it a second time; the intake dedupe recognises the same bytes and records the
copy as a 'duplicate', so it reaches its case once. The position only saves that refetch in the
common case, and stops a message whose move the server refused from being taken on every sweep.

Where several daemons share a PostgreSQL store and name the same folder, only the one holding the
folder's lease (store.mailboxes) connects to it; the others stand by and try again every poll_seconds.
The lease is checked before every sweep, so a poller whose lease went with its database connection
starts no further sweep; only a sweep already running when it went can overlap the new holder's
first one, and the dedupe covers that.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from intake.accept import Acceptor, TransientFailure
from intake.transports.envelope import envelope_from_headers, refusal
from intake.transports.imapclient import AioImapSession, Credentials, Endpoint, ImapError, MailboxSession
from store import mailboxes
from store.db import RunInThread, read_only, unit_of_work
from store.mailboxes import MailboxLease, Position, TryLease, mailbox_leases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImapSource:
    """One folder to take mail from, as configured in [[imap.mailboxes]]."""

    name: str
    endpoint: Endpoint
    user: str
    password: str
    oauth2_token_file: Path | None
    folder: str
    after: str                     # "move" to processed_folder, or "flag" as \Seen
    processed_folder: str
    refused_folder: str
    recipient: str                 # the envelope recipient when the message names none
    poll_seconds: float
    max_message_size: int
    max_backoff_seconds: float

    @property
    def account(self) -> str:
        return f"{self.user}@{self.endpoint.host}:{self.endpoint.port}"

    def credentials(self) -> Credentials:
        # The token file is read at every connection so that an external refresher can replace an
        # expired token without restarting the daemon.
        if self.oauth2_token_file is not None:
            token = self.oauth2_token_file.read_text().strip()
            return Credentials(user=self.user, oauth2_token=token)
        return Credentials(user=self.user, password=self.password)


Connect = Callable[[ImapSource], Awaitable[MailboxSession]]


class LeaseLost(Exception):
    """The poller's lease on its folder is gone; it must stop serving the folder and take the lease again."""


async def connect_aioimaplib(source: ImapSource) -> MailboxSession:
    return await AioImapSession.connect(source.endpoint, source.credentials())


class ImapPoller:
    """Polls one folder until stopped; survives every connection failure."""

    def __init__(self, source: ImapSource, acceptor: Acceptor, engine: Engine, *, run_db: RunInThread,
                 clock: Callable[[], datetime], connect: Connect = connect_aioimaplib,
                 try_lease: TryLease | None = None, backoff_base: float = 1.0) -> None:
        self._source = source
        self._acceptor = acceptor
        self._engine = engine
        self._run_db = run_db
        self._clock = clock
        self._connect = connect
        self._try_lease = try_lease or mailbox_leases(engine)
        self._backoff_base = backoff_base
        self.taken = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            lease = await self._acquire(stop)
            if lease is None:
                return
            try:
                await self._poll(lease, stop)
            finally:
                # Shielded, so that a shutdown which cancels the poller still gives the lease back at once
                # rather than when the connection is collected.
                await asyncio.shield(self._run_db(lease.release))

    async def _acquire(self, stop: asyncio.Event) -> MailboxLease | None:
        """The lease on the folder once this poller has it, or None if stop comes first."""
        src = self._source
        standing_by = failed = False
        while not stop.is_set():
            try:
                lease = await self._run_db(lambda: self._try_lease(src.account, src.folder))
            except Exception as exc:  # noqa: BLE001 - a database outage is waited out like a busy lease.
                if not failed:
                    log.warning("imap %s: cannot take the lease on %s of %s: %s; trying again every %g s",
                                src.name, src.folder, src.account, exc, src.poll_seconds)
                failed = True
            else:
                failed = False
                if lease is not None:
                    if standing_by:
                        log.info("imap %s: the other daemon let go of %s of %s; taking over", src.name,
                                 src.folder, src.account)
                    return lease
                if not standing_by:
                    log.info("imap %s: another daemon is polling %s of %s; standing by", src.name, src.folder,
                             src.account)
                standing_by = True
            await _wait(stop, src.poll_seconds)
        return None

    async def _poll(self, lease: MailboxLease, stop: asyncio.Event) -> None:
        """Serve the folder until stop is set or the lease is lost; survives every connection failure."""
        failures = 0
        name = self._source.name
        while not stop.is_set():
            session: MailboxSession | None = None
            try:
                session = await self._connect(self._source)
                if failures:
                    log.info("imap %s: connected again after %d failed attempts", name, failures)
                failures = 0
                await self._serve(session, lease, stop)
            except LeaseLost:
                log.warning("imap %s: lost the lease on %s of %s (its database connection is gone); "
                            "closing the IMAP session and trying to take the lease again", name,
                            self._source.folder, self._source.account)
                return
            except (ImapError, TransientFailure, OSError, TimeoutError) as exc:
                # Logged once per outage; the reconnects that follow are quiet until one succeeds.
                if failures == 0:
                    log.warning("imap %s: %s; retrying with backoff", name, exc)
                failures += 1
            except Exception:  # noqa: BLE001 - the poller must outlive any bug in one message's handling.
                if failures == 0:
                    log.exception("imap %s: unexpected error; retrying with backoff", name)
                failures += 1
            finally:
                if session is not None:
                    await session.close()
            if failures and not stop.is_set():
                await _wait(stop, self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        delay = min(self._source.max_backoff_seconds, self._backoff_base * 2 ** min(failures - 1, 16))
        return delay * random.uniform(0.8, 1.2)

    async def _serve(self, session: MailboxSession, lease: MailboxLease, stop: asyncio.Event) -> None:
        src = self._source
        for folder in (src.processed_folder, src.refused_folder) if src.after == "move" else (src.refused_folder,):
            await session.ensure_folder(folder)
        uidvalidity = await session.select(src.folder)
        position = await self._run_db(lambda: self._load())
        if position is None or position.uidvalidity != uidvalidity:
            if position is not None:
                log.warning("imap %s: UIDVALIDITY of %s changed from %d to %d; reading the folder again "
                            "(messages taken before become duplicates)", src.name, src.folder,
                            position.uidvalidity, uidvalidity)
            position = Position(uidvalidity, 0)
            await self._save(position)
        log.info("imap %s: watching %s of %s from UID %d", src.name, src.folder, src.account,
                 position.last_uid + 1)
        while not stop.is_set():
            # Checked before every sweep: a poller that lost its lease must not take anything more, since
            # another daemon may be serving the folder already.
            if not await self._run_db(lease.held):
                raise LeaseLost
            position = await self._sweep(session, position, stop)
            if stop.is_set():
                return
            await session.wait_for_change(src.poll_seconds, stop)

    async def _sweep(self, session: MailboxSession, position: Position, stop: asyncio.Event) -> Position:
        # Search again until a search finds nothing: a message that arrives during a sweep is announced
        # in the reply to one of the sweep's own commands, and the IDLE that follows would not mention it.
        while not stop.is_set():
            uids = await session.uids_from(position.last_uid + 1)
            if not uids:
                break
            for uid in uids:
                if stop.is_set():
                    break
                raw = await session.fetch(uid)
                if raw is not None:
                    await self._take(session, uid, raw)
                position = Position(position.uidvalidity, uid)
                await self._save(position)
        return position

    async def _take(self, session: MailboxSession, uid: int, raw: bytes) -> None:
        src = self._source
        refused = refusal(raw, max_size=src.max_message_size)
        if refused is not None:
            log.warning("imap %s: UID %d refused (%s); moving it to %s", src.name, uid, refused.reason,
                        src.refused_folder)
            if not await session.move(uid, src.refused_folder):
                log.error("imap %s: could not move refused UID %d to %s", src.name, uid, src.refused_folder)
            return
        envelope = envelope_from_headers(raw, "imap", default_recipients=(src.recipient,))
        # A TransientFailure leaves the message untouched and the position unsaved: it is taken again
        # after the backoff.
        inbound_id = await self._acceptor.accept(raw, envelope)
        self.taken += 1
        if src.after == "move":
            done = await session.move(uid, src.processed_folder)
        else:
            done = await session.add_flags(uid, r"(\Seen)")
        if not done:
            log.error("imap %s: inbound=%d stored, but the server refused to %s UID %d; it stays in %s and "
                      "is not taken again", src.name, inbound_id, src.after, uid, src.folder)

    def _load(self) -> Position | None:
        with read_only(self._engine) as s:
            return mailboxes.get_position(s, self._source.account, self._source.folder)

    async def _save(self, position: Position) -> None:
        def save() -> None:
            with unit_of_work(self._engine) as s:
                mailboxes.save_position(s, self._source.account, self._source.folder, position,
                                        now=self._clock())

        await self._run_db(save)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except (TimeoutError, asyncio.TimeoutError):
        pass
