# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading delivery reports: RFC 3464 DSNs, RFC 8098 MDNs and the non-standard layouts.

These helpers only extract facts (who failed, which of our messages bounced, why); the
decision whether a mail is a bounce at all is made in ``intake.classify``, which weighs
these facts against the sender and the headers.  Everything here is pure and never raises
on malformed input: a part the parser could not make sense of simply contributes nothing.
"""

from __future__ import annotations

import email
import email.message
import re
from collections.abc import Iterator
from dataclasses import dataclass

from flufl.bounce import all_failures

__all__ = [
    "BOUNCE_BODY",
    "BOUNCE_SUBJECT",
    "DELAY_BODY",
    "DELAY_SUBJECT",
    "SMTP_REPLY",
    "BounceReport",
    "DsnFacts",
    "flufl_failures",
    "mdn_disposition",
    "original_message_ids",
    "read_dsn",
    "text_body",
]

# A diagnostic longer than this is cut: it is stored and shown to operators, and some
# MTAs paste whole SMTP transcripts into Diagnostic-Code.
DIAGNOSTIC_LIMIT = 500

# How much of a text part is looked at.  Bounce notices put their message at the top;
# reading a returned 10 MB attachment would only cost time.
_TEXT_LIMIT = 64 * 1024

# Walking the MIME tree is bounded as well, so that a hostile message with thousands of
# parts costs a bounded amount of work.
_PART_LIMIT = 200

_ADDRESS = re.compile(r"[^\s<>\"';,()\[\]:]+@[^\s<>\"';,()\[\]:]+\.[A-Za-z0-9-]+")
_MESSAGE_ID_LINE = re.compile(r"^\s*Message-ID:\s*<?([^\s<>]+@[^\s<>]+?)>?\s*$", re.IGNORECASE | re.MULTILINE)
_DSN_FIELD = re.compile(r"^([A-Za-z-]+):[ \t]*(.*(?:\n[ \t]+.*)*)", re.MULTILINE)


# Subjects of delivery failure notices, in the wording of the common MTAs and in the
# languages Exchange and Outlook localise their NDRs into.
BOUNCE_SUBJECT = re.compile(
    r"undeliver(able|ed)|returned mail|mail delivery fail|message delivery (has )?fail|delivery (status )?notification"
    r"|delivery (report|failure|failed|has failed)|failure (notice|delivery)|failed mail|non[- ]?deliver"
    r"|(could|can) ?not be delivered|couldn't be delivered|not delivered|mail system error|email delivery failure"
    r"|delivery problem|bounce(d)? (notification|notice|message)"
    r"|unzustellbar|nicht zustellbar|non recapitabile|no se puede entregar|onbestelbaar|impossible de remettre"
    r"|non remis|kan ikke leveres|kunde inte levereras|не доставлено|не может быть доставлено"
    r"|配信できません|配送できません|配信エラー|送信できません|未達",
    re.I,
)
DELAY_SUBJECT = re.compile(
    r"\(delay\)|delayed mail|message delayed|delivery delay|mail delivery warning|not yet been delivered"
    r"|could not send message for past|^\s*warning: message .* delayed|delayed \d+ hours|still being retried",
    re.I,
)
# Phrases in the text of a notice from a machine sender.  Strong delay wording is checked
# first because delay warnings also say "could not be delivered (yet)".
DELAY_BODY = re.compile(
    r"not yet been delivered|still being retried|will (continue to )?(retry|try)|has been delayed|delivery is delayed"
    r"|warning message only|do not need to resend|delivery attempts will continue",
    re.I,
)
BOUNCE_BODY = re.compile(
    r"could not be delivered|couldn't be delivered|undeliverable|undelivered|delivery (has )?failed|failed to deliver"
    r"|permanent(ly)? (error|fail)|user unknown|unknown user|no such (user|mailbox|address)|mailbox (is )?"
    r"(unavailable|full|not found)|address rejected|does not exist|returned to sender|unable to deliver"
    r"|not delivered|delivery failure|message (was )?rejected|error sending your mail|\b5\.\d{1,3}\.\d{1,3}\b",
    re.I,
)
SMTP_REPLY = re.compile(r"\b[45]\d\d[ -]\S[^\r\n]*|\b[45]\.\d{1,3}\.\d{1,3}\b[^\r\n]*")


@dataclass(frozen=True)
class BounceReport:
    """What a bounce or delay notice says about the mail that could not be delivered."""

    permanent: bool
    # Failed (or, for a delay, delayed) addresses, lower-cased.
    recipients: tuple[str, ...]
    # Message-IDs, without angle brackets, of the mail that bounced.
    original_message_ids: tuple[str, ...]
    # The first Diagnostic-Code or Status text, at most DIAGNOSTIC_LIMIT characters.
    diagnostic: str | None


@dataclass(frozen=True)
class DsnFacts:
    """The per-recipient outcome of an RFC 3464 message/delivery-status part."""

    failed: tuple[str, ...]
    delayed: tuple[str, ...]
    # True when at least one recipient block was read, even without a usable address:
    # "a DSN that says failed" is a bounce even if its Final-Recipient is mangled.
    any_failed: bool
    any_delayed: bool
    any_success: bool
    diagnostic: str | None
    original_message_ids: tuple[str, ...]


def walk(msg: email.message.Message) -> Iterator[email.message.Message]:
    """Yield the parts of ``msg`` depth-first, at most _PART_LIMIT of them, never raising."""
    stack: list[email.message.Message] = [msg]
    seen = 0
    while stack and seen < _PART_LIMIT:
        part = stack.pop()
        seen += 1
        yield part
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, email.message.Message)]))


def content_type(part: email.message.Message) -> str:
    try:
        return part.get_content_type()
    except Exception:  # A mangled Content-Type header must not stop classification.
        return "text/plain"


def _decoded_bytes(part: email.message.Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data[:_TEXT_LIMIT]
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload[:_TEXT_LIMIT].encode("utf-8", "replace")
    return b""


def _as_text(part: email.message.Message) -> str:
    data = _decoded_bytes(part)
    charset = "utf-8"
    try:
        charset = part.get_content_charset() or "utf-8"
        return data.decode(charset, "replace")
    except (LookupError, ValueError, TypeError):
        # An unknown or broken charset label: Latin-1 keeps every byte, which is enough
        # for matching the ASCII phrases and addresses we look for.
        return data.decode("latin-1")


def text_body(msg: email.message.Message) -> str:
    """The first text/plain part of the message (not of a returned message), decoded."""
    for part in _own_parts(msg):
        if content_type(part) == "text/plain":
            return _as_text(part)
    return ""


def _own_parts(msg: email.message.Message) -> Iterator[email.message.Message]:
    """The parts that belong to the notice itself, not to a message it returns."""
    stack: list[email.message.Message] = [msg]
    seen = 0
    while stack and seen < _PART_LIMIT:
        part = stack.pop()
        seen += 1
        yield part
        if content_type(part).startswith("message/"):
            continue
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, email.message.Message)]))


def _dsn_blocks(part: email.message.Message) -> list[dict[str, str]]:
    """The field blocks of a message/delivery-status part, as lower-cased name -> value."""
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        for block in payload:
            if isinstance(block, email.message.Message):
                fields: dict[str, str] = {}
                for name, value in block.items():
                    fields.setdefault(str(name).lower(), str(value))
                # A malformed line (an SMTP reply continued without indentation) ends
                # the stdlib's header block; the fields after it land in the body.
                rest = block.get_payload()
                if isinstance(rest, str):
                    for match in _DSN_FIELD.finditer(rest.replace("\r\n", "\n")):
                        fields.setdefault(match.group(1).lower(), match.group(2))
                blocks.append(fields)
        if blocks:
            return blocks
    # Some reports arrive with the delivery-status part left as text (wrong transfer
    # encoding, a text/plain label on the part): read the blocks by hand.
    text = _as_text(part) if not isinstance(payload, list) else ""
    for chunk in re.split(r"\r?\n\s*\r?\n", text.replace("\r\n", "\n")):
        fields = {}
        for match in _DSN_FIELD.finditer(chunk):
            fields.setdefault(match.group(1).lower(), match.group(2))
        if fields:
            blocks.append(fields)
    return blocks


def _address_of(value: str) -> str | None:
    # "rfc822; <user@example.com>" -> "user@example.com"; the address type is optional in practice.
    _, _, rest = value.rpartition(";")
    found = _ADDRESS.search(rest or value)
    return found.group(0).strip(".").lower() if found else None


def _bounded(text: str) -> str:
    return " ".join(text.split())[:DIAGNOSTIC_LIMIT]


def read_dsn(msg: email.message.Message) -> DsnFacts | None:
    """Read every message/delivery-status part; None when the message has none.

    The Action field decides (RFC 3464 2.3.3); where a reporter leaves it out, the class
    digit of Status does (5 = failed, 4 = delayed, 2 = success).
    """
    parts = [p for p in _own_parts(msg) if content_type(p) in ("message/delivery-status", "message/global-delivery-status")]
    if not parts:
        return None
    failed: list[str] = []
    delayed: list[str] = []
    any_failed = any_delayed = any_success = False
    diagnostic: str | None = None
    ids: list[str] = []
    for part in parts:
        for fields in _dsn_blocks(part):
            for key in ("original-message-id", "x-original-message-id"):
                if key in fields:
                    ids.extend(_message_ids(fields[key]))
            # Original-Recipient is the address as our side gave it (RCPT ORCPT); Final-Recipient
            # may be an alias or forwarding target that we never wrote to.
            recipient_field = fields.get("original-recipient", "") + " " + fields.get("final-recipient", "")
            action = fields.get("action", "").strip().lower()
            status = fields.get("status", "").strip()
            if not recipient_field.strip() and not action:
                continue
            if not action and status[:1] in ("2", "4", "5"):
                action = {"2": "delivered", "4": "delayed", "5": "failed"}[status[:1]]
            address = _address_of(fields.get("original-recipient", "")) or _address_of(fields.get("final-recipient", ""))
            if action.startswith("fail"):
                any_failed = True
                if address:
                    failed.append(address)
            elif action.startswith("delay"):
                any_delayed = True
                if address:
                    delayed.append(address)
            elif action in ("delivered", "relayed", "expanded"):
                any_success = True
            if diagnostic is None and action.startswith(("fail", "delay")):
                text = fields.get("diagnostic-code") or status
                diagnostic = _bounded(text) if text.strip() else None
    return DsnFacts(
        failed=_unique(failed),
        delayed=_unique(delayed),
        any_failed=any_failed,
        any_delayed=any_delayed,
        any_success=any_success,
        diagnostic=diagnostic,
        original_message_ids=_unique(ids),
    )


def mdn_disposition(msg: email.message.Message) -> tuple[str, str | None, tuple[str, ...]] | None:
    """The Disposition of an RFC 8098 message/disposition-notification part.

    Returns (disposition, final recipient, Original-Message-IDs), or None without such a part.
    A "deleted" or "failed" disposition is a refusal (Sieve reject, quota), not a read receipt.
    """
    for part in _own_parts(msg):
        if content_type(part) != "message/disposition-notification":
            continue
        fields: dict[str, str] = {}
        for block in _dsn_blocks(part):
            for name, value in block.items():
                fields.setdefault(name, value)
        recipient = fields.get("final-recipient") or fields.get("original-recipient")
        return (
            fields.get("disposition", "").strip().lower(),
            _address_of(recipient) if recipient else None,
            _message_ids(fields.get("original-message-id", "")),
        )
    return None


def flufl_failures(msg: email.message.Message) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """flufl.bounce's (temporary, permanent) addresses, decoded and lower-cased.

    flufl.bounce's heuristic detectors were written for Mailman's list bounces and can
    raise on unusual layouts; a detector that fails contributes nothing.
    """
    try:
        temporary, permanent = all_failures(msg)
    except Exception:
        return (), ()
    return _clean(temporary), _clean(permanent)


def _clean(addresses: frozenset[bytes]) -> tuple[str, ...]:
    out: list[str] = []
    for raw in addresses:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        found = _ADDRESS.search(text)
        if found:
            out.append(found.group(0).strip(".").lower())
    return _unique(sorted(out))


def original_message_ids(msg: email.message.Message) -> tuple[str, ...]:
    """Message-IDs of the returned mail: from message/rfc822 or rfc822-headers parts,
    else from "Message-ID:" lines in the notice's text (qmail, Exim and others paste the
    returned headers into the body)."""
    ids: list[str] = []
    for part in walk(msg):
        kind = content_type(part)
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, email.message.Message):
                ids.extend(_message_ids(str(inner.get("Message-ID", "") or "")))
        elif kind in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            try:
                headers = email.message_from_string(_as_text(part))
                ids.extend(_message_ids(str(headers.get("Message-ID", "") or "")))
            except Exception:
                continue
    if not ids:
        for part in _own_parts(msg):
            if content_type(part) == "text/plain":
                ids.extend(m.group(1) for m in _MESSAGE_ID_LINE.finditer(_as_text(part)))
    return _unique(ids)


def _message_ids(value: str) -> tuple[str, ...]:
    found = re.findall(r"<([^<>\s]+)>", value)
    if not found and value.strip():
        found = [value.strip()]
    return tuple(i for i in found if "@" in i)


def _unique(items: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
