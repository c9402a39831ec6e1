# SPDX-License-Identifier: GPL-3.0-or-later
"""The SMTP listener under abuse, spoken to over real SMTP on loopback.

Protocol rules run against start_smtp_server with a stub acceptor; the wiring from config.example.toml
through the settings to the listener runs against the real daemon (start_daemon).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import ssl
import subprocess
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from casemail.settings import ConfigError, SmtpSettings
from intake.accept import Envelope, TransientFailure
from intake.transports.smtp import IntakeHandler, Mailboxes, SmtpLimits, SmtpSecurity, start_smtp_server
from intake.transports.smtp_server import hash_password
from tests.e2e.conftest import daemon_settings

REPO = Path(__file__).resolve().parents[2]
BODY = b"From: jane@customer.example\r\nSubject: hello\r\n\r\nHello.\r\n"


class StubAcceptor:
    """Stands in for intake.accept.Acceptor: records mail, or fails, or waits for a gate."""

    def __init__(self, fail: Exception | None = None, gate: asyncio.Event | None = None) -> None:
        self.fail = fail
        self.gate = gate
        self.entered = asyncio.Event()
        self.received: list[tuple[bytes, Envelope]] = []

    async def accept(self, raw: bytes, envelope: Envelope) -> int:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.received.append((raw, envelope))
        return len(self.received)


_OPEN: list[Client] = []


class Client:
    """A line-level SMTP client, so each test controls exactly what is sent and when."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, greeting: str) -> None:
        self.reader, self.writer, self.greeting = reader, writer, greeting

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer, "")
        _OPEN.append(client)
        client.greeting = await client.reply()
        return client

    async def reply(self, timeout: float = 5.0) -> str:
        lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), timeout)).decode("utf-8", "replace")
            if not line:
                raise ConnectionError("closed by the server; replies so far: " + "".join(lines))
            lines.append(line)
            if line[3:4] != "-":
                return "".join(lines).rstrip("\r\n")

    async def cmd(self, line: str | bytes) -> str:
        self.writer.write((line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line) + b"\r\n")
        return await self.reply()

    async def send_data(self, body: bytes) -> str:
        assert (await self.cmd("DATA")).startswith("354")
        self.writer.write(body + b".\r\n")
        return await self.reply()

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True once the server has closed; it then has run connection_lost for this session."""
        return await asyncio.wait_for(self.reader.read(), timeout) == b""

    async def starttls(self, context: ssl.SSLContext) -> None:
        assert (await self.cmd("STARTTLS")).startswith("220")
        await self.writer.start_tls(context, server_hostname="localhost")

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close what a failed test left open, so its report is the assertion, not a ResourceWarning."""
    yield
    while _OPEN:
        await _OPEN.pop().close()


@pytest.fixture
async def listener() -> AsyncIterator[Callable[..., Any]]:
    """A factory: `port = await listener(acceptor, limits=SmtpLimits(...), security=...)`."""
    servers: list[asyncio.Server] = []

    async def _start(acceptor: Any, *, limits: SmtpLimits | None = None, security: SmtpSecurity | None = None,
                     handler: Any = None) -> int:
        server = await start_smtp_server(
            handler or IntakeHandler(acceptor, Mailboxes(["support@example.com"])),  # type: ignore[arg-type]
            host="127.0.0.1", port=0, hostname="mx.test", limits=limits or SmtpLimits(), security=security,
        )
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield _start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, made with the openssl command at run time."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    return cert, key


