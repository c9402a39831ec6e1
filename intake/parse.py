# SPDX-License-Identifier: GPL-3.0-or-later
"""Raw mail bytes -> ParsedMail, for any bytes, without ever raising.

The stdlib parser (compat32, which keeps raw header values and never refuses a
charset) builds the one tree everything is read from: bodies, attachment bytes and
headers. mail-parser then runs on that same tree, so the bytes are parsed once, and
contributes its diagnostics (address, date, Received and MIME header defects) and
its lenient date parser. Its bodies and attachments are not used: it merges a
forwarded message's text into text_plain and returns binary files as base64 text.
Whatever had to be guessed is recorded in ParsedMail.defects for the operator.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from types import MappingProxyType
from urllib.parse import unquote

import mailparser

from intake.attachments import Attachment, is_tnef, make_attachment, unpack_tnef
from intake.filenames import invent_filename, part_filename, sanitize_filename, unique_filenames
from intake.headers import (
    Address,
    eight_bit_text,
    header_text,
    parse_addresses,
    parse_date,
    parse_message_id,
    parse_msgids,
)
from intake.mime import (
    Leaf,
    content_type,
    disposition,
    message_from_bytes,
    own_leaves,
    part_bytes,
    part_charset,
    part_text,
)

__all__ = ["Address", "Attachment", "ParsedMail", "parse", "unpack_tnef"]

_BODY_TYPES = frozenset({"text/plain", "text/html"})
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_CID = re.compile(r"""cid:([^"'\s>)]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedMail:
    """Everything the pipeline needs from one inbound message."""

    tree: Message  # the stdlib tree (compat32); other modules walk it (bounce reports)
    message_id: str | None  # without angle brackets; None if absent or blank
    in_reply_to: tuple[str, ...]  # message ids without brackets
    references: tuple[str, ...]
    subject: str  # RFC 2047 decoded, unfolded, CR/LF and NUL removed; "" if absent
    from_: Address | None
    sender: Address | None  # the Sender header
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    date: datetime | None  # aware, UTC
    headers: Mapping[str, tuple[str, ...]]  # lower-case name -> every decoded value, in order
    content_type: str  # top level, lower-case
    text: str | None  # the message's own text/plain body
    html: str | None  # the message's own text/html body
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]  # stdlib/mail-parser defect class names and our fallback notes


def parse(raw: bytes, *, diagnostics: bool = True) -> ParsedMail:
    """Parse one raw message; never raises, whatever the bytes.

    With diagnostics=False mail-parser is not consulted: the result is the same
    except for its defect categories and its recovery of malformed dates, and it
    saves about 0.6 ms per message (measured on the development corpus).

    >>> parse(b"Subject: hi\\n\\nhello\\n").text
    'hello\\n'
    """
    try:
        data = bytes(raw)
    except Exception:  # noqa: BLE001 - a str or other object slipped through the types.
        data = str(raw).encode("utf-8", "surrogateescape")
    try:
        return _parse(data, diagnostics)
    except Exception as exc:  # noqa: BLE001 - the promise is "never raises"; say what broke.
        return _minimal(data, f"parse failed: {type(exc).__name__}")


def _parse(raw: bytes, diagnostics: bool) -> ParsedMail:
    tree, notes = _read_tree(raw)
    leaves, walk_notes = own_leaves(tree)
    # Senders who put raw 8-bit bytes in headers use their body's charset there.
    top_charset = part_charset(tree) or next(
        (leaf.charset for leaf in leaves if leaf.charset is not None), None
    )
    headers, header_notes = _read_headers(tree, top_charset)
    notes.extend(header_notes)
    notes.extend(walk_notes)
    text, html, files, body_notes = _split_bodies(leaves)
    notes.extend(body_notes)
    attachments, file_notes = _attachments(files, html, top_charset)
    notes.extend(file_notes)

    date = parse_date(headers.first("date"))
    if diagnostics:
        categories, recovered_date = _mailparser_findings(tree)
        notes.extend(categories)
        if date is None and recovered_date is not None:
            date = recovered_date
            notes.append("Date read by mail-parser's lenient parser")

    return ParsedMail(
        tree=tree,
        message_id=parse_message_id(headers.first("message-id")),
        in_reply_to=parse_msgids(" ".join(headers.all("in-reply-to"))),
        references=parse_msgids(" ".join(headers.all("references"))),
        subject=headers.decoded.get("subject", ("",))[0],
        from_=headers.first_address("from"),
        sender=headers.first_address("sender"),
        reply_to=parse_addresses(headers.all("reply-to")),
        to=parse_addresses(headers.all("to")),
        cc=parse_addresses(headers.all("cc")),
        date=date,
        headers=headers.decoded,
        content_type=content_type(tree),
        text=text,
        html=html,
        attachments=attachments,
        defects=_defects(tree, notes),
    )


def _read_tree(raw: bytes) -> tuple[Message, list[str]]:
    # The full parse fails only on hostile input (RecursionError from thousands of
    # nested multiparts); the headers alone can still be read then, and the body is
    # kept as unparsed text.
    try:
        return message_from_bytes(raw), []
    except Exception as exc:  # noqa: BLE001 - see above.
        note = f"stdlib parser failed: {type(exc).__name__}, body left unparsed"
    try:
        return BytesParser(policy=compat32).parsebytes(raw, headersonly=True), [note]
    except Exception:  # noqa: BLE001 - last resort: a headerless text message.
        return _text_message(raw), [note, "headers unreadable"]


def _text_message(raw: bytes) -> Message:
    message = Message()
    message.set_payload(raw.decode("utf-8", "surrogateescape"))
    return message


@dataclass(frozen=True)
class _Headers:
    raw: Mapping[str, tuple[str, ...]]  # 8-bit bytes decoded, encoded words kept
    decoded: Mapping[str, tuple[str, ...]]  # fully decoded, as ParsedMail.headers

    def all(self, name: str) -> tuple[str, ...]:
        return self.raw.get(name, ())

    def first(self, name: str) -> str | None:
        values = self.raw.get(name)
        return values[0] if values else None

    def first_address(self, name: str) -> Address | None:
        found = parse_addresses(self.all(name)[:1])
        return found[0] if found else None


def _read_headers(tree: Message, charset: str | None) -> tuple[_Headers, list[str]]:
    # Address and id headers are parsed from the raw form: their encoded words are
    # decoded per display name, after the address list has been split.
    raw: dict[str, list[str]] = {}
    decoded: dict[str, list[str]] = {}
    notes: list[str] = []
    for name, value in tree.raw_items():
        key = name.strip().lower()
        text, why = eight_bit_text(str(value), charset)
        clean, word_notes = header_text(text)
        raw.setdefault(key, []).append(text)
        decoded.setdefault(key, []).append(clean)
        notes.extend(f"{key}: {note}" for note in why + word_notes)
    return _Headers(
        MappingProxyType({k: tuple(v) for k, v in raw.items()}),
        MappingProxyType({k: tuple(v) for k, v in decoded.items()}),
    ), notes


def _split_bodies(leaves: tuple[Leaf, ...]) -> tuple[str | None, str | None, list[Leaf], list[str]]:
    """Pick the first own text/plain and text/html; every other leaf is a file."""
    chosen: dict[str, str] = {}
    blank: dict[str, str] = {}
    files: list[Leaf] = []
    notes: list[str] = []
    for leaf in leaves:
        if _is_body_candidate(leaf) and leaf.content_type not in chosen and not _is_binary(leaf):
            text, why = part_text(leaf.part, leaf.charset)
            notes.extend(why)
            if text.strip():
                chosen[leaf.content_type] = text
            else:
                # An empty body part is no file either; remember it in case the
                # message has no other text of that type.
                blank.setdefault(leaf.content_type, text)
            continue
        files.append(leaf)
    text = chosen.get("text/plain", blank.get("text/plain"))
    html = chosen.get("text/html", blank.get("text/html"))
    return text, html, files, notes


def _is_binary(leaf: Leaf) -> bool:
    # Text never holds NUL bytes unless it is UTF-16/32; a "text" part that does is
    # a file sent without headers (an Outlook .msg piped in raw, for instance).
    part = leaf.part
    charset = (leaf.charset or "").lower()
    if charset.startswith(("utf-16", "utf-32", "ucs")):
        return False
    payload = part.get_payload()
    if isinstance(payload, str) and "\x00" not in payload[:8192] and "=00" not in payload[:8192]:
        return False
    return b"\x00" in part_bytes(part)[0][:8192]


def _is_body_candidate(leaf: Leaf) -> bool:
    if leaf.content_type not in _BODY_TYPES or leaf.in_attachment:
        return False
    if disposition(leaf.part) == "attachment":
        return False
    # A named text part is a file, except when it is the whole message.
    return leaf.is_root or part_filename(leaf.part) is None


def _attachments(
    files: list[Leaf], html: str | None, charset: str | None
) -> tuple[tuple[Attachment, ...], list[str]]:
    referenced = {unquote(m).strip("<>").lower() for m in _CID.findall(html or "")}
    found: list[Attachment] = []
    notes: list[str] = []
    for leaf in files:
        content, why = part_bytes(leaf.part)
        notes.extend(why)
        declared = leaf.content_type
        original = part_filename(leaf.part)
        if original is None and not content:
            continue  # An empty, unnamed part is not a file.
        cid = _content_id(leaf.part)
        inline = disposition(leaf.part) == "inline" or (cid is not None and cid.lower() in referenced)
        name = sanitize_filename(original or "")
        subject = _inner_subject(leaf.part, charset) if declared in _MESSAGE_TYPES else ""
        if not name and subject:
            # A subject's slashes are words ("1/2 done"), not directories.
            name = sanitize_filename(re.sub(r"[/\\]", "_", subject) + ".eml")
        if not name:
            name = invent_filename(declared, len(found) + 1)
        if is_tnef(declared, original, content):
            try:
                inside = unpack_tnef(content)
            except ValueError as exc:
                inside = ()
                notes.append(f"winmail.dat kept: {exc}")
            if inside:
                found.extend(inside)
                continue
            notes.append("winmail.dat held no files, kept as is")
        found.append(make_attachment(name, declared, content, cid, inline))
    names = unique_filenames(a.filename for a in found)
    return tuple(
        a if a.filename == n else dataclasses.replace(a, filename=n) for a, n in zip(found, names)
    ), notes


def _content_id(part: Message) -> str | None:
    values = [v for k, v in part.raw_items() if k.strip().lower() == "content-id"]
    if not values:
        return None
    text = re.sub(r"\s+", "", str(values[0])).strip("<>")
    return text or None


def _inner_subject(part: Message, charset: str | None) -> str:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        for name, value in payload[0].raw_items():
            if name.strip().lower() == "subject":
                return header_text(str(value), charset)[0].strip()
    return ""


class _MailParserDiagnostics(mailparser.MailParser):
    """mail-parser without the second, partial summary of the message it builds at the end.

    After its walk MailParser.parse() builds the "mail" summary of every header and then the
    "mail_partial" summary of the main ones: the same header decoding over a subset of the same
    names, from the same state, so it finds no defect category and cannot fail where the first
    one did not. Only the categories and the date are read here, so the partial summary is skipped.
    The complete one is kept: decoding a hostile header there can raise, and that failure is
    itself a finding ("mail-parser failed: ..."). Should a later mail-parser rename the method,
    this override is simply never called and the result stays the same.
    """

    def _make_mail(self, complete: bool = True) -> dict[str, object]:
        return super()._make_mail(complete) if complete else {}


def _mailparser_findings(tree: Message) -> tuple[list[str], datetime | None]:
    """Return mail-parser's defect categories and its date, or a note that it failed."""
    try:
        parser = _MailParserDiagnostics(tree)
        categories = sorted(str(c) for c in parser.defects_categories)
        date = parser.date
    except Exception as exc:  # noqa: BLE001 - it raises AttributeError, ValueError, ...
        return [f"mail-parser failed: {type(exc).__name__}"], None
    if isinstance(date, datetime):
        date = date.replace(tzinfo=timezone.utc) if date.tzinfo is None else date.astimezone(timezone.utc)
    else:
        date = None
    return categories, date


def _defects(tree: Message, notes: list[str]) -> tuple[str, ...]:
    # The tree is walked without recursion: Message.walk() recurses and a hostile
    # message nests deeper than the interpreter's stack allows.
    names: list[str] = []
    stack: list[Message] = [tree]
    while stack:
        part = stack.pop()
        names.extend(type(d).__name__ for d in getattr(part, "defects", ()))
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, Message))
    return tuple(dict.fromkeys(names + notes))


def _minimal(raw: bytes, note: str) -> ParsedMail:
    try:
        tree = message_from_bytes(raw)
    except Exception:  # noqa: BLE001 - any tree will do for the operator's view.
        tree = _text_message(raw)
    return ParsedMail(
        tree=tree,
        message_id=None,
        in_reply_to=(),
        references=(),
        subject="",
        from_=None,
        sender=None,
        reply_to=(),
        to=(),
        cc=(),
        date=None,
        headers=MappingProxyType({}),
        content_type="text/plain",
        text=None,
        html=None,
        attachments=(),
        defects=(note,),
    )
