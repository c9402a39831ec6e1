# SPDX-License-Identifier: GPL-3.0-or-later
"""Deterministic, realistic support mails for the intake benchmark.

Two populations are made, both from a seed so that every run (and the casemail and ceiling servers
within one run) see exactly the same bytes:

- "small": first contacts and replies of about 10 KB, plain text or multipart/alternative with an
  HTML part, replies carrying a quoted earlier message and a signature;
- "mix": the same kinds of mail, most of them with attachments (PDF-like documents, screenshots,
  log files), sized so that the mean message is about 250 KB on the wire.

Every mail has its own Message-ID, sender and text, so casemail treats each as a new customer mail
rather than as a duplicate of one it already has. Only the standard library is used, so the generator
can be imported by anything that wants the same mails.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

SUPPORT_ADDRESS = "support@example.com"

# Enough vocabulary for text that looks like prose to the parser, the quote stripper and the
# signature detector, without shipping a corpus.
_WORDS = (
    "account invoice order payment refund login password reset error page server upload download "
    "export import report dashboard settings profile email address delivery shipping tracking number "
    "subscription plan upgrade downgrade cancel renew license key activation device browser mobile "
    "app version update crash slow timeout connection network printer screenshot attached file "
    "customer team manager colleague yesterday today morning afternoon week month since after before "
    "again still cannot could would should please thanks help issue problem question urgent soon the "
    "a an and or but with without from into over under about because when while if then that this "
    "we you they it is was were be been have has had do does did not no yes all some any every"
).split()
_FIRST = ("Anna", "Ben", "Carla", "David", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal",
          "Lena", "Marco", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tanja", "Umar", "Vera")
_LAST = ("Adler", "Berger", "Costa", "Dubois", "Eriksson", "Fischer", "Garcia", "Hoffmann", "Ivanova",
         "Jansen", "Kowalski", "Lopez", "Meyer", "Novak", "Okafor", "Petrov", "Rossi", "Schmidt")
_DOMAINS = ("example.org", "example.net", "customer.test", "shop.example", "mail.example")
_TOPICS = ("Cannot log in", "Invoice is wrong", "Refund for order", "Export fails", "App crashes",
           "Password reset not arriving", "Question about my plan", "Delivery is late",
           "Upload stuck at 99%", "Printer driver", "Licence key invalid", "Slow dashboard")
_CLIENTS = ("Mozilla Thunderbird 115.6", "Microsoft Outlook 16.0", "Apple Mail (2.3774)", "K-9 Mail",
            None)

# Attachment kinds: (content type, file extension, whether the content is text). Text attachments
# (logs) are encoded quoted-printable-like as 7bit lines; the rest are base64 like real clients do.
_ATTACHMENTS = (
    ("application/pdf", "pdf", False),
    ("image/png", "png", False),
    ("image/jpeg", "jpg", False),
    ("text/plain", "log", True),
)

# The mix: the chance that a mail has attachments, and the mean raw (pre-base64) size of one
# attachment. With on average 1.6 attachments per such mail and base64's 4/3 growth, this gives a
# mean message of about 250 KB; the benchmark prints the measured mean.
_MIX_ATTACHMENT_CHANCE = 0.7
_MIX_ATTACHMENT_MEAN = 165_000
_MIX_ATTACHMENT_MAX = 4_000_000


@dataclass(frozen=True)
class Mail:
    """One message as an SMTP client sends it: envelope and CRLF-terminated bytes (not dot-stuffed)."""

    mail_from: str
    rcpt_to: str
    data: bytes


def generate(kind: str, count: int, *, seed: int = 1, start: int = 0) -> list[Mail]:
    """count mails of the given kind ("small" or "mix"); start offsets the numbering.

    The same (kind, seed, start, count) always gives the same bytes. Different start values give
    different mails, so several batches can go into one daemon without being duplicates.
    """
    return list(iter_mails(kind, count, seed=seed, start=start))


def iter_mails(kind: str, count: int, *, seed: int = 1, start: int = 0) -> Iterator[Mail]:
    if kind not in ("small", "mix"):
        raise ValueError(f"unknown mail kind {kind!r} (small or mix)")
    for n in range(start, start + count):
        # One generator per mail, seeded from (seed, kind, n), so mail n does not depend on how many
        # mails were made before it.
        rng = random.Random(f"{seed}:{kind}:{n}")
        yield _make_mail(rng, kind, n, seed)


def _make_mail(rng: random.Random, kind: str, n: int, seed: int) -> Mail:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    # Senders repeat across mails (a pool of a few hundred), as real customers write more than once.
    sender = f"{first.lower()}.{last.lower()}{rng.randrange(400)}@{rng.choice(_DOMAINS)}"
    date = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc) + timedelta(seconds=n * 37 + rng.randrange(30))
    is_reply = rng.random() < 0.4
    with_html = rng.random() < 0.55
    topic = rng.choice(_TOPICS)
    subject = f"{'Re: ' if is_reply else ''}{topic} #{rng.randrange(10_000, 99_999)}"

    # The visible text is sized so that a small mail is about 10 KB once the HTML twin, the quote
    # and the headers are added; the spread keeps sizes from being suspiciously identical.
    paragraphs = [_paragraph(rng) for _ in range(rng.randint(3, 6))]
    own_text = "Hello,\n\n" + "\n\n".join(paragraphs) + f"\n\nBest regards,\n{first} {last}\n"
    signature = f"-- \n{first} {last}\n{rng.choice(('Accounts', 'IT', 'Purchasing', 'Operations'))}\n" \
                f"+49 30 {rng.randrange(1_000_000, 9_999_999)}\n"
    quoted = ""
    if is_reply:
        earlier = "\n\n".join(_paragraph(rng) for _ in range(rng.randint(2, 4)))
        when = format_datetime(date - timedelta(days=1, hours=rng.randrange(20)))
        quoted = f"\nOn {when}, Support <{SUPPORT_ADDRESS}> wrote:\n" + "".join(
            f"> {line}\n" for line in _wrap(earlier).splitlines()
        )
    text = _wrap(own_text) + signature + quoted
    target = rng.randint(6_500, 9_500) if not with_html else rng.randint(3_800, 5_600)
    while len(text) < target:
        # Top up short texts with one more paragraph before the signature, as long mails do.
        own_text = own_text.replace("\n\nBest regards,", "\n\n" + _paragraph(rng) + "\n\nBest regards,", 1)
        text = _wrap(own_text) + signature + quoted

    message_id = f"<bench.{seed}.{kind}.{n}.{rng.randrange(1 << 30):x}@{sender.split('@')[1]}>"
    headers = [
        ("Return-Path", f"<{sender}>"),
        ("Received", f"from mx.{sender.split('@')[1]} (mx.{sender.split('@')[1]} [192.0.2.{rng.randrange(1, 254)}])"
                     f"\r\n\tby mx.example.com with ESMTPS id {rng.randrange(1 << 40):x}"
                     f"\r\n\tfor <{SUPPORT_ADDRESS}>; {format_datetime(date)}"),
        ("From", f"{first} {last} <{sender}>"),
        ("To", f"Support <{SUPPORT_ADDRESS}>"),
        ("Subject", subject),
        ("Date", format_datetime(date)),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
    ]
    if is_reply:
        parent = f"<{rng.randrange(1 << 48):x}.support@example.com>"
        headers += [("In-Reply-To", parent), ("References", parent)]
    client = rng.choice(_CLIENTS)
    if client:
        headers.append(("User-Agent", client))

    body_part = _text_part(text) if not with_html else _alternative(rng, text)
    attachments: list[bytes] = []
    if kind == "mix" and rng.random() < _MIX_ATTACHMENT_CHANCE:
        for _ in range(1 + (rng.random() < 0.4) + (rng.random() < 0.2)):
            attachments.append(_attachment(rng))
    if attachments:
        boundary = f"=_mixed_{rng.randrange(1 << 60):x}"
        parts = [body_part, *attachments]
        content = _multipart("mixed", boundary, parts)
    else:
        content = body_part
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode()
    return Mail(mail_from=sender, rcpt_to=SUPPORT_ADDRESS, data=head + content)


def _paragraph(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(3, 7)):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 18))]
        sentences.append(" ".join(words).capitalize() + rng.choice((".", ".", ".", "?", "!")))
    return " ".join(sentences)


def _wrap(text: str, width: int = 72) -> str:
    """Wrap prose at word boundaries as mail clients do, keeping blank lines between paragraphs."""
    out: list[str] = []
    for line in text.split("\n"):
        current = ""
        for word in line.split(" "):
            if current and len(current) + 1 + len(word) > width:
                out.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        out.append(current)
    return "\n".join(out) + ("\n" if not text.endswith("\n") else "")


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _text_part(text: str) -> bytes:
    return (b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + _crlf(text))


def _html_part(rng: random.Random, text: str) -> bytes:
    # The HTML twin of the text, with the markup real clients add: a style block, paragraphs, a
    # blockquote for the quoted part and a signature div.
    own, _, quote = text.partition("\n> ") if "\n> " in text else (text, "", "")
    paras = "".join(f"<p>{p.replace(chr(10), ' ')}</p>\r\n" for p in own.split("\n\n") if p.strip())
    html = (
        "<!DOCTYPE html>\r\n<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">"
        "<style>body{font-family:Calibri,Arial,sans-serif;font-size:11pt}p{margin:0 0 8px}"
        ".sig{color:#666}</style></head>\r\n<body>\r\n" + paras
    )
    if quote:
        html += ("<blockquote type=\"cite\" style=\"border-left:2px solid #ccc;padding-left:8px\">"
                 + "".join(f"<p>{line.lstrip('> ')}</p>\r\n" for line in ("> " + quote).splitlines())
                 + "</blockquote>\r\n")
    html += f"<div class=\"sig\" id=\"sig{rng.randrange(1 << 20)}\"></div></body></html>\r\n"
    return (b"Content-Type: text/html; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + _crlf(html))


def _alternative(rng: random.Random, text: str) -> bytes:
    boundary = f"=_alt_{rng.randrange(1 << 60):x}"
    return _multipart("alternative", boundary, [_text_part(text), _html_part(rng, text)])


def _multipart(subtype: str, boundary: str, parts: list[bytes]) -> bytes:
    b = boundary.encode()
    out = [f"Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n\r\n".encode(),
           b"This is a multi-part message in MIME format.\r\n"]
    for part in parts:
        out.append(b"--" + b + b"\r\n" + part + (b"" if part.endswith(b"\r\n") else b"\r\n"))
    out.append(b"--" + b + b"--\r\n")
    return b"".join(out)


def _attachment(rng: random.Random) -> bytes:
    content_type, ext, is_text = rng.choice(_ATTACHMENTS)
    # Exponential sizes: many small attachments and a few large ones, as in a real inbox.
    size = min(_MIX_ATTACHMENT_MAX, max(512, int(rng.expovariate(1 / _MIX_ATTACHMENT_MEAN))))
    name = f"{rng.choice(('scan', 'screenshot', 'invoice', 'export', 'error', 'photo'))}_{rng.randrange(10_000)}.{ext}"
    if is_text:
        lines = []
        total = 0
        while total < size:
            line = (f"2024-03-01T08:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z "
                    f"{rng.choice(('INFO', 'WARN', 'ERROR'))} {' '.join(rng.choice(_WORDS) for _ in range(8))}")
            lines.append(line)
            total += len(line) + 2
        head = (f"Content-Type: {content_type}; charset=utf-8; name=\"{name}\"\r\n"
                f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
                f"Content-Transfer-Encoding: 7bit\r\n\r\n")
        return head.encode() + "\r\n".join(lines).encode() + b"\r\n"
    magic = {"pdf": b"%PDF-1.7\n", "png": b"\x89PNG\r\n\x1a\n", "jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"}[ext]
    # Random bytes stand in for compressed content (images and PDFs do not compress further).
    content = magic + rng.randbytes(size - len(magic))
    encoded = base64.encodebytes(content).replace(b"\n", b"\r\n")
    head = (f"Content-Type: {content_type}; name=\"{name}\"\r\n"
            f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n")
    return head.encode() + encoded