def client_tls(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def users_file(folder: Path) -> Path:
    path = folder / "smtp-users"
    # A cheap scrypt cost keeps the test fast; the format is the production one.
    path.write_text(f"# staff submission accounts\nagent:{hash_password('s3cret', n=2**10)}\n")
    return path


def plain(user: str, password: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


async def open_transaction(port: int, rcpt: str = "support@example.com", size: int | None = None) -> Client:
    c = await Client.connect(port)
    assert (await c.cmd("EHLO client.test")).startswith("250")
    declared = f" SIZE={size}" if size is not None else ""
    assert (await c.cmd(f"MAIL FROM:<jane@customer.example>{declared}")).startswith("250")
    assert (await c.cmd(f"RCPT TO:<{rcpt}>")).startswith("250")
    return c


# Relaying ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "code"), [
    ("<support@example.com>", "250"),
    ("<Support+00000001.abc@EXAMPLE.com>", "250"),
    ('<"support"@example.com>', "250"),                       # the same mailbox, quoted
    ("<@relay.example:support@example.com>", "250"),          # source route ignored (RFC 5321 C)
    ("<@example.com:victim@other.example>", "550"),           # source route to a foreign domain
    ("<victim@other.example>", "550"),
    ("<support@other.example>", "550"),                       # our local part, another domain
    ("<support@example.com.other.example>", "550"),
    ("<support%other.example@example.com>", "550"),           # the %-hack
    ('<"victim@other.example"@example.com>', "550"),          # quoted foreign address
    ('<"support@other.example"@example.com>', "550"),
    ("<sales@example.com>", "550"),                           # our domain, not a support address
])
async def test_only_support_addresses_are_accepted(listener, address, code):
    port = await listener(StubAcceptor())
    c = await Client.connect(port)
    await c.cmd("EHLO client.test")
    await c.cmd("MAIL FROM:<jane@customer.example>")
    reply = await c.cmd(f"RCPT TO:{address}")
    assert reply[:3] == code, reply
    if code == "550":
        assert reply.startswith("550 5.1.1")
    await c.close()


# Limits --------------------------------------------------------------------------------------------

async def test_message_size_announced_with_size_is_refused_at_mail_from(listener):
    acceptor = StubAcceptor()
    port = await listener(acceptor, limits=SmtpLimits(max_message_size=2048))
    c = await Client.connect(port)
    assert "SIZE 2048" in await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<jane@customer.example> SIZE=5000")).startswith("552")
    assert (await c.cmd("MAIL FROM:<jane@customer.example> SIZE=1000")).startswith("250")
    await c.close()
    assert acceptor.received == []


async def test_message_size_without_size_is_refused_after_data(listener):
    acceptor = StubAcceptor()
    port = await listener(acceptor, limits=SmtpLimits(max_message_size=2048))
    c = await open_transaction(port)
    big = BODY + b"x" * 70 + b"\r\n"
    assert (await c.send_data(big * 40)).startswith("552")
    assert acceptor.received == []
    # The session survives: a message within the limit still goes through.
    await c.cmd("MAIL FROM:<jane@customer.example>")
    await c.cmd("RCPT TO:<support@example.com>")
    assert (await c.send_data(BODY)).startswith("250")
    await c.close()
    assert len(acceptor.received) == 1


async def test_recipients_past_the_limit_get_452(listener):
    acceptor = StubAcceptor()
    port = await listener(acceptor, limits=SmtpLimits(max_recipients=2))
    c = await open_transaction(port)
    assert (await c.cmd("RCPT TO:<support+a@example.com>")).startswith("250")
    assert (await c.cmd("RCPT TO:<support+b@example.com>")) == "452 4.5.3 Too many recipients"
    assert (await c.send_data(BODY)).startswith("250")
    await c.close()
    assert acceptor.received[0][1].rcpt_tos == ("support@example.com", "support+a@example.com")


async def test_connections_past_the_limit_get_421_at_connect(listener):
    port = await listener(StubAcceptor(), limits=SmtpLimits(max_connections=2))
    first, second = await Client.connect(port), await Client.connect(port)
    assert first.greeting.startswith("220") and second.greeting.startswith("220")
    third = await Client.connect(port)
    assert third.greeting.startswith("421 4.7.0")
    assert await third.closed_by_server()
    assert (await first.cmd("QUIT")).startswith("221")
    assert await first.closed_by_server()
    fourth = await Client.connect(port)
    assert fourth.greeting.startswith("220")
    for c in (first, second, third, fourth):
        await c.close()


async def test_idle_client_gets_421_and_is_disconnected(listener):
    port = await listener(StubAcceptor(), limits=SmtpLimits(idle_timeout=0.5))
    c = await Client.connect(port)
    started = time.monotonic()
    assert (await c.reply(timeout=5)) == "421 4.4.2 Idle timeout, closing connection"
    assert time.monotonic() - started >= 0.4
    assert await c.closed_by_server()
    await c.close()


