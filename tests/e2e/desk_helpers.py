# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the desk-by-mail tests: staff mail with a trusted Authentication-Results, and waiting."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from store.codes import Signer
from tests.e2e.test_case_flow import make_mail, send

STAFF = {"addresses": ["agent@staff.example", "bob@staff.example"], "trusted_authserv_ids": ["mx.casemail.test"]}
AUTH = "mx.casemail.test; dkim=pass header.d=staff.example; spf=pass smtp.mailfrom={addr}"
SIGNER = Signer(b"test-key-0123456789abcdef")
JANE = "jane@customer.example"
AGENT = "agent@staff.example"


def staff_mail(subject: str, body: str, *, in_reply_to: str | None = None, message_id: str,
               sender: str = "Alice Agent <agent@staff.example>", to: str = "support@example.com",
               attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    m = make_mail(subject, body, sender=sender, to=to, message_id=message_id, in_reply_to=in_reply_to,
                  attachment=attachment)
    addr = sender.rpartition("<")[2].rstrip(">")
    m["Authentication-Results"] = AUTH.format(addr=addr)
    return m


async def quiet(d: Any, timeout: float = 15.0) -> None:
    """Wait until every accepted mail is processed and every queued mail is sent (no failures expected)."""
    await d.settle(timeout, until_sent=True)


async def exchange(d: Any, sink: Any, msg: EmailMessage, rcpt: list[str] | None = None) -> list[EmailMessage]:
    """Send one mail and return the mails it caused."""
    await quiet(d)
    before = len(sink.messages)
    await send(d.smtp_port, msg, rcpt)
    await quiet(d)
    return sink.parsed()[before:]


async def open_case(d: Any, sink: Any, subject: str = "Broken export", n: int = 1) -> tuple[EmailMessage, EmailMessage]:
    """A customer opens a case; return the acknowledgement and the staff notification."""
    out = await exchange(d, sink, make_mail(subject, "Export fails.\n", message_id=f"<c{n}@customer.example>"))
    ack = next(m for m in out if m["To"] == JANE)
    staff = next(m for m in out if AGENT in m["To"])
    return ack, staff


def to(msgs: list[EmailMessage], address: str) -> list[EmailMessage]:
    return [m for m in msgs if address in [a.strip() for a in str(m["To"]).split(",")]]


def text(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
