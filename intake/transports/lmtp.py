# SPDX-License-Identifier: GPL-3.0-or-later
"""The LMTP listener: how an MTA in front (Postfix, Exim) hands mail to casemail.

It shares the SMTP listener's handler: the same recipient check at RCPT, the same accept() before any
positive reply, the same 451 on a failure to store. LMTP differs in one thing (RFC 2033 4.2): after
DATA the server answers once for every recipient it accepted at RCPT, in order. The message is stored
once for all of them, so each gets the same answer; they are joined with CRLF, which aiosmtpd sends
as separate reply lines (its issue #517; Mailman 3's LMTP runner does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path
from typing import Any

from aiosmtpd.lmtp import LMTP

from intake.transports.smtp import IntakeHandler


class LmtpHandler(IntakeHandler):
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        return "\r\n".join([reply] * max(1, len(envelope.rcpt_tos)))


async def start_lmtp_server(handler: LmtpHandler, *, host: str, port: int, socket_path: Path | None,
                            socket_mode: int, hostname: str, data_size_limit: int) -> asyncio.Server:
    """Bind on a unix socket when socket_path is given, else on host:port, in the running loop."""
    loop = asyncio.get_running_loop()

    def factory() -> LMTP:
        return LMTP(handler, hostname=hostname, ident="casemail", data_size_limit=data_size_limit,
                    enable_SMTPUTF8=True, decode_data=False, timeout=300)

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
