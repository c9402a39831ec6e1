# SPDX-License-Identifier: GPL-3.0-or-later
"""Envelopes and refusals for mail that arrives without an SMTP dialogue (IMAP, the pipe, import).

Such mail has no MAIL FROM or RCPT TO of ours. The delivering MTA usually wrote them into the
message: Return-Path holds the envelope sender and Delivered-To (or X-Original-To) the recipient.
Using the same envelope sender as the LMTP listener would have seen matters: the intake dedupe
treats two messages with the same Message-ID and envelope sender as one, so a mail that reaches us
both over LMTP and through an IMAP mailbox still becomes a single case entry.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from intake.accept import Envelope

_HEADER_END = re.compile(rb"\r?\n\r?\n")
# RFC 5322 field names are printable ASCII except the colon; a message must start with one.
_FIRST_FIELD = re.compile(rb"^[!-9;-~]+[ \t]*:")


@dataclass(frozen=True)
class Refusal:
    """Why a message is refused before it is stored, and the sysexits code the pipe reports."""

    reason: str
    exit_code: int


def refusal(raw: bytes, *, max_size: int) -> Refusal | None:
    """A reason to refuse the message outright, or None to accept it."""
    if len(raw) > max_size:
        return Refusal(f"message too large ({len(raw)} bytes, the limit is {max_size})", os.EX_UNAVAILABLE)
    if not raw.strip():
        return Refusal("empty message", os.EX_DATAERR)
    if not _FIRST_FIELD.match(raw):
        return Refusal("not an RFC 5322 message (it does not start with a header field)", os.EX_DATAERR)
    return None


def envelope_from_headers(raw: bytes, transport: str, *, default_recipients: tuple[str, ...]) -> Envelope:
    """The envelope the delivering MTA recorded in the message, with our own recipients as fallback."""
    match = _HEADER_END.search(raw)
    head = raw[: match.end()] if match else raw[:65536]
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(head)
    except Exception:  # noqa: BLE001 - unreadable headers just mean no envelope information.
        return Envelope(transport, None, default_recipients)
    return_paths = headers.get_all("Return-Path") or []
    # The MTA that delivered the message adds its Return-Path on top, so the first one is the real one.
    mail_from = _address(str(return_paths[0])) if return_paths else None
    delivered = [_address(str(v)) for v in (headers.get_all("Delivered-To") or headers.get_all("X-Original-To")
                                             or [])]
    recipients = tuple(a for a in delivered if a and "@" in a)
    return Envelope(transport, mail_from, recipients or default_recipients)


def _address(value: str) -> str:
    """"<a@b>" -> "a@b"; "<>" (the null sender) -> ""."""
    text = value.replace("\r", "").replace("\n", "").strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1: text.rindex(">")]
    return text.strip()[:320]