async def test_idle_timeout_restarts_on_data_and_pauses_while_storing(listener):
    # A slow sender that keeps sending, and a store slower than the timeout, are not idleness.
    gate = asyncio.Event()
    acceptor = StubAcceptor(gate=gate)
    port = await listener(acceptor, limits=SmtpLimits(idle_timeout=0.5))
    c = await open_transaction(port)
    assert (await c.cmd("DATA")).startswith("354")
    for _ in range(4):
        c.writer.write(b"X-Filler: slow line\r\n")
        await asyncio.sleep(0.25)  # pacing the sender is the point of this test
    c.writer.write(BODY + b".\r\n")
    await asyncio.wait_for(acceptor.entered.wait(), 5)
    await asyncio.sleep(0.8)
    gate.set()
    assert (await c.reply()).startswith("250")
    await c.close()


async def test_commands_past_the_limit_get_421_and_close(listener):
    port = await listener(StubAcceptor(), limits=SmtpLimits(max_commands=10))
    c = await Client.connect(port)
    await c.cmd("EHLO client.test")
    for i in range(9):
        assert (await c.cmd("RSET" if i % 2 else "NOOP")).startswith("250")
    assert (await c.cmd("NOOP")) == "421 4.7.0 Too many commands, closing connection"
    assert await c.closed_by_server()
    await c.close()


@pytest.mark.parametrize("bad", ["XYZZY", "RCPT TO:<nobody@example.com>", "MAIL FROM:<"])
async def test_errors_past_the_limit_get_421_and_close(listener, bad):
    port = await listener(StubAcceptor(), limits=SmtpLimits(max_bad_commands=3))
    c = await open_transaction(port)
    if bad.startswith("MAIL"):
        await c.cmd("RSET")
    for _ in range(3):
        assert (await c.cmd(bad))[:1] == "5"
    c.writer.write(bad.encode() + b"\r\n")
    assert (await c.reply())[:1] == "5"
    assert (await c.reply()) == "421 4.7.0 Too many errors, closing connection"
    assert await c.closed_by_server()
    await c.close()


async def test_unknown_commands_follow_the_configured_limit_and_are_not_echoed(listener):
    # Stock aiosmtpd hangs up with a permanent 502 after five unknown commands, whatever we configure.
    port = await listener(StubAcceptor(), limits=SmtpLimits(max_bad_commands=8))
    c = await Client.connect(port)
    for i in range(7):
        assert (await c.cmd(f"X<script>{i}")) == "500 5.5.2 Command not recognized"
    assert (await c.cmd("NOOP")).startswith("250")
    await c.close()


# Overload and failures -----------------------------------------------------------------------------

async def test_store_failure_answers_451(listener):
    port = await listener(StubAcceptor(fail=TransientFailure("disk full")))
    c = await open_transaction(port)
    assert (await c.send_data(BODY)).startswith("451 4.3.0")
    await c.close()


async def test_data_past_the_concurrency_limit_gets_451(listener):
    gate = asyncio.Event()
    acceptor = StubAcceptor(gate=gate)
    port = await listener(acceptor, limits=SmtpLimits(max_concurrent_data=1))
    first, second = await open_transaction(port), await open_transaction(port)
    assert (await first.cmd("DATA")).startswith("354")
    first.writer.write(BODY + b".\r\n")
    await asyncio.wait_for(acceptor.entered.wait(), 5)
    assert (await second.cmd("DATA")) == "451 4.3.2 System busy, please try again later"
    gate.set()
    assert (await first.reply()).startswith("250")
    assert (await second.send_data(BODY)).startswith("250")  # the envelope was kept; retry works
    for c in (first, second):
        await c.close()
    assert len(acceptor.received) == 2


async def _in_flight(port: int, acceptor: StubAcceptor, size: int | None) -> Client:
    c = await open_transaction(port, size=size)
    assert (await c.cmd("DATA")).startswith("354")
    acceptor.entered.clear()
    c.writer.write(BODY + b".\r\n")
    await asyncio.wait_for(acceptor.entered.wait(), 5)
    return c


