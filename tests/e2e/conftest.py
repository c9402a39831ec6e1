# SPDX-License-Identifier: GPL-3.0-or-later
"""End-to-end fixtures: the real daemon on loopback ports, and an SMTP sink standing in for the smarthost."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer

from casemail.daemon import serve
from casemail.settings import Settings, settings_from_dict
from tests.e2e.transport_helpers import spooled


@dataclass
class Sink:
    """An aiosmtpd server that keeps every mail it receives."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        self.arrived.set()
        return "250 OK"

    def parsed(self) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in self.messages]  # type: ignore[misc]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        async def _wait() -> None:
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.parsed()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTPServer(s, hostname="sink.test"), "127.0.0.1", 0)
    s.port = server.sockets[0].getsockname()[1]
    yield s
    server.close()
    await server.wait_closed()


@dataclass
class RunningDaemon:
    settings: Settings
    smtp_port: int
    stop: asyncio.Event
    task: asyncio.Task[None]
    intake_pids: list[int] = field(default_factory=list)

    async def settle(self, timeout: float = 15.0, *, until_sent: bool = False) -> None:
        """Wait until every accepted mail is processed and every due mail has been tried once
        (until_sent: until every queued mail has been sent, retries included)."""
        from sqlalchemy import create_engine, func, select

        from store.models import Inbound, Outbox

        engine = create_engine(self.settings.database_url)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                # Mail that got its 250 may still be in the accept spool, on its way to the inbound table.
                # The spool is looked at first: the mover commits a mail's inbound row before it leaves
                # the spool, so what is not in the spool now is in the inbound table below.
                busy = spooled(self.settings.path(self.settings.storage.spool))
                with engine.connect() as c:
                    busy += c.scalar(select(func.count()).select_from(Inbound).where(Inbound.state == "accepted"))
                    pending = Outbox.state.in_(("sending", "queued"))
                    busy += c.scalar(select(func.count()).select_from(Outbox).where(
                        pending if until_sent else pending & (Outbox.attempts == 0)))
                if not busy:
                    return
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("the daemon did not settle")
                await asyncio.sleep(0.05)
        finally:
            engine.dispose()

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


def daemon_settings(tmp_path: Path, database_url: str, **sections: dict[str, Any]) -> Settings:
    data: dict[str, Any] = {
        "database": {"url": database_url},
        "support": {"addresses": ["support@example.com"], "name": "Example Support",
                    "secret_key": "test-key-0123456789abcdef"},
        "smtp": {"port": 0},
        "outbound": {"transport": "maildir", "poll_seconds": 0.2, "retry_base_seconds": 0.2,
                     "retry_max_seconds": 1.0},
        # Processing in the daemon's own thread, so a test's clock reaches it; the intake processes
        # have tests of their own (test_intake_processes.py).
        "intake": {"processes": 0},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return settings_from_dict(data, base_dir=tmp_path)


@pytest.fixture
async def start_daemon(tmp_path: Path, database_url: str) -> AsyncIterator[Callable[..., Any]]:
    """A factory: `await start_daemon(outbound={...}, staff={...})` starts the real daemon on port 0."""
    running: list[RunningDaemon] = []

    async def _start(clock: Callable[[], Any] | None = None, **sections: dict[str, Any]) -> RunningDaemon:
        settings = daemon_settings(tmp_path, database_url, **sections)
        stop = asyncio.Event()
        ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # A test may pass its own clock to drive time-based work (schedules) without sleeping.
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        task = asyncio.create_task(serve(settings, stop=stop, ready=lambda info: ready.set_result(info), **extra))
        done, _ = await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises the start-up error
        info = ready.result()
        d = RunningDaemon(settings, info["smtp"][1], stop, task, list(info.get("intake_pids", [])))
        running.append(d)
        return d

    yield _start
    for d in running:
        if not d.task.done():
            with contextlib.suppress(Exception):
                await d.shutdown()


def smarthost(sink: Sink) -> dict[str, Any]:
    return {"transport": "smtp", "host": sink.host, "port": sink.port, "timeout": 5.0}
