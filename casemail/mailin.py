# SPDX-License-Identifier: GPL-3.0-or-later
"""Building the LMTP listener and the IMAP pollers from the settings (used by casemail.daemon)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from casemail.settings import ConfigError, Settings
from intake.accept import Acceptor
from intake.transports.imap import ImapPoller, ImapSource
from intake.transports.imapclient import Endpoint
from intake.transports.lmtp import start_lmtp_server
from intake.transports.smtp import IntakeHandler, Mailboxes, SmtpLimits
from store.db import RunInThread

log = logging.getLogger(__name__)


async def start_lmtp(settings: Settings, acceptor: Acceptor, limits: SmtpLimits) -> asyncio.Server | None:
    """The LMTP listener, or None when it is disabled; a failure to bind names the key to change.

    Its sessions get the SMTP listener's limits (limits), with its own largest message size."""
    c = settings.lmtp
    if not c.enabled:
        return None
    handler = IntakeHandler(acceptor, Mailboxes(settings.support.addresses), transport="lmtp")
    socket_path = settings.path(c.socket) if c.socket else None
    try:
        server = await start_lmtp_server(handler, host=c.host, port=c.port, socket_path=socket_path,
                                         socket_mode=c.socket_mode, hostname=c.hostname,
                                         limits=dataclasses.replace(limits, max_message_size=c.max_message_size))
    except OSError as exc:
        where = f"lmtp.socket: cannot listen on {socket_path}" if socket_path else \
            f"lmtp.port: cannot listen on {c.host}:{c.port}"
        raise ConfigError(f"{where}: {exc.strerror or exc}") from exc
    log.info("lmtp listening on %s (trusted=%s)", lmtp_address(server), c.trusted)
    return server


def lmtp_address(server: asyncio.Server | None) -> object:
    if server is None:
        return None
    name = server.sockets[0].getsockname()
    return name[:2] if isinstance(name, tuple) else name


def imap_sources(settings: Settings) -> list[ImapSource]:
    sources = []
    for m in settings.imap.mailboxes:
        sources.append(ImapSource(
            name=m.name,
            endpoint=Endpoint(host=m.host, port=m.port, tls=m.tls, timeout=m.timeout),
            user=m.user,
            password=m.password,
            oauth2_token_file=settings.path(m.oauth2_token_file) if m.oauth2_token_file else None,
            folder=m.folder,
            after=m.after,
            processed_folder=m.processed_folder,
            refused_folder=m.refused_folder,
            recipient=m.recipient or settings.support.addresses[0],
            poll_seconds=m.poll_seconds,
            max_message_size=m.max_message_size,
            max_backoff_seconds=m.max_backoff_seconds,
        ))
    return sources


def make_imap_pollers(settings: Settings, acceptor: Acceptor, engine: Engine, *, run_db: RunInThread,
                      clock: Callable[[], datetime]) -> list[ImapPoller]:
    return [ImapPoller(source, acceptor, engine, run_db=run_db, clock=clock) for source in imap_sources(settings)]