async def test_data_past_the_memory_limit_gets_451_until_memory_is_free(listener):
    # Senders that declare nothing reserve the size limit each: two fit, the third must wait.
    gate = asyncio.Event()
    acceptor = StubAcceptor(gate=gate)
    port = await listener(acceptor, limits=SmtpLimits(max_message_size=10_000, max_data_memory=25_000))
    held = [await _in_flight(port, acceptor, None) for _ in range(2)]
    third = await open_transaction(port)
    assert (await third.cmd("DATA")) == "451 4.3.2 System busy, please try again later"
    gate.set()
    for c in held:
        assert (await c.reply()).startswith("250")
    assert (await third.send_data(BODY)).startswith("250")
    for c in (*held, third):
        await c.close()


async def test_a_declared_size_reserves_only_its_share(listener):
    # Declared small, many fit where undeclared ones would not (each would reserve the 25 MB limit).
    gate = asyncio.Event()
    acceptor = StubAcceptor(gate=gate)
    port = await listener(acceptor, limits=SmtpLimits(max_data_memory=26_214_400))
    held = [await _in_flight(port, acceptor, len(BODY)) for _ in range(20)]
    undeclared = await open_transaction(port)
    assert (await undeclared.cmd("DATA")).startswith("451")
    gate.set()
    for c in held:
        assert (await c.reply()).startswith("250")
    for c in (*held, undeclared):
        await c.close()
    assert len(acceptor.received) == 20


