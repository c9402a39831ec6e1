# SPDX-License-Identifier: GPL-3.0-or-later
"""The SMTP listener: aiosmtpd on the daemon's own event loop.

It accepts mail only for the support addresses (and their plus-extensions, which carry reply tokens),
so it can never be used as a relay. The 250 after DATA is sent only once accept() has stored the
message durably; a failure to store answers 451 so the sending MTA keeps the mail and retries.
The protocol side (limits, STARTTLS, AUTH, error replies) is GuardedSMTP in smtp_server.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from intake.accept import Acceptor, Envelope, TransientFailure
from intake.transports.smtp_server import (
    TEMPFAIL,
    GuardedSMTP,
    ListenerSetupError,
    PasswordFile,
    SessionGauge,
    SmtpLimits,
    SmtpSecurity,
    load_tls_context,
)

__all__ = ["IntakeHandler", "ListenerSetupError", "Mailboxes", "SmtpLimits", "SmtpSecurity", "TEMPFAIL", "local_base",
           "start_smtp_server"]

log = logging.getLogger(__name__)


def local_base(address: str) -> tuple[str, str]:
    """("support", "example.com") for "Support+00000001.abc@Example.COM"."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return local.split("+", 1)[0].lower(), domain.lower()


class Mailboxes:
    """The addresses this installation receives for."""

    def __init__(self, addresses: Iterable[str]) -> None:
        self._bases = {local_base(a) for a in addresses}

    def accepts(self, address: str) -> bool:
        return "@" in address and local_base(address) in self._bases


class IntakeHandler:
    """aiosmtpd handler hooks shared by the SMTP and LMTP listeners."""

    def __init__(self, acceptor: Acceptor, mailboxes: Mailboxes, *, transport: str = "smtp") -> None:
        self._acceptor = acceptor
        self._mailboxes = mailboxes
        self._transport = transport

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if not self._mailboxes.accepts(address):
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content
        mail_from = envelope.mail_from if envelope.mail_from not in (None, "<>") else ""
        try:
            inbound_id = await self._acceptor.accept(
                raw, Envelope(self._transport, mail_from, tuple(envelope.rcpt_tos))
            )
        except TransientFailure:
            return TEMPFAIL
        return f"250 2.0.0 Ok: queued as {inbound_id}"

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default turns any exception into a permanent 500 carrying the exception's text:
        # the sender would bounce a mail we only failed to take for a moment, and see our internals.
        log.error("SMTP session error: %r", error, exc_info=error)
        return TEMPFAIL


async def start_smtp_server(handler: IntakeHandler, *, host: str, port: int, hostname: str,
                            limits: SmtpLimits, security: SmtpSecurity | None = None) -> asyncio.Server:
    """Bind the listener on the running loop (not aiosmtpd's threaded Controller).

    The certificate and the user file are read here, so a bad one stops the start; ListenerSetupError
    names the setting at fault.
    """
    security = security or SmtpSecurity()
    tls_context = None
    if security.tls_cert is not None:
        tls_context = load_tls_context(security.tls_cert, security.tls_key or security.tls_cert)
    users = PasswordFile.load(security.auth_users) if security.auth_users is not None else None
    gauge = SessionGauge()  # shared by every session of this listener
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: GuardedSMTP(handler, hostname=hostname, limits=limits, gauge=gauge, tls_context=tls_context,
                            require_starttls=security.require_starttls, users=users,
                            auth_required=security.auth_required),
        host=host,
        port=port,
    )
