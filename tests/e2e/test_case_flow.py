# SPDX-License-Identifier: GPL-3.0-or-later
"""Mail in over SMTP becomes a case; the acknowledgement goes out; replies thread; close; closed cases."""

from __future__ import annotations

import asyncio
import json
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from casemail.app import open_store
from store import cases
from store.db import read_only
from store.models import Attachment, Inbound, Outbox
from tests.e2e.conftest import RunningDaemon, smarthost


def make_mail(subject: str, body: str, *, sender: str = "Jane Doe <jane@customer.example>",
              to: str = "support@example.com", message_id: str | None = None,
              in_reply_to: str | None = None, attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    if message_id:
        m["Message-ID"] = message_id
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = in_reply_to
    m.set_content(body)
    if attachment:
        m.add_attachment(attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0])
    return m


async def send(port: int, msg: EmailMessage, rcpt: list[str] | None = None) -> dict:
    def _send() -> dict:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            return s.send_message(msg, to_addrs=rcpt or ["support@example.com"])

    return await asyncio.to_thread(_send)


async def test_new_case_is_acknowledged_and_a_reply_with_attachment_threads(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink))
    await send(d.smtp_port, make_mail("Printer on fire", "Hello,\nthe printer is on fire.\n",
                                      message_id="<first@customer.example>"))
    (ack,) = await sink.wait_for(1)
    assert ack["Subject"] == "[Case #00000001] Printer on fire"
    assert ack["To"] == "jane@customer.example"
    assert ack["In-Reply-To"] == "<first@customer.example>"
    assert ack["Auto-Submitted"] == "auto-replied"
    text = ack.get_body(("plain",)).get_content()
    assert "00000001" in text and "Severity:    3" in text

    reply = make_mail(
        "Re: [Case #00000001] Printer on fire",
        "Here is the log.\n\nOn Sunday, Support wrote:\n> we have received your mail and opened case 00000001.\n",
        message_id="<second@customer.example>", in_reply_to=ack["Message-ID"],
        attachment=("printer.log", b"\x00\x01binary log\xff"),
    )
    await send(d.smtp_port, reply)
    await d.settle()
    await d.shutdown()

    store = open_store(d.settings)
    with read_only(store.engine) as s:
        case = cases.get_case(s, 1)
        assert case is not None and case.status == "open"
        history = cases.history(s, case)
        comment = next(e for e in history if e.message_id == "second@customer.example")
        assert comment.kind == "customer_message"
        assert comment.matched_by == "message-id"
        assert comment.text.strip() == "Here is the log."
        assert "we have received" in comment.full_text
        (att,) = comment.attachments
        assert att.filename == "printer.log"
        assert store.blobs.get(att.sha256) == b"\x00\x01binary log\xff"
        assert [c.number for c in cases.listing(s, status="all")] == [case.number]
    store.engine.dispose()


async def test_unknown_recipient_is_refused_and_never_relayed(start_daemon):
    d = await start_daemon()

    def _try() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as s:
            s.ehlo()
            s.mail("spammer@elsewhere.example")
            return s.rcpt("victim@elsewhere.example")

    code, _ = await asyncio.to_thread(_try)
    assert code == 550


async def test_oversize_mail_is_refused_with_552(start_daemon):
    d = await start_daemon(smtp={"max_message_size": 4096})
    big = make_mail("big", "x" * 8000 + "\n")
    with pytest.raises(smtplib.SMTPResponseException) as err:
        await send(d.smtp_port, big)
    assert err.value.smtp_code == 552
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        assert s.scalars(select(Inbound)).all() == []
    store.engine.dispose()


async def test_mail_to_a_closed_case_opens_a_new_case_that_points_back(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink))
    await send(d.smtp_port, make_mail("VPN drops", "It drops every hour.\n", message_id="<v1@customer.example>"))
    (ack,) = await sink.wait_for(1)

    store = open_store(d.settings)
    from casemail.cli import main

    assert await asyncio.to_thread(main, ["-c", str(_write_config(d)), "close", "1"]) == 0
    msgs = await sink.wait_for(2)
    closed = msgs[1]
    assert closed["Subject"] == "[Case #00000001] VPN drops"
    assert "is now closed" in closed.get_body(("plain",)).get_content()

    await send(d.smtp_port, make_mail("Re: [Case #00000001] VPN drops", "It is back.\n",
                                      message_id="<v2@customer.example>", in_reply_to=ack["Message-ID"]))
    msgs = await sink.wait_for(3)
    new_ack = msgs[2]
    assert new_ack["Subject"] == "[Case #00000002] VPN drops"
    body = new_ack.get_body(("plain",)).get_content()
    assert "case 00000001 is closed" in body and "continues closed case 00000001" in body
    await d.shutdown()
    with read_only(store.engine) as s:
        old, new = cases.get_case(s, 1), cases.get_case(s, 2)
        assert old.status == "closed" and new.status == "open"
        assert new.follow_up_of_id == old.id
        assert all(e.message_id != "v2@customer.example" for e in cases.history(s, old))
    store.engine.dispose()


