# SPDX-License-Identifier: GPL-3.0-or-later
"""Handing rendered mail to the world: a smarthost over SMTP, or a local maildir folder.

Failures are split the way an MTA splits them: a 4xx reply, a refused or dropped connection or a
timeout is temporary (retry later); a 5xx reply is permanent (record the reason, do not retry).
"""

from __future__ import annotations

import asyncio
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
        self._count = 0

    async def send(self, envelope_from: str, recipients: Sequence[str], data: bytes) -> list[str]:
        await asyncio.to_thread(self._write, data)
        return []

    def _write(self, data: bytes) -> None:
        # The maildir delivery protocol: write under tmp/, fsync, then rename into new/.
        self._count += 1
        name = f"{time.time_ns()}.P{os.getpid()}Q{self._count}.{socket.gethostname()}"
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
    """Sends through a smarthost, keeping one connection open between mails."""

    def __init__(self, *, host: str, port: int, timeout: float, starttls: bool = False, tls: bool = False,
                 username: str = "", password: str = "") -> None:
        self._args = dict(hostname=host, port=port, timeout=timeout, use_tls=tls,
                          start_tls=True if starttls else False)
        self._login = (username, password) if username else None
        self._client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        client = aiosmtplib.SMTP(**self._args)  # type: ignore[arg-type]
        await client.connect()
        if self._login:
            await client.login(*self._login)
        self._client = client
        return client

    async def send(self, envelope_from: str, recipients: Sequence[str], data: bytes) -> list[str]:
        try:
            client = await self._connect()
            errors, _ = await client.sendmail(envelope_from, list(recipients), data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise SendError(f"all recipients refused: {exc}", permanent=all(c >= 500 for c in codes)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._drop()
            raise SendError(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from exc
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self._drop()
            raise SendError(f"smarthost unreachable: {exc}", permanent=False) from exc
        return [f"{r}: {resp.code} {resp.message}" for r, resp in errors.items()]

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - the connection is already broken; nothing more to do.
                pass

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except Exception:  # noqa: BLE001 - closing a connection that went bad is not an error.
                client.close()
