# SPDX-License-Identifier: GPL-3.0-or-later
"""intake.classify: one table row per rule, built from small inline messages."""

from __future__ import annotations

import email
import email.message
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake.classify import BounceReport, Classification, MailKind, classify

HUMAN_BODY = "Hello,\n\nmy printer stopped working after the update. Can you help?\n\nJane\n"


def mail(headers: str, body: str = HUMAN_BODY) -> email.message.Message:
    base = "From: Jane Doe <jane@example.com>\nTo: support@example.org\nMessage-ID: <a1@example.com>\n"
    return email.message_from_bytes((base + headers.strip("\n") + "\n\n" + body).encode("utf-8"))


def dsn(action: str, status: str, *, extra: str = "", sender: str = "MAILER-DAEMON@mx.example.net") -> str:
    return f"""From: Mail Delivery System <{sender}>
To: bounces@example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
{extra}
Original-Recipient: rfc822;Gone@Example.com
Final-Recipient: rfc822; gone@example.com
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected

--B
Content-Type: message/rfc822

From: support@example.org
To: gone@example.com
Subject: [Case #00000042] received
Message-ID: <case42.ack@example.org>

Thanks.
--B--
"""


def raw(text: str) -> email.message.Message:
    return email.message_from_bytes(text.encode("utf-8"))


EXIM_BOUNCE = """From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: bounces@example.org
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied
X-Failed-Recipients: gone@example.com

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  gone@example.com
    SMTP error from remote mail server after RCPT TO:<gone@example.com>:
    550 5.1.1 User unknown

------ This is a copy of the message, including all the headers. ------

Message-ID: <case7.note@example.org>
Subject: [Case #00000007] update
"""

QMAIL_BOUNCE = """From: MAILER-DAEMON@mx.example.net
To: bounces@example.org
Subject: failure notice

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<gone@example.com>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Message-ID: <q1@example.org>
"""

DELAY_TEXT = """From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>
To: bounces@example.org
Subject: Warning: could not send message for past 4 hours

    **********************************************
    **      THIS IS A WARNING MESSAGE ONLY      **
    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **
    **********************************************

The original message was received at Mon, 1 Jan 2024 10:00:00
----- Transcript of session follows -----
<slow@example.com>... Deferred: Connection timed out
Warning: message still undelivered after 4 hours
Will keep trying until message is 5 days old
"""

MDN = """From: Jane Doe <jane@example.com>
To: support@example.org
Subject: Read: [Case #00000042] received
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="M"

--M
Content-Type: text/plain

Your message was displayed.
--M
Content-Type: message/disposition-notification

Reporting-UA: jane.example.com; Thunderbird
Final-Recipient: rfc822;jane@example.com
Original-Message-ID: <case42.ack@example.org>
Disposition: manual-action/MDN-sent-manually; {disposition}
--M--
"""

ARF = """From: abuse@isp.example
To: support@example.org
Subject: FW: spam report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an abuse report.
--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
--F--
"""

HUMAN_FORWARDED_BOUNCE = """From: Jane Doe <jane@example.com>
To: support@example.org
Subject: Fwd: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: text/plain

Why do my mails to bob@example.net bounce?

---------- Forwarded message ---------
From: MAILER-DAEMON@mx.example.net
Subject: Undelivered Mail Returned to Sender

<bob@example.net>: host mx.example.net said: 550 5.1.1 User unknown
"""

HUMAN_CC_LIST = """From: "Ivette" <reservas@example.cu>
To: support@example.org
Cc: a@example.com, b@example.com, c@example.com, d@example.com
Subject: RE: booking 28169

Please book these rooms:
To: a@example.com, b@example.com
Cc: c@example.com
Date: Thu Feb 18 2016

Saludos
"""


@dataclass(frozen=True)
class Case:
    name: str
    msg: email.message.Message
    kind: MailKind
    mail_from: str | None = None
    loop_ids: frozenset[str] = frozenset()


