# SPDX-License-Identifier: GPL-3.0-or-later
"""The LMTP listener: how an MTA in front (Postfix, Exim) hands mail to casemail.

It shares the SMTP listener's handler: the same recipient check at RCPT, the same accept() before any
positive reply, the same 451 on a failure to store. LMTP differs in one thing (RFC 2033 4.2): after
DATA the server answers once for every recipient it accepted at RCPT, in order. The message is stored
once for all of them, so each gets the same answer; they are joined with CRLF, which aiosmtpd sends
as separate reply lines (its issue #517; Mailman 3's LMTP runner does the same).

Its sessions are the SMTP listener's guarded sessions with LMTP's greeting: the same limits on
connections, commands, errors, idle time and the memory that messages in flight may take, and the
same chunked reading of DATA, so a misbehaving or flooding client in front gets no more than an SMTP
one would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path

from aiosmtpd.lmtp import LMTP

from intake.transports.smtp import IntakeHandler
from intake.transports.smtp_server import GuardedSMTP, SessionGauge, SmtpLimits


class GuardedLMTP(LMTP, GuardedSMTP):
    """aiosmtpd's LMTP commands (LHLO instead of HELO and EHLO) on a guarded session: LMTP comes first
    in the method order, and its LHLO's call to EHLO goes on to the guarded session's."""

    def _data_reply(self, status: str) -> str:
        # Every answer to the data, the refusals too (too large, a line too long, a failure to store),
        # is owed once per accepted recipient: a client waiting for the second one would time out
        # and try again later, however permanent the refusal.
        assert self.envelope is not None
        return "\r\n".join([status] * max(1, len(self.envelope.rcpt_tos)))


async def start_lmtp_server(handler: IntakeHandler, *, host: str, port: int, socket_path: Path | None,
                            socket_mode: int, hostname: str, limits: SmtpLimits) -> asyncio.Server:
    """Bind on a unix socket when socket_path is given, else on host:port, in the running loop."""
    loop = asyncio.get_running_loop()
    gauge = SessionGauge()  # shared by every session of this listener

    def factory() -> GuardedLMTP:
        return GuardedLMTP(handler, hostname=hostname, limits=limits, gauge=gauge)

    if socket_path is None:
        return await loop.create_server(factory, host=host, port=port)
    _remove_stale_socket(socket_path)
    server = await loop.create_unix_server(factory, path=str(socket_path))
    # The MTA's LMTP client runs as its own user (postfix), so the socket's group or mode must let it in.
    os.chmod(socket_path, socket_mode)
    return server


def _remove_stale_socket(path: Path) -> None:
    # A socket left by a killed daemon would make the bind fail. Only a socket is removed, never a
    # regular file that a wrong setting happens to name.
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
