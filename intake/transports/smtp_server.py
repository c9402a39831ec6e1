# SPDX-License-Identifier: GPL-3.0-or-later
"""aiosmtpd's SMTP protocol, hardened for a listener that faces the internet.

GuardedSMTP adds what stock aiosmtpd lacks or gets wrong for us: a cap on connections (refused with
421 at the greeting), on recipients per message (452 4.5.3), on commands and on erroneous commands per
session (421 and close), on messages being received or stored at once (451 4.3.2), and a true idle
timeout that says 421 before it hangs up. DATA is read in large chunks (smtp_data.py), not a line at
a time, with exactly stock aiosmtpd's result. No exception, whether in our hooks or in aiosmtpd's own
address parsing, can reach the client as a permanent 500 carrying Python internals. AUTH passwords
are checked in a worker thread, because a deliberately slow hash must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import hmac
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, syntax

from intake.transports.smtp_address import plain_angle_address
from intake.transports.smtp_data import read_data

log = logging.getLogger(__name__)

TEMPFAIL = "451 4.3.0 Temporary failure, please try again later"
BUSY = "451 4.3.2 System busy, please try again later"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_MANY_COMMANDS = "421 4.7.0 Too many commands, closing connection"
TOO_MANY_ERRORS = "421 4.7.0 Too many errors, closing connection"
IDLE_TIMEOUT = "421 4.4.2 Idle timeout, closing connection"
UNKNOWN_COMMAND = "500 5.5.2 Command not recognized"


@dataclass(frozen=True)
class SmtpLimits:
    """Per-listener limits; the daemon fills them from the [smtp] settings."""

    max_message_size: int = 26_214_400
    max_recipients: int = 100          # RFC 5321 4.5.3.1.8: at least 100 must be accepted.
    max_connections: int = 100
    max_concurrent_data: int = 100
    max_data_memory: int = 104_857_600
    idle_timeout: float = 300.0        # RFC 5321 4.5.3.2.7 suggests five minutes.
    max_commands: int = 1000
    max_bad_commands: int = 20


@dataclass(frozen=True)
class SmtpSecurity:
    """STARTTLS and AUTH; files are read when the listener starts."""

    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_starttls: bool = False
    auth_users: Path | None = None
    auth_required: bool = False


class ListenerSetupError(ValueError):
    """A listener option that cannot be used; key names the setting (e.g. "tls_cert")."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def load_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ListenerSetupError("tls_cert", f"cannot load certificate {cert} with key {key}: {exc}") from exc
    return context


def hash_password(password: str, *, n: int = 2**15, r: int = 8, p: int = 1) -> str:
    """A Werkzeug-compatible "scrypt:N:r:p$salt$hex" hash, the format of smtp.auth_users lines."""
    salt = secrets.token_hex(8)
    return f"scrypt:{n}:{r}:{p}${salt}${_scrypt(password.encode(), salt, n, r, p).hex()}"


def _scrypt(password: bytes, salt: str, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p + 2**20, dklen=64)


def user_line(line: str) -> tuple[str, str] | None:
    """(user, hash) of one line of the smtp.auth_users file; None for a blank or # comment line."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    user, _, hashed = line.strip().partition(":")
    return user, hashed


class PasswordFile:
    """The smtp.auth_users file: "user:scrypt:N:r:p$salt$hex" lines; blank and # lines are ignored."""

    _DUMMY = (2**15, 8, 1, "0" * 16, b"\0" * 64)

    def __init__(self, users: dict[str, tuple[int, int, int, str, bytes]]) -> None:
        self._users = users

    @classmethod
    def load(cls, path: Path) -> PasswordFile:
        try:
            lines = path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ListenerSetupError("auth_users", f"cannot read {path}: {exc}") from exc
        users: dict[str, tuple[int, int, int, str, bytes]] = {}
        for number, line in enumerate(lines, 1):
            entry = user_line(line)
            if entry is None:
                continue
            user, hashed = entry
            try:
                method, salt, digest = hashed.split("$")
                name, n, r, p = method.split(":")
                if name != "scrypt" or not user or not salt:
                    raise ValueError(method)
                users[user] = (int(n), int(r), int(p), salt, bytes.fromhex(digest))
            except ValueError:
                raise ListenerSetupError("auth_users", f"{path} line {number}: expected "
                                         "user:scrypt:N:r:p$salt$hex (see hash_password)") from None
        if not users:
            raise ListenerSetupError("auth_users", f"{path} names no users")
        return cls(users)

    def check(self, login: bytes, password: bytes) -> bool:
        """Slow on purpose (scrypt); call it from a thread. Unknown users cost the same time."""
        try:
            n, r, p, salt, digest = self._users[login.decode("utf-8")]
        except (UnicodeDecodeError, KeyError):
            n, r, p, salt, digest = self._DUMMY
            _scrypt(password, salt, n, r, p)
            return False
        return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


