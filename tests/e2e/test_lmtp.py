# SPDX-License-Identifier: GPL-3.0-or-later
"""The LMTP listener in the real daemon: one reply per accepted recipient, TCP and unix socket."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

from casemail.app import make_identity, make_intake_config
from tests.e2e.conftest import daemon_settings
from tests.e2e.dovecot import free_port
from tests.e2e.transport_helpers import StoreView, eventually, raw_mail

SUPPORT = {"addresses": ["support@example.com", "sales@example.com"], "name": "Example Support",
           "secret_key": "test-key-0123456789abcdef"}


def lmtp_exchange(host: str, port: int, rcpts: list[str], raw: bytes) -> tuple[list[tuple[int, bytes]], list]:
    """RCPT replies, then every reply after DATA: smtplib's sendmail reads only the first of those."""
    with smtplib.LMTP(host, port, timeout=10) as c:
        c.ehlo("client.test")  # smtplib.LMTP sends LHLO for this
        assert c.mail("jane@customer.example")[0] == 250
        rcpt_replies = [c.rcpt(r) for r in rcpts]
        accepted = sum(1 for code, _ in rcpt_replies if code == 250)
        data_replies = [c.data(raw)]
        data_replies += [c.getreply() for _ in range(accepted - 1)]
    return rcpt_replies, data_replies


async def test_lmtp_answers_each_recipient(start_daemon, database_url: str):
    port = free_port()
    await start_daemon(support=SUPPORT, lmtp={"enabled": True, "port": port})
    rcpt, data = await asyncio.to_thread(
        lmtp_exchange, "127.0.0.1", port, ["support@example.com", "nobody@example.com", "sales@example.com"],
        raw_mail("Over LMTP", message_id="lmtp-1@customer.example"))
    assert [code for code, _ in rcpt] == [250, 550, 250]
    assert [code for code, _ in data] == [250, 250]
    view = StoreView(database_url)
    try:
        await eventually(lambda: view.subjects() == ["Over LMTP"], what="the LMTP mail to become a case")
        assert [o for _, o, _ in view.inbound()] == ["new-case"]
    finally:
        view.close()


async def test_lmtp_on_a_unix_socket_with_smtplib_sendmail(start_daemon, database_url: str, tmp_path: Path):
    sock = tmp_path / "lmtp.sock"
    await start_daemon(lmtp={"enabled": True, "socket": "lmtp.sock", "socket_mode": 0o600})
    assert sock.stat().st_mode & 0o777 == 0o600

    def send() -> dict:
        with smtplib.LMTP(str(sock), timeout=10) as c:
            return c.sendmail("jane@customer.example", ["support@example.com", "nobody@example.com"],
                              raw_mail("Over a socket", message_id="lmtp-2@customer.example"))

    refused = await asyncio.to_thread(send)
    assert list(refused) == ["nobody@example.com"] and refused["nobody@example.com"][0] == 550
    view = StoreView(database_url)
    try:
        await eventually(lambda: view.subjects() == ["Over a socket"], what="the mail to become a case")
    finally:
        view.close()


def test_the_trusted_flag_makes_lmtp_a_trusted_transport(tmp_path: Path):
    for trusted, expected in ((False, frozenset()), (True, frozenset({"lmtp"}))):
        settings = daemon_settings(tmp_path, "sqlite:///unused.db", lmtp={"trusted": trusted})
        assert make_intake_config(settings, make_identity(settings)).trusted_transports == expected


async def test_lmtp_sessions_get_the_session_limits(start_daemon):
    port = free_port()
    await start_daemon(support=SUPPORT, lmtp={"enabled": True, "port": port, "max_message_size": 2000},
                       smtp={"max_recipients": 2, "max_bad_commands": 3})

    def exchange() -> dict[str, object]:
        c = smtplib.LMTP("127.0.0.1", port, timeout=10)
        try:
            seen: dict[str, object] = {"ehlo": c.docmd("EHLO client.test")[0], "lhlo": c.ehlo("client.test")[0]}
            c.mail("jane@customer.example")
            seen["rcpt"] = [c.rcpt(r)[0] for r in ("support@example.com", "sales@example.com",
                                                   "support+x@example.com")]
            c.rset()
            # The message size is lmtp.max_message_size, not smtp's.
            seen["too_large"] = c.mail("jane@customer.example", ["SIZE=5000"])[0]
            bad: list[int] = []
            while len(bad) < 10 and 421 not in bad:
                bad.append(c.docmd("NONSENSE")[0])
            seen["bad"] = bad
        finally:
            c.close()
        return seen

    seen = await asyncio.to_thread(exchange)
    assert seen["ehlo"] == 500 and seen["lhlo"] == 250
    assert seen["rcpt"] == [250, 250, 452]          # smtp.max_recipients
    assert seen["too_large"] == 552
    # smtp.max_bad_commands: the unknown EHLO was the first, two more are answered 500, then 421.
    assert seen["bad"] == [500, 500, 421]


async def test_a_refused_message_is_answered_once_per_recipient(start_daemon):
    # RFC 2033 4.2: after DATA the server owes one reply per accepted recipient, refusals included;
    # a client left waiting for the second would time out and defer a mail that can never be taken.
    port = free_port()
    await start_daemon(support=SUPPORT, lmtp={"enabled": True, "port": port, "max_message_size": 2000})
    rcpt, data = await asyncio.to_thread(
        lmtp_exchange, "127.0.0.1", port, ["support@example.com", "sales@example.com"],
        raw_mail("Too large", body=("x" * 70 + "\r\n") * 40, message_id="lmtp-3@customer.example"))
    assert [code for code, _ in rcpt] == [250, 250]
    assert [code for code, _ in data] == [552, 552]
