# SPDX-License-Identifier: GPL-3.0-or-later
"""parse(): small inline messages covering each rule, and hostile input."""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import datetime, timezone

import mailparser
import pytest

from intake.headers import Address
from intake.parse import ParsedMail, parse


def mail(text: str) -> bytes:
    """Inline test messages are written with LF and ASCII; bytes go in as escapes."""
    return text.lstrip("\n").encode("utf-8", "surrogateescape")


PLAIN = mail("""
From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen.Mueller@Example.COM>
Sender: Bot <bot@example.org>
To: support@example.com, "Doe, Jane" <jane@EXAMPLE.com>
Cc: undisclosed-recipients:;
Reply-To: replies@example.com
Subject: =?iso-8859-1?Q?Gr=FC=DFe?= aus
 =?utf-8?B?S8O2bG4=?= [Case #00000042]
Message-ID:  <abc.123@mail.example.com>
In-Reply-To: <parent@example.com>
References: <root@example.com>
 <parent@example.com>
Date: Thu, 3 May 2012 11:36:43 +0200
X-Repeated: one
X-Repeated: two

Hello
""")


def test_headers_and_addresses() -> None:
    parsed = parse(PLAIN)
    assert parsed.subject == "Grüße aus Köln [Case #00000042]"
    assert parsed.from_ == Address("Jürgen Müller", "Juergen.Mueller@example.com")
    assert parsed.sender == Address("Bot", "bot@example.org")
    assert parsed.to == (Address("", "support@example.com"), Address("Doe, Jane", "jane@example.com"))
    assert parsed.cc == ()
    assert parsed.reply_to == (Address("", "replies@example.com"),)
    assert parsed.message_id == "abc.123@mail.example.com"
    assert parsed.in_reply_to == ("parent@example.com",)
    assert parsed.references == ("root@example.com", "parent@example.com")
    assert parsed.date == datetime(2012, 5, 3, 9, 36, 43, tzinfo=timezone.utc)
    assert parsed.headers["x-repeated"] == ("one", "two")
    assert parsed.headers["subject"] == (parsed.subject,)
    assert parsed.content_type == "text/plain"
    assert parsed.text == "Hello\n"
    assert parsed.html is None
    assert parsed.attachments == ()
    with pytest.raises(TypeError):
        parsed.headers["x-new"] = ("no",)  # type: ignore[index]


@pytest.mark.parametrize(
    ("header_block", "field", "expected"),
    [
        ("Subject: plain", "subject", "plain"),
        ("Subject: =?utf-8?B?5pel5pys?= =?utf-8?B?6Kqe?=", "subject", "日本語"),
        ("Subject: =?utf-8?Q?split_=E6=97?= =?utf-8?Q?=A5?=", "subject", "split 日"),
        ("Subject: a\n\tfolded\n line", "subject", "a\tfolded line"),
        ("Subject: =?x-unknown?Q?caf=C3=A9?=", "subject", "café"),
        ("Subject: =?utf\x00-8?q?caf=C3=A9?=", "subject", "café"),
        ("Subject: =?utf-8?q?nul=00byte?=", "subject", "nulbyte"),
        ("Subject: raw caf\udcc3\udca9", "subject", "raw café"),
        ("Subject: =?utf-8?B?!!!?= kept", "subject", "=?utf-8?B?!!!?= kept"),
        ("Message-ID: <  spaced@id  >", "message_id", "spaced@id"),
        ("Message-ID:    ", "message_id", None),
        ("In-Reply-To: a@b.c, d@e.f", "in_reply_to", ("a@b.c", "d@e.f")),
        ("References: <x@y> garbage <x@y>", "references", ("x@y",)),
        ("Date: Thu, 31 Feb 2012 25:00 +0100", "date", None),
        ("Date: 1 Jan 2020 10:00:00 -0000", "date", datetime(2020, 1, 1, 10, tzinfo=timezone.utc)),
        ("From: tim@example.com concierge@example.com", "from_", Address("", "tim@example.com")),
        ("From: MAILER DAEMON <>", "from_", Address("MAILER DAEMON", "")),
        ("From: =?utf\x00-8?q?X?= <a@b.c>", "from_", Address("X", "a@b.c")),
    ],
)
def test_header_fields(header_block: str, field: str, expected: object) -> None:
    parsed = parse(mail(f"{header_block}\n\nbody\n"))
    assert getattr(parsed, field) == expected