def data_reservation(mail_options: list[str], max_message_size: int) -> int:
    """The memory a message may take, reserved for it before its DATA is accepted.

    Senders that use RFC 1870 declare the size at MAIL FROM (Postfix, Exim and sendmail all do): the
    reservation is then three times that plus 1 MiB, room for a message that grew on the way (8-bit
    text converted to quoted-printable is at most three times as long), and a message larger than
    that is refused as too large, so a sender cannot reserve little and send much. A sender that
    declares nothing may send up to the size limit, so that is what it reserves.
    """
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return min(max_message_size, 3 * int(value) + (1 << 20))
    return max_message_size


@dataclass
class SessionGauge:
    """Counters shared by all sessions of one listener."""

    connections: int = 0
    data_in_flight: int = 0
    reserved_bytes: int = 0   # what the messages being received or stored may take (see data_reservation)


class _CountedCommands(dict[str, Any]):
    """aiosmtpd's command table. The command loop looks every command up with get(), so handing it
    a wrapper here is the one place that sees each dispatched command, known or not. functools.wraps
    keeps the __smtp_syntax__ attributes that HELP reads from the table."""

    def __init__(self, methods: dict[str, Any], run: Callable[[str, Any, str | None], Awaitable[None]]):
        super().__init__(methods)
        self._run = run

    def get(self, command: str, default: Any = None) -> Any:  # type: ignore[override]
        method = super().get(command)

        async def dispatch(arg: str | None) -> None:
            await self._run(command, method, arg)

        return functools.wraps(method)(dispatch) if method is not None else dispatch