def _write_config(d: RunningDaemon) -> Path:
    """The running daemon's settings as a config file, for driving the CLI against the same store."""
    s = d.settings
    path = Path(s.base_dir) / "cli.toml"
    url = s.database_url
    lines = [
        "[database]", f"url = {json.dumps(url)}",
        "[storage]", f"blobs = {json.dumps(str(s.path(s.storage.blobs)))}",
        "[support]", f"addresses = {json.dumps(s.support.addresses)}", f"secret_key = {json.dumps(s.support.secret_key)}",
        f"name = {json.dumps(s.support.name)}",
        "[smtp]", "enabled = false",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_cases_listing_and_search_from_the_cli(start_daemon, sink, capsys):
    d = await start_daemon(outbound=smarthost(sink))
    for i, subject in enumerate(["Printer jams on tray 2", "VPN drops hourly", "printer toner empty"]):
        await send(d.smtp_port, make_mail(subject, "details\n", message_id=f"<l{i}@customer.example>"))
    await sink.wait_for(3)
    await d.shutdown()
    from casemail.cli import main

    cfg = str(_write_config(d))
    capsys.readouterr()
    assert main(["-c", cfg, "cases", "--status", "all", "--search", "PRINTER", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["subject"] for r in rows) == ["Printer jams on tray 2", "printer toner empty"]
    assert {r["status"] for r in rows} == {"open"} and all(r["requester"] == "jane@customer.example" for r in rows)
    assert main(["-c", cfg, "cases", "--status", "closed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["-c", cfg, "cases", "--search", "printer tray"]) == 0
    table = capsys.readouterr().out
    assert "Printer jams on tray 2" in table and "toner" not in table

    assert main(["-c", cfg, "show", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    kinds = [e["kind"] for e in shown["history"]]
    assert kinds == ["customer_message", "notification"]
    sent_entry = shown["history"][1]["entry"]
    assert main(["-c", cfg, "show", "1", "--raw", str(sent_entry)]) == 0
    raw = capsys.readouterr().out
    # The entry's message is exactly the mail the smarthost received, byte for byte.
    (received,) = [m for _, _, m in sink.messages if b"Subject: [Case #00000001] Printer jams" in m]
    assert raw == received.decode()
    # And the customer's own mail, as it came in.
    assert main(["-c", cfg, "show", "1", "--raw", str(shown["history"][0]["entry"])]) == 0
    customer_mail = capsys.readouterr().out
    assert "Message-ID: <l0@customer.example>" in customer_mail and "Subject: Printer jams on tray 2" in customer_mail


async def test_reply_with_a_mangled_subject_lands_on_its_case_through_its_headers(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink))
    await send(d.smtp_port, make_mail("Login fails", "Cannot log in.\n", message_id="<m1@customer.example>"))
    await send(d.smtp_port, make_mail("Other problem", "Unrelated.\n", message_id="<m2@customer.example>"))
    acks = await sink.wait_for(2)
    first = next(a for a in acks if "Login fails" in a["Subject"])
    # Outlook-style rewrite: the tag is gone and the prefix is localised; only the headers remain.
    await send(d.smtp_port, make_mail("AW: Anmeldung geht nicht", "Still failing.\n",
                                      message_id="<m3@customer.example>", in_reply_to=first["Message-ID"]))
    # And one whose client dropped every header but kept our footer token in the quoted text.
    quoted = "\n".join("> " + line for line in first.get_body(("plain",)).get_content().splitlines())
    await send(d.smtp_port, make_mail("RE: your mail", f"Any news?\n\n{quoted}\n", message_id="<m4@customer.example>"))
    await d.settle()
    await d.shutdown()

    store = open_store(d.settings)
    with read_only(store.engine) as s:
        case = cases.get_case(s, 1)
        entries = {e.message_id: e for e in cases.history(s, case)}
        assert entries["m3@customer.example"].matched_by == "message-id"
        assert entries["m4@customer.example"].matched_by == "footer"
        assert entries["m4@customer.example"].text.strip() == "Any news?"
        assert cases.get_case(s, 3) is None
    store.engine.dispose()


async def test_stranger_with_only_a_case_number_does_not_get_in(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink))
    await send(d.smtp_port, make_mail("Invoice wrong", "Please fix.\n", message_id="<i1@customer.example>"))
    await sink.wait_for(1)
    await send(d.smtp_port, make_mail("Re: [Case #00000001] Invoice wrong", "I want in.\n",
                                      sender="Eve <eve@elsewhere.example>", message_id="<e1@elsewhere.example>"))
    msgs = await sink.wait_for(2)
    told = msgs[1]
    assert told["To"] == "eve@elsewhere.example"
    assert told["Subject"] == "[Case #00000002] Invoice wrong"
    assert "00000001, which you are not part of" in told.get_body(("plain",)).get_content()
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        assert [e.message_id for e in cases.history(s, cases.get_case(s, 1)) if e.kind == "customer_message"] == [
            "i1@customer.example"]
        assert cases.get_case(s, 2).requester.address == "eve@elsewhere.example"
    store.engine.dispose()