def test_nul_in_encoded_word_charset_crashes_mailparser_but_not_parse() -> None:
    raw = mail("From: a@b.c\nSubject: =?utf\x00-8?q?caf=C3=A9?=\n\nhi\n")
    logging.disable(logging.CRITICAL)
    try:
        with pytest.raises(ValueError):
            mailparser.parse_from_bytes(raw)
    finally:
        logging.disable(logging.NOTSET)
    parsed = parse(raw)
    assert parsed.subject == "café"
    assert parsed.text == "hi\n"
    assert any("unknown charset" in d for d in parsed.defects)


NESTED = mail("""
From: a@example.com
Subject: nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Plain caf=C3=A9
--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<p>HTML <img src="cid:logo@x"></p>
--rel
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==
--rel--
--alt--
--outer
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==
--outer
Content-Type: text/plain
Content-Disposition: attachment; filename="report.pdf"

a second file with the same name
--outer
Content-Type: text/plain

trailing text part
--outer--
""")


def test_nested_multipart_bodies_and_files() -> None:
    parsed = parse(NESTED)
    assert parsed.content_type == "multipart/mixed"
    assert parsed.text == "Plain café"
    assert parsed.html == '<p>HTML <img src="cid:logo@x"></p>'
    by_name = {a.filename: a for a in parsed.attachments}
    assert list(by_name) == ["image-1.png", "report.pdf", "report (2).pdf", "attachment-4.txt"]
    image = by_name["image-1.png"]
    assert (image.content_id, image.inline, image.declared_type, image.sniffed_type) == (
        "logo@x",
        True,
        "image/png",
        "image/png",
    )
    pdf = by_name["report.pdf"]
    assert pdf.content.startswith(b"%PDF-1.4")
    assert (pdf.inline, pdf.sniffed_type, pdf.size) == (False, "application/pdf", len(pdf.content))
    assert pdf.sha256 == hashlib.sha256(pdf.content).hexdigest()
    assert by_name["attachment-4.txt"].content == b"trailing text part"


FORWARDED = mail("""
From: a@example.com
Subject: Fwd: see below
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

My own words.
--b
Content-Type: message/rfc822

From: original@example.com
Subject: =?utf-8?q?Original/../_subj=C3=A9ct?=
Content-Type: text/plain

SECRET FORWARDED TEXT
--b--
""")


def test_forwarded_message_is_an_eml_attachment_not_body() -> None:
    parsed = parse(FORWARDED)
    assert parsed.text == "My own words."
    assert "SECRET" not in (parsed.text or "")
    (eml,) = parsed.attachments
    assert eml.filename == "Original_.._ subjéct.eml"  # named after its subject, made safe
    assert eml.declared_type == "message/rfc822"
    assert eml.content.startswith(b"From: original@example.com\n")
    assert b"SECRET FORWARDED TEXT" in eml.content
    assert eml.content in FORWARDED  # the bytes as sent, headers not refolded


def test_binary_bytes_round_trip() -> None:
    blob = bytes(range(256)) * 40
    encoded = base64.encodebytes(blob).decode("ascii")
    raw = mail(
        "From: a@b.c\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee file\n"
        "--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=all.bin\n"
        f"Content-Transfer-Encoding: base64\n\n{encoded}--b--\n"
    )
    (attachment,) = parse(raw).attachments
    assert attachment.content == blob
    assert attachment.size == len(blob)
    assert attachment.sha256 == hashlib.sha256(blob).hexdigest()