CASES: list[Case] = [
    # People.
    Case("plain human", mail("Subject: printer broken"), MailKind.HUMAN),
    Case("human with envelope", mail("Subject: hi"), MailKind.HUMAN, mail_from="jane@example.com"),
    Case("Auto-Submitted: no is human", mail("Subject: x\nAuto-Submitted: no"), MailKind.HUMAN),
    Case("Auto-Submitted: No (case)", mail("Subject: x\nAuto-Submitted: No"), MailKind.HUMAN),
    Case("Precedence: first-class", mail("Subject: x\nPrecedence: first-class"), MailKind.HUMAN),
    Case("Precedence: normal", mail("Subject: x\nPrecedence: normal"), MailKind.HUMAN),
    Case("Precedence: urgent", mail("Subject: x\nPrecedence: urgent"), MailKind.HUMAN),
    Case("human CC list quoting To: lines", raw(HUMAN_CC_LIST), MailKind.HUMAN),
    Case("human forwards a bounce", raw(HUMAN_FORWARDED_BOUNCE), MailKind.HUMAN, mail_from="jane@example.com"),
    Case("subject alone: Automatic reply", mail("Subject: Automatic reply: your question"), MailKind.HUMAN),
    Case("subject alone: Out of Office", mail("Subject: Out of Office question"), MailKind.HUMAN),
    Case("subject alone: Undeliverable", mail("Subject: Undeliverable parcel"), MailKind.HUMAN),
    Case("subject alone: Returned mail", mail("Subject: Returned mail problem"), MailKind.HUMAN),
    Case("subject alone: Delivery failure", mail("Subject: Delivery failure of order 123"), MailKind.HUMAN),
    Case("postmaster writes as a person", mail("Subject: your SPF\nFrom: postmaster@example.net"), MailKind.HUMAN),
    Case("noreply web form with Reply-To", mail("Subject: Contact form\nSender: noreply@shop.example\nReply-To: c@example.com"), MailKind.HUMAN),
    Case("Exchange rule-forwarded mail", mail("Subject: printer\nX-MS-Exchange-Inbox-Rules-Loop: jane@example.com"), MailKind.HUMAN),
    Case("X-Auto-Response-Suppress: DR only", mail("Subject: x\nX-Auto-Response-Suppress: DR, RN"), MailKind.HUMAN),
    Case("X-Autoreply: no", mail("Subject: x\nX-Autoreply: no"), MailKind.HUMAN),
    Case("other loop id", mail("Subject: x\nX-Casemail-Loop: someone-else"), MailKind.HUMAN, loop_ids=frozenset({"ours"})),
    Case("empty Auto-Submitted", mail("Subject: x\nAuto-Submitted: "), MailKind.HUMAN),
    # RFC 3834.
    Case("Auto-Submitted: auto-replied", mail("Subject: x\nAuto-Submitted: auto-replied"), MailKind.AUTO_REPLY),
    Case("auto-replied with comment", mail("Subject: x\nAuto-Submitted: auto-replied (vacation)"), MailKind.AUTO_REPLY),
    Case("Auto-Submitted upper case", mail("Subject: x\nAuto-Submitted: AUTO-REPLIED"), MailKind.AUTO_REPLY),
    Case("Auto-Submitted: auto-generated", mail("Subject: x\nAuto-Submitted: auto-generated"), MailKind.AUTO_GENERATED),
    Case("Auto-Submitted: auto-notified", mail("Subject: x\nAuto-Submitted: auto-notified"), MailKind.AUTO_GENERATED),
    Case("Auto-Submitted: unknown extension", mail("Subject: x\nAuto-Submitted: auto-forwarded"), MailKind.AUTO_GENERATED),
    Case("auto-replied with null sender", mail("Subject: x\nReturn-Path: <>\nAuto-Submitted: auto-replied"), MailKind.AUTO_REPLY, mail_from=""),
    # Vendor auto-reply headers.
    Case("X-Autoreply", mail("Subject: x\nX-Autoreply: yes"), MailKind.AUTO_REPLY),
    Case("X-Autorespond", mail("Subject: x\nX-Autorespond: on"), MailKind.AUTO_REPLY),
    Case("X-Autoresponder", mail("Subject: x\nX-Autoresponder: 1"), MailKind.AUTO_REPLY),
    Case("X-AutoReply-From", mail("Subject: x\nX-AutoReply-From: jane@example.com"), MailKind.AUTO_REPLY),
    Case("X-Mail-Autoreply", mail("Subject: x\nX-Mail-Autoreply: yes"), MailKind.AUTO_REPLY),
    Case("X-Autogenerated: Reply", mail("Subject: x\nX-Autogenerated: Reply"), MailKind.AUTO_REPLY),
    Case("X-Autogenerated: other", mail("Subject: x\nX-Autogenerated: Forward"), MailKind.HUMAN),
    Case("Precedence: auto_reply", mail("Subject: x\nPrecedence: auto_reply"), MailKind.AUTO_REPLY),
    Case("Apple vacation", mail("Subject: Auto reply: x\nX-Apple-Action: VACATION"), MailKind.AUTO_REPLY),
    Case("Exchange OOF: subject + rules loop", mail("Subject: Automatic reply: x\nX-MS-Exchange-Inbox-Rules-Loop: jane@example.com"), MailKind.AUTO_REPLY),
    Case("German OOF with null sender", mail("Subject: Abwesenheitsnotiz: x\nReturn-Path: <>"), MailKind.AUTO_REPLY, mail_from=""),
    Case("French OOF with suppress header", mail("Subject: Réponse automatique : x\nX-Auto-Response-Suppress: All"), MailKind.AUTO_REPLY),
    Case("Out of Office with Precedence bulk", mail("Subject: Out of Office: x\nPrecedence: bulk"), MailKind.AUTO_REPLY),
    Case("X-Auto-Response-Suppress: All", mail("Subject: x\nX-Auto-Response-Suppress: All"), MailKind.AUTO_GENERATED),
    Case("X-Auto-Response-Suppress: OOF", mail("Subject: x\nX-Auto-Response-Suppress: DR, OOF"), MailKind.AUTO_GENERATED),
    # Precedence and lists.
    Case("Precedence: bulk", mail("Subject: x\nPrecedence: bulk"), MailKind.AUTO_GENERATED),
    Case("Precedence: junk", mail("Subject: x\nPrecedence: junk"), MailKind.AUTO_GENERATED),
    Case("Precedence: list", mail("Subject: x\nPrecedence: list"), MailKind.LIST),
    Case("List-Id", mail("Subject: x\nList-Id: Users <users.lists.example.com>"), MailKind.LIST),
    Case("List-Unsubscribe", mail("Subject: x\nList-Unsubscribe: <mailto:u@example.com>"), MailKind.LIST),
    Case("List-Post", mail("Subject: x\nList-Post: <mailto:users@example.com>"), MailKind.LIST),
    Case("list post with Precedence bulk", mail("Subject: x\nList-Id: <l.example>\nPrecedence: bulk"), MailKind.LIST),
    # Our own loop.
    Case("own loop mark", mail("Subject: x\nX-Casemail-Loop: ours"), MailKind.OWN_LOOP, loop_ids=frozenset({"ours"})),
    Case("own loop beats human look", mail("Subject: Re: case\nX-Casemail-Loop: a, ours"), MailKind.OWN_LOOP, loop_ids=frozenset({"ours"})),
    # Null sender and daemons.
    Case("null sender alone", mail("Subject: hello"), MailKind.AUTO_GENERATED, mail_from=""),
    Case("Return-Path <> alone", mail("Subject: hello\nReturn-Path: <>"), MailKind.AUTO_GENERATED),
    Case("mailer-daemon notice", mail("Subject: note\nFrom: MAILER-DAEMON@mx.example.net", "Info."), MailKind.AUTO_GENERATED),
    # RFC 3464 DSNs.
    Case("DSN failed", raw(dsn("failed", "5.1.1")), MailKind.BOUNCE, mail_from=""),
    Case("DSN delayed", raw(dsn("delayed", "4.4.1")), MailKind.DELAY, mail_from=""),
    Case("DSN status only 5.x", raw(dsn("", "5.2.2")), MailKind.BOUNCE),
    Case("DSN delivered", raw(dsn("delivered", "2.0.0")), MailKind.AUTO_GENERATED, mail_from=""),
    Case("DSN from a human-looking From", raw(dsn("failed", "5.1.1", sender="admin@example.net")), MailKind.BOUNCE),
    # Non-standard bounces.
    Case("Exim bounce", raw(EXIM_BOUNCE), MailKind.BOUNCE, mail_from=""),
    Case("qmail bounce", raw(QMAIL_BOUNCE), MailKind.BOUNCE),
    Case("sendmail delay warning", raw(DELAY_TEXT), MailKind.DELAY, mail_from=""),
    # MDN and ARF.
    Case("read receipt", raw(MDN.format(disposition="displayed")), MailKind.AUTO_GENERATED, mail_from=""),
    Case("MDN deleted is a refusal", raw(MDN.format(disposition="deleted")), MailKind.BOUNCE, mail_from=""),
    Case("feedback report", raw(ARF), MailKind.FEEDBACK_REPORT),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kind(case: Case) -> None:
    result = classify(case.msg, mail_from=case.mail_from, loop_ids=case.loop_ids)
    assert result.kind is case.kind, result.reasons
    assert result.is_automatic is (case.kind is not MailKind.HUMAN)
    if case.kind is not MailKind.HUMAN:
        assert result.reasons, "an automatic verdict must say why"


def test_dsn_report_details() -> None:
    result = classify(raw(dsn("failed", "5.1.1")), mail_from="")
    assert result.bounce == BounceReport(
        permanent=True,
        recipients=("gone@example.com",),
        original_message_ids=("case42.ack@example.org",),
        diagnostic="smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected",
    )


def test_dsn_original_message_id_field() -> None:
    result = classify(raw(dsn("failed", "5.1.1", extra="Original-Message-ID: <sent.1@example.org>")), mail_from="")
    assert result.bounce is not None
    assert result.bounce.original_message_ids[0] == "sent.1@example.org"


def test_delay_report_is_temporary() -> None:
    result = classify(raw(dsn("delayed", "4.4.1")), mail_from="")
    assert result.bounce is not None and result.bounce.permanent is False
    assert result.bounce.recipients == ("gone@example.com",)


def test_exim_bounce_details() -> None:
    result = classify(raw(EXIM_BOUNCE), mail_from="")
    assert result.bounce is not None and result.bounce.permanent
    assert result.bounce.recipients == ("gone@example.com",)
    assert result.bounce.original_message_ids == ("case7.note@example.org",)


def test_qmail_recipient_from_flufl() -> None:
    result = classify(raw(QMAIL_BOUNCE), mail_from=None)
    assert result.bounce is not None and result.bounce.recipients == ("gone@example.com",)


def test_diagnostic_is_bounded() -> None:
    long = "x" * 2000
    result = classify(raw(dsn("failed", "5.1.1").replace("Recipient address rejected", long)), mail_from="")
    assert result.bounce is not None and result.bounce.diagnostic is not None
    assert len(result.bounce.diagnostic) == 500


def test_mdn_refusal_names_original() -> None:
    result = classify(raw(MDN.format(disposition="deleted")), mail_from="")
    assert result.bounce is not None
    assert result.bounce.recipients == ("jane@example.com",)
    assert result.bounce.original_message_ids == ("case42.ack@example.org",)


def test_encoded_header_values() -> None:
    msg = mail("Subject: =?utf-8?q?Automatische_Antwort=3A_x?=\nReturn-Path: <>")
    assert classify(msg, mail_from="").kind is MailKind.AUTO_REPLY


def test_header_objects_and_bad_charsets() -> None:
    msg = mail("Subject: =?x-unknown?q?abc?=")
    msg["X-Autoreply"] = email.header.Header("yes", "utf-8")
    assert classify(msg, mail_from=None).kind is MailKind.AUTO_REPLY


def test_classification_is_frozen() -> None:
    result = Classification(MailKind.HUMAN, ())
    with pytest.raises(AttributeError):
        result.kind = MailKind.BOUNCE  # type: ignore[misc]


_PIECES = [
    "From: MAILER-DAEMON@x\n", "Return-Path: <>\n", "Auto-Submitted: auto-replied\n", "Precedence: bulk\n",
    "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n",
    "Content-Type: message/delivery-status\n", "--B\n", "--B--\n", "Action: failed\n", "Final-Recipient: rfc822;\n",
    "Subject: =?bogus?b?////?=\n", "Content-Type: multipart/mixed\n", "Status: 5\n", "\n", "\x00", "\xff",
    "Content-Transfer-Encoding: base64\n", "Message-ID: <\n", "Content-Type: text/plain; charset=x-unknown\n",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_PIECES) | st.text(max_size=40), max_size=30),
    st.sampled_from([None, "", "x@example.com"]),
)
def test_never_raises(pieces: list[str], mail_from: str | None) -> None:
    msg = email.message_from_bytes("".join(pieces).encode("utf-8", "surrogateescape"))
    result = classify(msg, mail_from=mail_from)
    assert isinstance(result.kind, MailKind)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_never_raises_on_mutated_dsn(noise: bytes) -> None:
    base = dsn("failed", "5.1.1").encode()
    cut = len(noise) % len(base)
    msg = email.message_from_bytes(base[:cut] + noise + base[cut:])
    assert isinstance(classify(msg, mail_from="").kind, MailKind)
