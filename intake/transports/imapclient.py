# SPDX-License-Identifier: GPL-3.0-or-later
"""The few IMAP operations the poller needs, behind an interface of our own.

The poller talks to a MailboxSession, never to aioimaplib directly, so the client library can be
swapped (IMAPClient in a thread is the verified fallback) without touching the polling logic.

aioimaplib needs guarding in three places, all seen against a real Dovecot:
  * after the server says BYE or drops the connection, an IDLE command never completes and the
    client still believes it is SELECTED (aioimaplib issue #110);
  * AUTHENTICATE XOAUTH2 with a bad token hangs: the server sends a "+ <error>" continuation that
    the client never answers;
  * a command that times out leaves the protocol waiting for its reply forever, so every later
    command on that connection would hang too.
So every call here races a timeout and the connection-lost event, and any failure marks the session
broken: the caller throws it away and reconnects rather than reusing a connection in an unknown state.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aioimaplib import IMAP4, IMAP4ClientProtocol

T = TypeVar("T")

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_UID = re.compile(rb"\bUID (\d+)\b")

# Dovecot delays a failed authentication by about 2 s; an answer that takes much longer is not coming.
AUTH_TIMEOUT = 15.0


class ImapError(Exception):
    """The connection cannot be used any more; reconnect."""


class AuthFailed(ImapError):
    """The server refused our credentials (or never answered the authentication)."""


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = ""
    # An OAuth2 access token; when set, AUTHENTICATE XOAUTH2 is used instead of LOGIN.
    oauth2_token: str = ""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool
    timeout: float


class MailboxSession(Protocol):
    """One logged-in connection with one folder selected."""

    async def select(self, folder: str) -> int:
        """Select the folder and return its UIDVALIDITY."""

    async def uids_from(self, first_uid: int) -> list[int]:
        """The UIDs of the messages with UID >= first_uid, ascending."""

    async def fetch(self, uid: int) -> bytes | None:
        """The raw message (read without setting \\Seen), or None if it is gone."""

    async def move(self, uid: int, folder: str) -> bool:
        """Move the message to folder; False if the server refused."""

    async def add_flags(self, uid: int, flags: str) -> bool:
        """Add flags such as "(\\Seen)"; False if the server refused."""

    async def ensure_folder(self, folder: str) -> None:
        """Create the folder if it does not exist yet."""

    async def wait_for_change(self, timeout: float, stop: asyncio.Event) -> None:
        """Return when the server reports a change (IDLE), on timeout, or when stop is set."""

    async def close(self) -> None:
        """Log out if possible and drop the connection; never raises, never hangs."""


class _Protocol(IMAP4ClientProtocol):
    def _continuation(self, line: bytes) -> None:
        # A refused XOAUTH2 token comes back as "+ <base64 error>", and the server sends its NO only
        # after the client answers with an empty line (Google's XOAUTH2 protocol notes). aioimaplib
        # never answers, which is its XOAUTH2 hang; answering here turns it into a prompt refusal.
        command = self.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE" and self.transport is not None:
            self.transport.write(b"\r\n")
            return
        super()._continuation(line)


class _Client(IMAP4):
    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop | None,
                      conn_lost_cb: Any = None, ssl_context: ssl.SSLContext | None = None) -> None:
        # The same as IMAP4.create_client, with our protocol class.
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context))


class AioImapSession:
    """MailboxSession over aioimaplib; build it with connect()."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._lost = asyncio.Event()
        ctx = ssl.create_default_context() if endpoint.tls else None
        # IMAP4 (not IMAP4_SSL) because only IMAP4 accepts conn_lost_cb; it takes a TLS context too.
        self._client = _Client(endpoint.host, endpoint.port, timeout=endpoint.timeout,
                             conn_lost_cb=lambda _exc: self._lost.set(), ssl_context=ctx)
        self._broken = False

    @classmethod
    async def connect(cls, endpoint: Endpoint, credentials: Credentials) -> AioImapSession:
        session = cls(endpoint)
        try:
            await session._call(session._client.wait_hello_from_server(), "greeting")
            await session._authenticate(credentials)
        except BaseException:
            await session.close()
            raise
        return session

    async def _authenticate(self, c: Credentials) -> None:
        if c.oauth2_token:
            # Should a server still leave a bad token unanswered (see _Protocol), the timeout means
            # that it did not accept the token.
            try:
                response = await self._call(self._client.xoauth2(c.user, c.oauth2_token), "XOAUTH2",
                                            timeout=min(self._endpoint.timeout, AUTH_TIMEOUT))
            except ImapError as exc:
                raise AuthFailed(f"XOAUTH2 for {c.user} got no answer: {exc}") from exc
        else:
            response = await self._call(self._client.login(c.user, c.password), "LOGIN")
        if response.result != "OK":
            self._broken = True
            raise AuthFailed(f"the server refused the login of {c.user}: {_text(response.lines)}")
        # Servers name MOVE and UIDPLUS only after login (RFC 3501 lets the list change there).
        # aioimaplib takes the new list from LOGIN's OK [CAPABILITY ...] but not from AUTHENTICATE's,
        # so an XOAUTH2 session kept the pre-login list and its moves copied and flagged \Deleted but
        # never expunged; asking again serves every mechanism and servers that send no such code.
        await self._call(self._client.protocol.capability(), "CAPABILITY")

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(self._client.protocol.capabilities)

    async def select(self, folder: str) -> int:
        response = await self._call(self._client.select(_quote(folder)), "SELECT")
        self._expect_ok(response, f"SELECT {folder}")
        for line in response.lines:
            match = _UIDVALIDITY.search(bytes(line))
            if match:
                return int(match.group(1))
        raise ImapError(f"the server gave no UIDVALIDITY for {folder}")

    async def uids_from(self, first_uid: int) -> list[int]:
        response = await self._call(self._client.uid_search(f"UID {first_uid}:*", charset=None), "UID SEARCH")
        self._expect_ok(response, "UID SEARCH")
        found: set[int] = set()
        for line in response.lines[:-1]:
            text = bytes(line).decode("ascii", "replace").replace("SEARCH", " ")
            found.update(int(t) for t in text.split() if t.isdigit())
        # "n:*" always includes the highest UID even when it is below n (RFC 3501 6.4.8), so filter.
        return sorted(u for u in found if u >= first_uid)

    async def fetch(self, uid: int) -> bytes | None:
        response = await self._call(self._client.uid("fetch", str(uid), "(UID BODY.PEEK[])"), "UID FETCH")
        self._expect_ok(response, "UID FETCH")
        lines = response.lines
        for i, line in enumerate(lines[:-1]):
            if isinstance(line, bytes | bytearray) and b"FETCH" in line and i + 1 < len(lines):
                uid_match = _FETCH_UID.search(bytes(line))
                literal = lines[i + 1]
                if uid_match and int(uid_match.group(1)) == uid and isinstance(literal, bytearray):
                    return bytes(literal)
        # Another client expunged it between the search and the fetch.
        return None

    async def move(self, uid: int, folder: str) -> bool:
        if "MOVE" in self.capabilities:
            response = await self._call(self._client.uid("move", str(uid), _quote(folder)), "UID MOVE")
            return response.result == "OK"
        # RFC 6851's fallback. Without UIDPLUS there is no way to expunge only this message, so it is
        # left flagged \Deleted for the server or another client to expunge.
        copied = await self._call(self._client.uid("copy", str(uid), _quote(folder)), "UID COPY")
        if copied.result != "OK":
            return False
        if not await self.add_flags(uid, r"(\Deleted \Seen)"):
            return False
        if "UIDPLUS" in self.capabilities:
            expunged = await self._call(self._client.uid("expunge", str(uid)), "UID EXPUNGE")
            return expunged.result == "OK"
        return True

    async def add_flags(self, uid: int, flags: str) -> bool:
        response = await self._call(self._client.uid("store", str(uid), "+FLAGS.SILENT", flags), "UID STORE")
        return response.result == "OK"

    async def ensure_folder(self, folder: str) -> None:
        # CREATE answers NO when the folder exists; that is the expected case and not an error.
        await self._call(self._client.create(_quote(folder)), "CREATE")

    async def wait_for_change(self, timeout: float, stop: asyncio.Event) -> None:
        if "IDLE" not in self.capabilities:
            await _wait_event(stop, timeout, self._lost)
            if self._lost.is_set():
                self._fail("the connection was lost")
            # A NOOP proves the connection still works, as IDLE would have.
            await self._call(self._client.noop(), "NOOP")
            return
        idle = await self._call(self._client.idle_start(timeout=timeout + 60), "IDLE")
        push = asyncio.ensure_future(self._client.wait_server_push(timeout=timeout))
        try:
            await _wait_event(stop, timeout, self._lost, push)
        finally:
            push.cancel()
            with contextlib.suppress(BaseException):
                await push
        lines = push.result() if push.done() and not push.cancelled() and push.exception() is None else []
        if self._lost.is_set() or any(b"BYE" in bytes(x) for x in lines if isinstance(x, bytes | bytearray)):
            self._fail("the server closed the connection during IDLE")
        if self._client.has_pending_idle():
            self._client.idle_done()
        # An IDLE that does not end after DONE is the hang of aioimaplib #110: give up the connection.
        try:
            await asyncio.wait_for(asyncio.shield(idle), self._endpoint.timeout)
        except (TimeoutError, asyncio.TimeoutError):
            idle.cancel()
            self._fail("IDLE did not end after DONE")
        except Exception as exc:  # noqa: BLE001 - any IDLE failure means the connection is unusable.
            self._fail(f"IDLE failed: {exc!r}")

    async def close(self) -> None:
        if not self._broken and not self._lost.is_set():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._client.logout(), min(self._endpoint.timeout, 5.0))
        protocol = self._client.protocol
        if protocol.transport is not None:
            protocol.transport.close()
        # aioimaplib keeps helper tasks that would otherwise be destroyed while pending.
        tasks = (*self._client.tasks, *protocol.tasks, self._client._client_task)
        for task in tasks:
            # A refused connection leaves its exception in the connect task; fetch it so that asyncio
            # does not report it again as "never retrieved".
            if task.done() and not task.cancelled():
                task.exception()
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    async def _call(self, coro: Awaitable[T], what: str, timeout: float | None = None) -> T:
        """Run one client call, bounded by the timeout and by the connection staying up."""
        if self._broken:
            if inspect.iscoroutine(coro):
                coro.close()
            raise ImapError(f"{what}: the connection is already broken")
        task = asyncio.ensure_future(coro)
        try:
            await _wait_event(None, timeout or self._endpoint.timeout + 1.0, self._lost, task)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if task.cancelled() or not task.done():
            self._fail(f"{what}: " + ("connection lost" if self._lost.is_set() else "timed out"))
        exc = task.exception()
        if exc is not None:
            self._broken = True
            raise ImapError(f"{what}: {exc!r}") from exc
        return task.result()

    def _expect_ok(self, response: Any, what: str) -> None:
        if response.result != "OK":
            raise ImapError(f"{what}: {response.result} {_text(response.lines)}")

    def _fail(self, reason: str) -> None:
        self._broken = True
        raise ImapError(reason)


async def _wait_event(stop: asyncio.Event | None, timeout: float, *others: Any) -> None:
    """Wait until stop, one of the other events or futures is done, or timeout passes."""
    owned: list[asyncio.Future[Any]] = []
    waiters: list[asyncio.Future[Any]] = []
    for item in (stop, *others):
        if isinstance(item, asyncio.Event):
            waiter = asyncio.ensure_future(item.wait())
            owned.append(waiter)
            waiters.append(waiter)
        elif item is not None:
            waiters.append(item)
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in owned:
            waiter.cancel()


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(lines: list[Any]) -> str:
    return " ".join(bytes(x).decode("utf-8", "replace") for x in lines if isinstance(x, bytes | bytearray))[:300]