@pytest.mark.parametrize(
    ("disposition_params", "expected"),
    [
        ("filename*=UTF-8''%E2%82%AC%20rates.pdf", "€ rates.pdf"),
        ("filename*0*=UTF-8''Gr%C3%BC; filename*1*=%C3%9Fe.pdf", "Grüße.pdf"),
        ('filename="=?utf-8?B?w6lsw6h2ZS5wZGY=?="', "élève.pdf"),
        ('filename="../../../etc/passwd"', "passwd"),
        ('filename="CON.pdf"', "_CON.pdf"),
        ('filename="invoice\u202efdp.exe"', "invoicefdp.exe"),
        ("filename=", "attachment-1.pdf"),
    ],
)
def test_attachment_names(disposition_params: str, expected: str) -> None:
    raw = mail(
        "From: a@b.c\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n"
        f"--b\nContent-Type: application/pdf\nContent-Disposition: attachment; {disposition_params}\n\n%PDF-1.4\n--b--\n"
    )
    (attachment,) = parse(raw).attachments
    assert attachment.filename == expected


@pytest.mark.parametrize(
    ("raw", "text", "defect"),
    [
        # No Content-Type at all: text/plain, us-ascii by default; UTF-8 bytes still decode.
        (mail("Subject: x\n\ncaf\udcc3\udca9\n"), "café\n", None),
        # Unknown charset.
        (mail("Content-Type: text/plain; charset=x-unknown\n\ncaf\udcc3\udca9\n"), "café\n", "unknown charset x-unknown"),
        # Declared UTF-8 but sent as Latin-1 (common): the last resort is windows-1252.
        (mail("Content-Type: text/plain; charset=utf-8\n\ncaf\udce9\n"), "café\n", "undecodable"),
        # Declared Shift_JIS, bytes fit neither it nor UTF-8: decoded with replacement.
        (mail("Content-Type: text/plain; charset=shift_jis\n\nab\udc81\n"), "ab\ufffd\n", "replacement"),
        # Mangled ISO-2022-JP label (as sent by a real spammer).
        (mail("Content-Type: text/plain; charset=_iso-2022-jp$ESC\n\nhello\n"), "hello\n", "unknown charset"),
        # A binary codec is not a charset.
        (mail("Content-Type: text/plain; charset=base64\n\naGVsbG8=\n"), "aGVsbG8=\n", "unknown charset base64"),
        # Latin-1 labels decode as windows-1252, as browsers do.
        (mail("Content-Type: text/plain; charset=iso-8859-1\n\n\udc80 \udce9\n"), "€ é\n", None),
        # CRLF becomes LF; NUL is dropped (PostgreSQL text cannot store it).
        # (Past the first 8 KiB, where NUL does not make the part a binary file.)
        (b"Content-Type: text/plain\r\n\r\nline\r\nnext\r\n" + b"x" * 9000 + b"\x00", None, None),
    ],
)
def test_charsets(raw: bytes, text: str | None, defect: str | None) -> None:
    parsed = parse(raw)
    if text is not None:
        assert parsed.text == text
    else:
        assert parsed.text is not None and parsed.text.startswith("line\nnext\n")
        assert "NUL characters removed from a text body" in parsed.defects
    if defect is not None:
        assert any(defect in d for d in parsed.defects), parsed.defects


@pytest.mark.parametrize(
    ("raw", "text", "defect"),
    [
        # multipart without a boundary parameter: kept as text, recorded.
        (
            mail("Content-Type: multipart/mixed\n\njust some text\n"),
            "just some text\n",
            "NoBoundaryInMultipartDefect",
        ),
        # The declared boundary never appears: the stdlib leaves the body as text.
        (
            mail('Content-Type: multipart/alternative; boundary="nope"\n\nonly text here\n'),
            "only text here\n",
            "StartBoundaryNotFoundDefect",
        ),
        # The boundary is wrong but the body shows the real one: parts are recovered.
        (
            mail(
                'Content-Type: multipart/alternative; boundary="wrong"\n\n'
                "--real\nContent-Type: text/plain\n\nrecovered body\n--real\n"
                "Content-Type: text/html\n\n<b>x</b>\n--real--\n"
            ),
            "recovered body",
            "multipart boundary recovered from the body",
        ),
    ],
)
def test_broken_boundaries(raw: bytes, text: str, defect: str) -> None:
    parsed = parse(raw)
    assert parsed.text == text
    assert defect in parsed.defects


