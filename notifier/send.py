# SPDX-License-Identifier: GPL-3.0-or-later
"""Handing rendered mail to the world: a smarthost over SMTP, or a local maildir folder.

Failures are split the way an MTA splits them: a 4xx reply, a refused or dropped connection or a
timeout is temporary (retry later); a 5xx reply is permanent (record the reason, do not retry).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import aiosmtplib


class SendError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class MailSender(Protocol):
    async def send(self, envelope_from: str, recipients: Sequence[str], data: bytes) -> list[str]:
        """Send; return the recipients refused while others were accepted, each with the reply."""
        ...

    async def close(self) -> None: ...


class MaildirSender:
    """Writes each mail into a maildir's new/ folder: the embedded default, needing no mail server."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        # A counter whose next() is atomic: send may run in several threads at once.
        self._count = itertools.count(1)

    async def send(self, envelope_from: str, recipients: Sequence[str], data: bytes) -> list[str]:
        await asyncio.to_thread(self._write, data)
        return []

    def _write(self, data: bytes) -> None:
        # The maildir delivery protocol: write under tmp/, fsync, then rename into new/.
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self._count)}.{socket.gethostname()}"
        tmp = self.root / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.root / "new" / name)

    async def close(self) -> None:
        return None


class SmtpSender:
    """Sends through a smarthost, keeping connections open between mails.

    `send` may be called by several tasks at once: each call takes an idle connection or opens one,
    and gives it back when the smarthost has answered, so there are as many connections as concurrent
    callers (the outbox worker runs outbound.connections of them) and each is reused mail after mail.
    A connection that saw an error is closed rather than reused.
    """

    def __init__(self, *, host: str, port: int, timeout: float, starttls: bool = False, tls: bool = False,
                 username: str = "", password: str = "") -> None:
        self._args = dict(hostname=host, port=port, timeout=timeout, use_tls=tls,
                          start_tls=True if starttls else False)
        self._login = (username, password) if username else None
        self._idle: list[aiosmtplib.SMTP] = []
        self._open: set[aiosmtplib.SMTP] = set()

    async def _connect(self) -> aiosmtplib.SMTP:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
            self._open.discard(client)
        client = aiosmtplib.SMTP(**self._args)  # type: ignore[arg-type]
        self._open.add(client)
        try:
            await client.connect()
            if self._login:
                await client.login(*self._login)
        except BaseException:
            self._drop(client)
            raise
        return client

    async def send(self, envelope_from: str, recipients: Sequence[str], data: bytes) -> list[str]:
        client: aiosmtplib.SMTP | None = None
        try:
            client = await self._connect()
            errors, _ = await client.sendmail(envelope_from, list(recipients), data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # The transaction ended cleanly (aiosmtplib reset it), so the connection stays usable.
            if client is not None:
                self._idle.append(client)
            codes = [r.code for r in exc.recipients]
            raise SendError(f"all recipients refused: {exc}", permanent=all(c >= 500 for c in codes)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            self._drop(client)
            raise SendError(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from exc
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            self._drop(client)
            raise SendError(f"smarthost unreachable: {exc}", permanent=False) from exc
        except BaseException:
            # Cancelled mid-transaction: the connection is in an unknown state.
            self._drop(client)
            raise
        self._idle.append(client)
        return [f"{r}: {resp.code} {resp.message}" for r, resp in errors.items()]

    def _drop(self, client: aiosmtplib.SMTP | None) -> None:
        if client is None:
            return
        self._open.discard(client)
        try:
            client.close()
        except Exception:  # noqa: BLE001 - the connection is already broken; nothing more to do.
            pass

    async def close(self) -> None:
        clients, self._open, self._idle = list(self._open), set(), []
        for client in clients:
            if client.is_connected:
                try:
                    await client.quit()
                except Exception:  # noqa: BLE001 - closing a connection that went bad is not an error.
                    client.close()
