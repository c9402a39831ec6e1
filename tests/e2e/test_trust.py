# SPDX-License-Identifier: GPL-3.0-or-later
"""Trust and loops over real SMTP: robots are never answered, strangers and spoofed staff never get in."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import undefer

from casemail.app import open_store
from store import cases
from store.db import read_only
from store.models import Contact, Inbound, Outbox
from tests.e2e.conftest import smarthost
from tests.e2e.test_case_flow import make_mail, send

STAFF = {"addresses": ["agent@staff.example"], "trusted_authserv_ids": ["mx.casemail.test"]}


async def send_raw(port: int, raw: bytes, mail_from: str = "") -> None:
    def _send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail(mail_from, ["support@example.com"], raw)

    await asyncio.to_thread(_send)


def staff_reply(ack: EmailMessage, body: str, auth_results: str | None) -> EmailMessage:
    m = make_mail(f"Re: {ack['Subject']}", body, sender="Alice Agent <agent@staff.example>",
                  message_id="<staff1@staff.example>", in_reply_to=ack["Message-ID"])
    if auth_results:
        m["Authentication-Results"] = auth_results
    return m


async def test_authenticated_staff_reply_reaches_the_customer_without_the_staff_address(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    await send(d.smtp_port, make_mail("Broken export", "Export fails.\n", message_id="<c1@customer.example>"))
    msgs = await sink.wait_for(2)  # the acknowledgement and the staff notification
    ack = next(m for m in msgs if m["To"] == "jane@customer.example")
    staff_mail = next(m for m in msgs if m["To"] == "agent@staff.example")
    assert "Export fails." in staff_mail.get_body(("plain",)).get_content()

    await send(d.smtp_port, staff_reply(
        staff_mail, "Please try version 2.1.\n",
        "mx.casemail.test; dkim=pass header.d=staff.example; spf=pass smtp.mailfrom=agent@staff.example"))
    msgs = await sink.wait_for(3)
    reply = msgs[2]
    assert reply["To"] == "jane@customer.example"
    assert "agent@staff.example" not in reply.as_string()
    assert reply["From"] == "Alice Agent via Example Support <support@example.com>"
    assert "Please try version 2.1." in reply.get_body(("plain",)).get_content()
    assert ack["Message-ID"] in reply["References"]


async def test_spoofed_staff_mail_is_handled_as_a_customer_mail_and_flagged(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    await send(d.smtp_port, make_mail("Broken export", "Export fails.\n", message_id="<c1@customer.example>"))
    msgs = await sink.wait_for(2)
    ack = next(m for m in msgs if m["To"] == "jane@customer.example")
    # No Authentication-Results at all, then one stamped by a server we do not trust.
    for i, results in enumerate([None, "evil.example; dkim=pass header.d=staff.example"]):
        m = make_mail("Re: [Case #00000001] Broken export", "Closing this, all fine.\n",
                      sender="agent@staff.example", message_id=f"<spoof{i}@staff.example>")
        if results:
            m["Authentication-Results"] = results
        await send(d.smtp_port, m)
    await d.settle()
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        case = cases.get_case(s, 1)
        assert all(e.kind != "staff_reply" for e in cases.history(s, case))
        for i in range(2):
            row = s.scalar(select(Inbound).where(Inbound.message_id == f"spoof{i}@staff.example"))
            assert row.case_id != case.id  # not written into the customer's case
            entry = next(e for e in cases.history(s, s.get(type(case), row.case_id)) if e.inbound_id == row.id)
            assert entry.kind == "customer_message" and entry.details["unauthenticated_staff_address"] is True
        sent_to = [r for o in s.scalars(select(Outbox)) for r in o.recipients]
        assert sent_to.count("jane@customer.example") == 1  # only the first acknowledgement
    store.engine.dispose()
    assert ack is not None


def auto_reply(to_msg: EmailMessage, *, headers: bool, n: int) -> bytes:
    m = EmailMessage()
    m["From"] = "Jane Doe <jane@customer.example>"
    m["To"] = "support@example.com"
    m["Subject"] = f"Out of office: {to_msg['Subject']}" if headers else f"Thanks for your mail {n}"
    m["Message-ID"] = f"<ooo{n}@customer.example>"
    if headers:
        m["In-Reply-To"] = to_msg["Message-ID"]
        m["Auto-Submitted"] = "auto-replied"
    m.set_content("I am away until Monday.\n")
    return m.as_bytes()


async def test_out_of_office_reply_to_an_acknowledgement_is_recorded_and_not_answered(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink))
    await send(d.smtp_port, make_mail("Slow site", "The site is slow.\n", message_id="<s1@customer.example>"))
    (ack,) = await sink.wait_for(1)
    # A vacation responder that answers every mail: each of our mails would get an answer, but we
    # send none back, so the exchange stops at once.
    for n in range(5):
        await send_raw(d.smtp_port, auto_reply(ack, headers=True, n=n), mail_from="")
    await d.settle()
    assert len(sink.messages) == 1
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        history = cases.history(s, cases.get_case(s, 1))
        events = [e for e in history if e.kind == "system_event"]
        assert len(events) == 5 and all(e.visibility == "internal" for e in events)
        assert cases.get_case(s, 2) is None
    store.engine.dispose()


async def test_a_responder_no_header_gives_away_is_stopped_by_the_rate_limit(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), limits={"new_cases_per_hour": 3})
    await send(d.smtp_port, make_mail("Question", "Hello?\n", message_id="<q0@customer.example>"))
    await sink.wait_for(1)
    # The responder writes a fresh mail, with a new subject and no threading headers, to every mail
    # it gets; the test plays it for 10 rounds.
    for n in range(10):
        before = len(sink.messages)
        await send_raw(d.smtp_port, auto_reply(sink.parsed()[-1], headers=False, n=n),
                       mail_from="jane@customer.example")
        await d.settle()
        if len(sink.messages) == before:
            break
    await d.settle()
    subjects = [m["Subject"] for m in sink.parsed()]
    acks = [s for s in subjects if s.startswith("[Case #")]
    assert len(acks) == 3
    assert subjects.count("Too many new cases: your mail was kept but not opened as a case") == 1
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        rows = s.scalars(select(Inbound).options(undefer(Inbound.raw))).all()
        held = [r for r in rows if r.outcome == "rejected"]
        assert held and all("rate limit" in r.reason for r in held)
        assert all(store.blobs.get_unless_inline(r.sha256, r.raw) for r in held)  # kept, not dropped
    store.engine.dispose()


def dsn_for(ack: EmailMessage, recipient: str) -> bytes:
    returned = "\r\n".join(f"{k}: {v}" for k, v in ack.items())
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n"
        "To: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        f"\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n"
        "\r\n--B--\r\n"
    ).encode()


async def test_a_bounce_of_our_acknowledgement_fails_it_and_stops_mail_to_the_address(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink))
    await send(d.smtp_port, make_mail("Typo address", "Hi\n", sender="ghost@customer.example",
                                      message_id="<g1@customer.example>"))
    (ack,) = await sink.wait_for(1)
    await send_raw(d.smtp_port, dsn_for(ack, "ghost@customer.example"), mail_from="")
    await d.settle()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        row = s.scalar(select(Outbox).where(Outbox.message_id == ack["Message-ID"]))
        assert row.state == "failed" and "user unknown" in row.last_error
        contact = s.scalar(select(Contact).where(Contact.address_key == "ghost@customer.example"))
        assert contact.bouncing
        history = cases.history(s, cases.get_case(s, 1))
        assert history[-1].kind == "system_event" and history[-1].matched_by == "message-id"
    # Closing the case would mail the requester; the address bounces, so nothing is sent.
    from casemail.cli import main
    from tests.e2e.test_case_flow import _write_config

    assert await asyncio.to_thread(main, ["-c", str(_write_config(d)), "close", "1"]) == 0
    await d.settle()
    assert len(sink.messages) == 1
    await d.shutdown()
    store.engine.dispose()


async def test_operator_lists_and_clears_a_bouncing_address(start_daemon, sink, capsys):
    d = await start_daemon(outbound=smarthost(sink))
    await send(d.smtp_port, make_mail("Hi", "Hi\n", sender="ghost@customer.example", message_id="<g2@customer.example>"))
    (ack,) = await sink.wait_for(1)
    await send_raw(d.smtp_port, dsn_for(ack, "ghost@customer.example"), mail_from="")
    await d.settle()
    await d.shutdown()
    import json

    from casemail.cli import main
    from tests.e2e.test_case_flow import _write_config

    cfg = str(_write_config(d))
    capsys.readouterr()
    assert main(["-c", cfg, "bounces", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["address"] == "ghost@customer.example" and "user unknown" in row["reason"]
    assert main(["-c", cfg, "clear-bounce", "GHOST@customer.example"]) == 0
    capsys.readouterr()
    assert main(["-c", cfg, "bounces", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["-c", cfg, "clear-bounce", "ghost@customer.example"]) == 66


async def test_attachments_past_the_limits_are_named_to_the_sender_and_dangerous_ones_flagged(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff={"addresses": ["agent@staff.example"]},
                           limits={"max_attachment_size": 1000})
    m = make_mail("Logs attached", "See attached.\n", message_id="<a1@customer.example>")
    m.add_attachment(b"x" * 5000, maintype="application", subtype="octet-stream", filename="huge.log")
    m.add_attachment(b"MZ\x90\x00" + b"\x00" * 100, maintype="application", subtype="octet-stream",
                     filename="tool.exe")
    await send(d.smtp_port, m)
    msgs = await sink.wait_for(2)
    ack = next(x for x in msgs if x["To"] == "jane@customer.example")
    staff = next(x for x in msgs if x["To"] == "agent@staff.example")
    ack_text = ack.get_body(("plain",)).get_content()
    assert "huge.log: larger than the" in ack_text and "tool.exe" not in ack_text
    assert "dangerous type: tool.exe" in staff.get_body(("plain",)).get_content()
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        (entry,) = [e for e in cases.history(s, cases.get_case(s, 1)) if e.kind == "customer_message"]
        assert [a.filename for a in entry.attachments] == ["tool.exe"]
        assert entry.details["dangerous_attachments"] == ["tool.exe"]
        assert entry.details["attachments_not_kept"][0]["filename"] == "huge.log"
    store.engine.dispose()


async def test_staff_mail_is_routed_by_product_and_severity(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff={
        "addresses": ["desk@staff.example"],
        "routes": [{"products": ["VPN Gateway"], "addresses": ["net@staff.example"]},
                   {"severities": [1], "addresses": ["oncall@staff.example"]}],
    })
    await send(d.smtp_port, make_mail("Tunnel drops", "Product: VPN Gateway\nIt drops.\n", message_id="<r1@c.example>"))
    await send(d.smtp_port, make_mail("Production Down: shop offline", "All down.\n", message_id="<r2@c.example>"))
    await send(d.smtp_port, make_mail("Question", "How do I export?\n", message_id="<r3@c.example>"))
    msgs = await sink.wait_for(6)
    staff_mail = {m["Subject"]: m["To"] for m in msgs if m["Subject"].startswith("[New case]")}
    assert staff_mail == {
        "[New case] [Case #00000001] Tunnel drops": "net@staff.example",
        "[New case] [Case #00000002] Production Down: shop offline": "oncall@staff.example",
        "[New case] [Case #00000003] Question": "desk@staff.example",
    }