def test_recovered_parts_include_html() -> None:
    raw = mail(
        'Content-Type: multipart/alternative; boundary="wrong"\n\n'
        "--real\nContent-Type: text/plain\n\nrecovered body\n--real\n"
        "Content-Type: text/html\n\n<b>x</b>\n--real--\n"
    )
    assert parse(raw).html == "<b>x</b>"


def test_inline_disposition_and_named_text_part() -> None:
    raw = mail(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nbody\n"
        "--b\nContent-Type: text/plain; name=notes.txt\nContent-Disposition: inline; filename=notes.txt\n\nfile\n"
        "--b\nContent-Type: image/gif\nContent-Disposition: inline\nContent-Transfer-Encoding: base64\n\n"
        "R0lGODlhAQABAAAAACw=\n--b--\n"
    )
    parsed = parse(raw)
    assert parsed.text == "body"
    assert [(a.filename, a.inline, a.content_id) for a in parsed.attachments] == [
        ("notes.txt", True, None),
        ("image-2.gif", True, None),
    ]


def test_text_inside_attached_container_is_not_body() -> None:
    raw = mail(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        "Content-Type: multipart/alternative; boundary=c\nContent-Disposition: attachment\n\n"
        "--c\nContent-Type: text/plain\n\nnot the body\n--c--\n--b--\n"
    )
    parsed = parse(raw)
    assert parsed.text is None
    assert [a.content for a in parsed.attachments] == [b"not the body"]


def test_winmail_dat_that_is_not_tnef_is_kept() -> None:
    raw = mail(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n"
        "--b\nContent-Type: application/ms-tnef; name=winmail.dat\n\nnot really tnef\n--b--\n"
    )
    (attachment,) = parse(raw).attachments
    assert attachment.filename == "winmail.dat"
    assert attachment.content == b"not really tnef"


def test_headerless_binary_is_a_file_not_a_body() -> None:
    parsed = parse(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    assert parsed.text is None
    assert len(parsed.attachments) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00",
        b"\n\n\n",
        b"no headers at all",
        b"Content-Type: multipart/mixed; boundary=\x00\n\n--\x00\n\n",
        b"Content-Type: text/plain; charset=\"\x00\"\n\n\xff\xfe",
        b"Content-Transfer-Encoding: base64\n\n!!!not base64",
        b"Content-Transfer-Encoding: x-uuencode\n\nbegin 644 f\nbroken\n",
        b"Content-Type: message/rfc822\n\n",
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n--b--\n",
        b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(3000)),
        b"Subject: " + b"=?utf-8?q?" * 5000 + b"\n\nx",
        b"To: " + b"a@b.c, " * 5000 + b"\n\nx",
    ],
)
def test_hostile_input_never_raises(raw: bytes) -> None:
    parsed = parse(raw)
    assert isinstance(parsed, ParsedMail)
    assert all(isinstance(d, str) for d in parsed.defects)


def test_diagnostics_off_gives_same_content() -> None:
    with_mp, without = parse(NESTED), parse(NESTED, diagnostics=False)
    assert (with_mp.text, with_mp.html, with_mp.attachments) == (without.text, without.html, without.attachments)


def test_mail_parser_failure_while_summarising_headers_is_still_reported() -> None:
    # mail-parser raises ValueError decoding an encoded word whose charset holds a NUL; that
    # happens in the header summary that parse() still lets it build, so the note must remain.
    parsed = parse(b"Subject: =?a\x00b?q?x?=\nDate: not a date\n\nbody\n")
    assert "mail-parser failed: ValueError" in parsed.defects
    assert parsed.date is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Ann <ann@example.org>", (Address("Ann", "ann@example.org"),)),
        ("<ann\x01@example.org>", (Address("ann\x01@example.org", ""),)),  # control character
    ],
)
def test_addr_spec_junk_is_refused(value: str, expected: tuple[Address, ...]) -> None:
    assert parse(f"To: {value}\n\nhi\n".encode()).to == expected