async def test_a_message_far_larger_than_declared_is_refused(listener):
    acceptor = StubAcceptor()
    port = await listener(acceptor)
    c = await open_transaction(port, size=100)
    big = BODY + (b"x" * 76 + b"\r\n") * 16_000     # about 1.2 MB: more than 3 x 100 + 1 MiB
    assert (await c.send_data(big)) == "552 Error: Too much mail data"
    # Within its share, a message a little larger than declared (it grew on the way) is taken.
    c2 = await open_transaction(port, size=len(BODY) // 2)
    assert (await c2.send_data(BODY)).startswith("250")
    for client in (c, c2):
        await client.close()
    assert len(acceptor.received) == 1


async def test_unexpected_error_answers_451_without_internals(listener):
    port = await listener(StubAcceptor(fail=RuntimeError("db password hunter2 at /var/lib/casemail")))
    c = await open_transaction(port)
    reply = await c.send_data(BODY)
    assert reply.startswith("451 4.3.0")
    assert "hunter2" not in reply and "RuntimeError" not in reply
    await c.close()


class ExplodingHandler:
    """A handler with no handle_exception: stock aiosmtpd would answer "500 Error: (KeyError) ..."."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        raise KeyError("internal-state-42")


@pytest.mark.parametrize("line", ["MAIL FROM:<", 'MAIL FROM:"', "MAIL FROM:\x00@[", "VRFY <"])
async def test_address_parser_crashes_answer_553_without_internals(listener, line):
    # The stdlib parser raises IndexError (and others) on these; aiosmtpd expects only HeaderParseError.
    port = await listener(StubAcceptor())
    c = await Client.connect(port)
    await c.cmd("EHLO client.test")
    reply = await c.cmd(line)
    assert reply[:3] in ("553", "502") and "Error: (" not in reply and "IndexError" not in reply, reply
    assert (await c.cmd("NOOP")).startswith("250")
    await c.close()


async def test_handler_without_handle_exception_still_gets_451(listener):
    port = await listener(None, handler=ExplodingHandler())
    c = await Client.connect(port)
    await c.cmd("EHLO client.test")
    await c.cmd("MAIL FROM:<jane@customer.example>")
    reply = await c.cmd("RCPT TO:<support@example.com>")
    assert reply.startswith("451 4.3.0") and "internal-state-42" not in reply
    await c.close()


# STARTTLS and AUTH ---------------------------------------------------------------------------------

async def test_starttls_then_auth_succeeds_and_bad_passwords_get_535(listener, certificate, tmp_path):
    cert, key = certificate
    port = await listener(StubAcceptor(), security=SmtpSecurity(tls_cert=cert, tls_key=key,
                                                                auth_users=users_file(tmp_path)))
    c = await Client.connect(port)
    ehlo = await c.cmd("EHLO client.test")
    assert "STARTTLS" in ehlo and "AUTH" not in ehlo
    assert (await c.cmd(plain("agent", "s3cret"))).startswith("538")  # never over plain text
    await c.starttls(client_tls(cert))
    ehlo = await c.cmd("EHLO client.test")
    assert "250-AUTH LOGIN PLAIN" in ehlo and "STARTTLS" not in ehlo
    # A wrong password and an unknown user are answered (not left hanging, see dependencies.md 6.2).
    assert (await c.cmd(plain("agent", "wrong"))).startswith("535 5.7.8")
    assert (await c.cmd(plain("nobody", "s3cret"))).startswith("535 5.7.8")
    assert (await c.cmd("AUTH LOGIN")).startswith("334")
    assert (await c.cmd(base64.b64encode(b"agent"))).startswith("334")
    assert (await c.cmd(base64.b64encode(b"s3cret"))).startswith("235")
    await c.close()


async def test_require_starttls_and_auth_required(listener, certificate, tmp_path):
    cert, key = certificate
    port = await listener(StubAcceptor(), security=SmtpSecurity(
        tls_cert=cert, tls_key=key, require_starttls=True, auth_users=users_file(tmp_path), auth_required=True))
    c = await Client.connect(port)
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<agent@example.com>")).startswith("530")
    await c.starttls(client_tls(cert))
    await c.cmd("EHLO client.test")
    assert (await c.cmd("MAIL FROM:<agent@example.com>")).startswith("530 5.7.0")
    assert (await c.cmd(plain("agent", "s3cret"))).startswith("235")
    assert (await c.cmd("MAIL FROM:<agent@example.com>")).startswith("250")
    await c.close()


async def test_starttls_without_users_offers_no_auth(listener, certificate):
    cert, key = certificate
    port = await listener(StubAcceptor(), security=SmtpSecurity(tls_cert=cert, tls_key=key))
    c = await Client.connect(port)
    await c.cmd("EHLO client.test")
    await c.starttls(client_tls(cert))
    assert "AUTH" not in await c.cmd("EHLO client.test")
    assert (await c.cmd(plain("agent", "s3cret"))).startswith("504")
    await c.close()


# Through the daemon --------------------------------------------------------------------------------

async def test_daemon_applies_the_smtp_settings(start_daemon):
    d = await start_daemon(smtp={"max_recipients": 1, "max_message_size": 4096})
    c = await Client.connect(d.smtp_port)
    assert "SIZE 4096" in await c.cmd("EHLO client.test")
    await c.cmd("MAIL FROM:<jane@customer.example>")
    assert (await c.cmd("RCPT TO:<victim@other.example>")).startswith("550")
    assert (await c.cmd("RCPT TO:<support@example.com>")).startswith("250")
    assert (await c.cmd("RCPT TO:<support+x@example.com>")).startswith("452 4.5.3")
    assert (await c.send_data(BODY)).startswith("250 2.0.0 Ok: queued as")
    await c.close()


@pytest.mark.parametrize(("key", "value"), [("tls_cert", "missing.pem"), ("auth_users", "missing-users")])
async def test_daemon_refuses_to_start_with_unusable_tls_or_users_file(start_daemon, certificate, key, value):
    cert, tls_key = certificate
    smtp = {"tls_cert": str(cert), "tls_key": str(tls_key), key: value}
    with pytest.raises(ConfigError, match=f"^smtp.{key}: "):
        await start_daemon(smtp=smtp)


@pytest.mark.parametrize(("values", "key"), [
    ({"max_recipients": 0}, "max_recipients"),
    ({"max_connections": 0}, "max_connections"),
    ({"max_concurrent_data": 0}, "max_concurrent_data"),
    ({"max_data_memory": 1_000_000}, "max_data_memory"),
    ({"max_bad_commands": 0}, "max_bad_commands"),
    ({"max_commands": 5}, "max_commands"),
    ({"idle_timeout": 0}, "idle_timeout"),
    ({"max_message_size": 10}, "max_message_size"),
    ({"tls_cert": "cert.pem"}, "tls_key"),
    ({"require_starttls": True}, "require_starttls"),
    ({"auth_users": "users"}, "auth_users"),
    ({"auth_required": True}, "auth_required"),
    ({"idle_timeout": "5"}, "idle_timeout"),
])
def test_bad_smtp_settings_are_refused_naming_the_key(tmp_path, values, key):
    with pytest.raises(ConfigError, match=f"^smtp.{key}: "):
        daemon_settings(tmp_path, "sqlite:///x.db", smtp=values)


def test_example_config_documents_every_smtp_key_with_its_default():
    text = (REPO / "config.example.toml").read_text()
    smtp = tomllib.loads(text)["smtp"]
    assert set(smtp) == {f.name for f in dataclasses.fields(SmtpSettings)}
    assert SmtpSettings(**smtp) == SmtpSettings()
    assert SmtpSettings().max_recipients >= 100  # RFC 5321 4.5.3.1.8


async def test_users_kept_with_the_smtp_user_command_can_log_in(listener, certificate, tmp_path):
    from tests.e2e.test_mailcmds import casemail

    cert, key = certificate
    users = tmp_path / "smtp-users"
    users.write_text("# staff submission accounts\n")
    cfg = tmp_path / "casemail.toml"
    cfg.write_text(f'[support]\naddresses = ["support@example.com"]\n[smtp]\ntls_cert = "{cert}"\n'
                   f'tls_key = "{key}"\nauth_users = "{users}"\n[logging]\nlevel = "WARNING"\n')
    for name, password in (("agent", "first"), ("lead", "other"), ("agent", "s3cret")):
        done = casemail(cfg, "smtp-user", name, stdin=f"{password}\n".encode())
        assert done.returncode == 0, done.stderr
    assert casemail(cfg, "smtp-user", "lead", "--remove").returncode == 0
    assert casemail(cfg, "smtp-user", "lead", "--remove").returncode == 67      # no such user any more
    assert casemail(cfg, "smtp-user", "a:b", stdin=b"x\n").returncode == 64     # not a login name
    assert casemail(cfg, "smtp-user", "nobody", stdin=b"\n").returncode == 64   # no empty passwords
    assert users.stat().st_mode & 0o777 == 0o600
    assert users.read_text().startswith("# staff submission accounts\nagent:scrypt:")

    port = await listener(StubAcceptor(), security=SmtpSecurity(tls_cert=cert, tls_key=key, auth_users=users))
    c = await Client.connect(port)
    await c.cmd("EHLO client.test")
    await c.starttls(client_tls(cert))
    await c.cmd("EHLO client.test")
    assert (await c.cmd(plain("agent", "first"))).startswith("535")   # the changed password is gone
    assert (await c.cmd(plain("lead", "other"))).startswith("535")    # and so is the removed user
    assert (await c.cmd(plain("agent", "s3cret"))).startswith("235")
    await c.close()


def test_the_smtp_user_command_keeps_the_files_owner(certificate, tmp_path):
    # The daemon may run as another user than the operator (who may use sudo): the rewritten file
    # stays the daemon's to read.
    from tests.e2e.test_mailcmds import casemail

    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    users = tmp_path / "smtp-users"
    users.write_text("# staff submission accounts\n")
    os.chown(users, 65534, 65534)
    cfg = tmp_path / "casemail.toml"
    cert, key = certificate
    cfg.write_text(f'[support]\naddresses = ["support@example.com"]\n[smtp]\ntls_cert = "{cert}"\n'
                   f'tls_key = "{key}"\nauth_users = "{users}"\n[logging]\nlevel = "WARNING"\n')
    done = casemail(cfg, "smtp-user", "agent", stdin=b"s3cret\n")
    assert done.returncode == 0, done.stderr
    st = users.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o600)
    assert "agent:scrypt:" in users.read_text()