class GuardedSMTP(SMTP):
    """See the module docstring. Counters live on the protocol object, which lasts for the whole TCP
    connection, so a STARTTLS (which starts a new aiosmtpd Session) does not reset them."""

    # Caps the octets read_data takes per read (None: whatever has arrived); tests set it to move chunk boundaries.
    _data_max_read: int | None = None

    def __init__(self, handler: Any, *, hostname: str, limits: SmtpLimits, gauge: SessionGauge,
                 tls_context: ssl.SSLContext | None = None, require_starttls: bool = False,
                 users: PasswordFile | None = None, auth_required: bool = False) -> None:
        super().__init__(
            handler, hostname=hostname, ident="casemail", data_size_limit=limits.max_message_size,
            enable_SMTPUTF8=True, decode_data=False, timeout=limits.idle_timeout, tls_context=tls_context,
            require_starttls=require_starttls, auth_required=auth_required, auth_require_tls=True,
            # Without a user file there is nothing to log in to, so offer no mechanism at all.
            auth_exclude_mechanism=None if users else ["PLAIN", "LOGIN"],
        )
        self._limits = limits
        self._gauge = gauge
        self._users = users
        self._counted = False        # this connection holds a slot in gauge.connections
        self._refused = False        # over max_connections: answer 421 instead of the greeting
        self._hung_up = False
        self._busy = False           # a handler hook is running; the client is waiting on us
        self._commands = 0
        self._bad = 0
        self._pending_login: LoginPassword | None = None
        # aiosmtpd keeps this table on the class and grows it on every EHLO, so one session could
        # loosen the MAIL line limit for all others; each session gets its own.
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        self._smtp_methods = _CountedCommands(self._smtp_methods, self._run_command)
        if self._ehlo_hook_ver is None and users is None:
            self._handle_hooks["EHLO"] = self._ehlo_without_auth
            self._ehlo_hook_ver = "new"

    # Connections -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # After STARTTLS aiosmtpd calls this again for the TLS layer; only the TCP connection counts.
        if self._original_transport is None:
            if self._gauge.connections >= self._limits.max_connections:
                self._refused = True
            else:
                self._gauge.connections += 1
                self._counted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self._gauge.connections -= 1
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._refused:
            log.warning("%r refused: %d connections already open", self.session and self.session.peer,
                        self._gauge.connections)
            self._hang_up(f"421 4.7.0 {self.hostname} Too many connections, try again later")
            return
        await super()._handle_client()

    def _hang_up(self, reply: str) -> None:
        """Say reply and close; the 421 tells the client this is a temporary refusal, not a crash."""
        if self._hung_up or self.transport is None:
            return
        self._hung_up = True
        self.transport.write(reply.encode("ascii") + b"\r\n")
        self.transport.close()
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()

    # Idle timeout ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # aiosmtpd restarts its timer only when a command arrives, so a large message on a slow link
        # would be cut off mid-DATA; restarting on every received chunk makes it an idle timeout.
        if not self._busy and not self._hung_up and self.transport is not None:
            self._reset_timeout()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        log.info("%r idle timeout", self.session and self.session.peer)
        self._hang_up(IDLE_TIMEOUT)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "RCPT" and self.envelope is not None \
                and len(self.envelope.rcpt_tos) >= self._limits.max_recipients:
            return TOO_MANY_RECIPIENTS
        # The hook may take a while (DATA stores the mail); that is our time, not the client's idling.
        self._busy = True
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        try:
            return await super()._call_handler_hook(command, *args)
        finally:
            self._busy = False
            if self.transport is not None and not self._hung_up:
                self._reset_timeout()

    # Command and error counting ----------------------------------------------------------------

    async def _run_command(self, command: str, method: Any, arg: str | None) -> None:
        if self._hung_up:
            return
        self._commands += 1
        if self._commands > self._limits.max_commands:
            log.warning("%r hung up after %d commands", self.session and self.session.peer, self._commands)
            self._hang_up(TOO_MANY_COMMANDS)
            return
        if method is None:
            # aiosmtpd would echo the command back and hang up with a permanent 502 after five;
            # unknown commands are counted as errors like any other instead.
            await self.push(UNKNOWN_COMMAND)
            return
        await method(arg)

    async def push(self, status: str | bytes) -> None:
        if self._hung_up:
            return
        await super().push(status)
        # Every final 5xx line counts as an error: unknown or malformed commands, refused recipients
        # (address harvesting), failed AUTH (password guessing), commands before STARTTLS.
        head = status[:4] if isinstance(status, str) else status[:4].decode("ascii", "replace")
        if head[:1] == "5" and head[3:4] != "-":
            self._bad += 1
            if self._bad > self._limits.max_bad_commands:
                log.warning("%r hung up after %d errors", self.session and self.session.peer, self._bad)
                self._hang_up(TOO_MANY_ERRORS)

    # Overload and errors ---------------------------------------------------------------------------

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        assert self.envelope is not None
        reserve = data_reservation(self.envelope.mail_options, self._limits.max_message_size)
        g = self._gauge
        if self.envelope.rcpt_tos and not arg and (
                g.data_in_flight >= self._limits.max_concurrent_data
                or (g.reserved_bytes and g.reserved_bytes + reserve > self._limits.max_data_memory)):
            # Refused before 354, so no bandwidth is spent on a message we could not take now.
            await self.push(BUSY)
            return
        g.data_in_flight += 1
        g.reserved_bytes += reserve
        try:
            await self._receive_data(arg, size_limit=reserve)
        finally:
            g.data_in_flight -= 1
            g.reserved_bytes -= reserve

    async def _receive_data(self, arg: str, *, size_limit: int) -> None:
        """aiosmtpd 1.4's smtp_DATA, replies included, but with the data read in whole chunks by
        smtp_data.read_data instead of one readuntil per line (3.5-6x the throughput for mail with
        attachments, docs/performance.md). One deliberate difference: no fallback to the deprecated
        process_message() handler API; our handlers implement handle_DATA."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            original, error = await read_data(self._reader, line_limit=self.line_length_limit,
                                              size_limit=size_limit, max_read=self._data_max_read)
        except (asyncio.CancelledError, asyncio.IncompleteReadError):
            # EOF cancels this task (aiosmtpd's eof_received), so an incomplete read is a lost connection too.
            log.info("%r connection lost during DATA", self.session and self.session.peer)
            self._writer.close()
            raise asyncio.CancelledError from None
        if original is None:
            # RFC 5321 4.2.5: the refusal comes only after the whole data has been read.
            await self.push(self._data_reply(error or TEMPFAIL))
            self._set_post_data_state()
            return
        content: str | bytes = original
        if self._decode_data:
            if self.enable_SMTPUTF8:
                content = original.decode("utf-8", errors="surrogateescape")
            else:
                try:
                    content = original.decode("ascii", errors="strict")
                except UnicodeDecodeError:
                    await self.push(self._data_reply("500 Error: strict ASCII mode"))
                    return
        self.envelope.content = content
        self.envelope.original_content = original
        status = await self._call_handler_hook("DATA") if "DATA" in self._handle_hooks else MISSING
        reply = self._data_reply("250 OK" if status is MISSING else status)  # before the envelope is reset
        self._set_post_data_state()
        await self.push(reply)

    def _data_reply(self, status: str) -> str:
        """The answer to a message's data: one reply in SMTP (LMTP answers once per recipient)."""
        return status

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = plain_angle_address(arg)
        if plain is not None:
            local_part = plain[0].rpartition("@")[0]
            if self.local_part_limit and len(local_part) > self.local_part_limit:
                return None, None
            return plain
        # The stdlib address parser raises IndexError for "<" and other errors for some odd input
        # where aiosmtpd only expects HeaderParseError; treat them all as a malformed address (553).
        try:
            return super()._getaddr(arg)
        except Exception:  # noqa: BLE001 - any parser failure means the address is malformed.
            log.info("%r unparsable address %r", self.session and self.session.peer, arg[:100])
            return None, None

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's fallback is "500 Error: (Type) text": permanent, and it leaks internals.
        hook = getattr(self.event_handler, "handle_exception", None)
        if hook is None:
            log.error("%r SMTP session error", self.session and self.session.peer, exc_info=error)
            return TEMPFAIL
        try:
            status = await hook(error)
        except Exception:  # noqa: BLE001 - the fallback must not fail in turn.
            log.exception("handle_exception failed while handling %r", error)
            return TEMPFAIL
        return status if isinstance(status, str) and status else TEMPFAIL

    # AUTH --------------------------------------------------------------------------------------

    async def _ehlo_without_auth(self, server: Any, session: Any, envelope: Any, hostname: str,
                                 responses: list[str]) -> list[str]:
        # With no mechanisms aiosmtpd would still advertise a bare "AUTH" after STARTTLS.
        session.host_name = hostname
        return [line for line in responses if line.strip() != "250-AUTH"]

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        # aiosmtpd calls this synchronously; only note the credentials here, _verified checks them.
        self._pending_login = auth_data if isinstance(auth_data, LoginPassword) else None
        return AuthResult(success=False, handled=False)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verified(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verified(await super().auth_LOGIN(_, args))

    async def _verified(self, result: AuthResult) -> AuthResult:
        pending, self._pending_login = self._pending_login, None
        if pending is None or self._users is None:
            return result  # aiosmtpd already answered (501 for bad base64, a "*" abort, ...).
        if await asyncio.to_thread(self._users.check, pending.login, pending.password):
            log.info("%r authenticated as %r", self.session and self.session.peer, pending.login)
            return AuthResult(success=True, auth_data=pending)
        log.warning("%r failed AUTH for %r", self.session and self.session.peer, pending.login)
        # handled=False makes aiosmtpd answer 535; the default handled=True would send nothing.
        return AuthResult(success=False, handled=False)
