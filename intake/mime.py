# SPDX-License-Identifier: GPL-3.0-or-later
"""Building and walking a stdlib (compat32) message tree safely: own parts, bytes and text of a part.

"Own" parts are those that belong to the message itself; an attached message/rfc822
is one leaf here, so its text never leaks into the body. Every function tolerates
the trees that broken mail produces (a multipart left as text because its boundary
is missing, payloads that are the wrong type, charsets that do not exist) and
returns notes instead of raising.

The tree is built, and base64 parts decoded, exactly as the stdlib does it but without
the stdlib's whole-message copies, so that a large mail costs a few times its size
rather than eight (docs/performance.md, "Memory").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
# The decoder Message.get_payload itself calls for base64: using it keeps the bytes and the
# defects of _base64_bytes the stdlib's to the letter.
from email._encoded_words import decode_b
from email.feedparser import FeedParser
from email.generator import BytesGenerator
from email.message import Message
from email.policy import Compat32, compat32
from io import BytesIO

from intake.headers import decode_bytes

# Deeper nesting than this is not descended: real mail nests a handful of levels,
# and hostile mail nests thousands to exhaust the stack.
MAX_DEPTH = 64

_HEADER_LINE = re.compile(r"^[!-9;-~]+:")  # an RFC 5322 field name followed by ":"

# The stdlib's Parser feeds its FeedParser this many characters at a time; message_from_bytes
# feeds the very same pieces, so that the tree it builds is the stdlib's to the last defect.
FEED_CHARS = 8192

# How much of a base64 payload is turned into bytes at a time; small enough to be lost in the
# noise, large enough that the loop costs nothing next to the decoding.
_SLICE_CHARS = 1 << 20


class _Verbatim(Compat32):
    """compat32 that writes each header exactly as it was read.

    The stock policy rebuilds every header through email.header.Header, which is
    slow and refolds lines; an attached message should be saved as it was sent.
    """

    def fold_binary(self, name: str, value: str) -> bytes:  # noqa: D102 - see class.
        return f"{name}: {value}{self.linesep}".encode("utf-8", "surrogateescape")


# Policies are immutable, so one shared instance is not mutable module state.
_VERBATIM = _Verbatim()


@dataclass(frozen=True)
class Leaf:
    """A part with no own sub-parts, as the walk found it."""

    part: Message
    is_root: bool
    in_attachment: bool  # inside a container whose disposition is "attachment"
    content_type: str  # lower-case; "text/plain" for a multipart left as text

    @cached_property
    def charset(self) -> str | None:
        """part_charset(self.part), read once.

        Reading a parameter parses every parameter of the header, and a body leaf's charset is
        asked for several times (the message's charset for 8-bit headers, the binary check,
        decoding its text). cached_property stores the value in the instance's __dict__, which
        a frozen dataclass without slots still has.
        """
        return part_charset(self.part)


def message_from_bytes(raw: bytes) -> Message:
    """The tree email.message_from_bytes(raw) builds, with a fraction of its memory.

    The stdlib first decodes the whole message to one str and then copies that into a StringIO,
    whose buffer takes four bytes a character, before it feeds the parser 8192 characters at a
    time: five times the message before a line of it is parsed. Feeding the same 8192-octet pieces
    straight from the bytes gives the parser identical input, as ASCII with surrogateescape turns
    each octet into exactly one character; what remains is the parser's own work (its lines and
    the payloads it joins from them).
    """
    parser = FeedParser(policy=compat32)
    view = memoryview(raw)
    for start in range(0, len(view), FEED_CHARS):
        parser.feed(str(view[start:start + FEED_CHARS], "ascii", "surrogateescape"))
    return parser.close()


def disposition(part: Message) -> str | None:
    """Return the lower-case Content-Disposition type, or None."""
    try:
        value = part.get_content_disposition()
    except Exception:  # noqa: BLE001 - a malformed header is treated as absent.
        return None
    return value.strip().lower() if isinstance(value, str) else None


def content_type(part: Message) -> str:
    """Return the lower-case content type; compat32 already maps junk to text/plain."""
    try:
        return part.get_content_type().lower()
    except Exception:  # noqa: BLE001 - the stdlib can trip over very odd headers.
        return "text/plain"


def own_leaves(tree: Message) -> tuple[tuple[Leaf, ...], tuple[str, ...]]:
    """Return the leaves that belong to the message itself, in document order.

    A multipart whose boundary is missing or wrong is left as text by the stdlib;
    when its text holds a delimiter line followed by part headers, the parts are
    recovered from it. Otherwise it becomes a text/plain leaf.
    """
    leaves: list[Leaf] = []
    notes: list[str] = []
    stack: list[tuple[Message, bool, int]] = [(tree, False, 0)]
    while stack:
        part, attached, depth = stack.pop()
        ctype = content_type(part)
        maintype = ctype.partition("/")[0]
        payload = part.get_payload()
        if maintype == "multipart" and isinstance(payload, list):
            if depth >= MAX_DEPTH:
                notes.append(f"MIME nesting deeper than {MAX_DEPTH} levels not descended")
                continue
            inner = attached or disposition(part) == "attachment"
            children = [p for p in payload if isinstance(p, Message)]
            stack.extend((child, inner, depth + 1) for child in reversed(children))
            continue
        if maintype == "multipart":
            recovered = recover_multipart(part) if depth < MAX_DEPTH else None
            if recovered is not None:
                notes.append("multipart boundary recovered from the body")
                stack.append((recovered, attached, depth + 1))
                continue
            notes.append(f"{ctype} without usable boundary, read as text")
            ctype = "text/plain"
        leaves.append(Leaf(part, part is tree, attached, ctype))
    return tuple(leaves), tuple(notes)


def recover_multipart(part: Message) -> Message | None:
    """Re-parse a multipart left as text, using the first delimiter line its body shows.

    A delimiter is a line "--token" that is followed by a header line or that occurs
    again later. Returns a new multipart (outside the original tree) or None.
    """
    payload = part.get_payload()
    if not isinstance(payload, str) or "--" not in payload:
        return None
    lines = payload.splitlines()
    token = None
    for index, line in enumerate(lines):
        candidate = line[2:].rstrip() if line.startswith("--") else ""
        if candidate.endswith("--"):
            candidate = candidate[:-2]
        if not candidate or '"' in candidate or len(candidate) > 200:
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if _HEADER_LINE.match(following) or payload.count("--" + candidate) >= 2:
            token = candidate
            break
    if token is None:
        return None
    header = f'Content-Type: {content_type(part)}; boundary="{token}"\n\n'
    try:
        rebuilt = message_from_bytes(
            header.encode("utf-8", "surrogateescape") + payload.encode("utf-8", "surrogateescape")
        )
    except Exception:  # noqa: BLE001 - RecursionError on hostile nesting, among others.
        return None
    return rebuilt if rebuilt.is_multipart() and rebuilt.get_payload() else None


def part_bytes(part: Message) -> tuple[bytes, tuple[str, ...]]:
    """Return a leaf's decoded content bytes (transfer encoding removed).

    An attached message is returned as the message bytes (headers and body) that
    the stdlib serialises from what it read, so it can be saved as a .eml file.
    """
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [flatten(p) for p in payload if isinstance(p, Message)]
        if content_type(part) in {"message/rfc822", "message/global"} and blocks:
            return blocks[0], ()
        return b"\n".join(blocks), ()
    try:
        data = _decoded_payload(part)
    except Exception as exc:  # noqa: BLE001 - e.g. a broken uuencode or a bad charset.
        data = None
        note: tuple[str, ...] = (f"transfer decoding failed: {type(exc).__name__}, raw bytes kept",)
    else:
        note = ()
    if isinstance(data, bytes):
        return data, note
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape"), note
    return b"", note


def _decoded_payload(part: Message) -> object:
    """part.get_payload(decode=True), with a leaner road for the common large case.

    For base64 the stdlib holds the payload as bytes, then as a list of one bytes object a line,
    then joined again, before it decodes: about four times the attachment's text beside the tree's
    own copy. An ASCII payload (which every well-formed base64 part has) goes to the same decoder
    with its line breaks removed a slice at a time instead, in one copy. Anything else (other
    encodings, 8-bit payloads that the stdlib reads through the part's charset) is left to the
    stdlib.
    """
    stored = _stored_payload(part)
    if isinstance(stored, str) and stored.isascii() and _transfer_encoding(part) == "base64":
        return _base64_bytes(part, stored)
    return part.get_payload(decode=True)


def _stored_payload(part: Message) -> object:
    # The payload exactly as the parser stored it. get_payload() cannot be asked for it: it first
    # encodes a whole copy to look for escaped 8-bit octets, and decodes it if it finds any.
    return part._payload  # noqa: SLF001 - see above; mail-parser reads it the same way.


def _transfer_encoding(part: Message) -> str:
    # Message.get_payload's own reading of the header: not stripped, so "base64 " is not base64.
    return str(part.get("content-transfer-encoding", "")).lower()


def _base64_bytes(part: Message, payload: str) -> bytes:
    """Decode an ASCII base64 payload exactly as Message.get_payload(decode=True) does.

    The stdlib removes every CR and LF (b"".join(bpayload.splitlines())) and hands the rest to
    email._encoded_words.decode_b, which also judges the padding and stray characters; its defects
    are recorded on the part through the part's policy, as get_payload records them. BytesIO grows
    its buffer in place and getvalue() hands that very buffer over, so the text without its line
    breaks exists once, as bytes; decode_b's "+ padding" then copies it only when padding is missing.
    """
    buffer = BytesIO()
    for start in range(0, len(payload), _SLICE_CHARS):
        buffer.write(payload[start:start + _SLICE_CHARS].encode("ascii").translate(None, b"\r\n"))
    value, defects = decode_b(buffer.getvalue())
    for defect in defects:
        part.policy.handle_defect(part, defect)
    return value


def flatten(message: Message) -> bytes:
    """Serialise a (sub)message to bytes without refolding or mangling headers."""
    buffer = BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=_VERBATIM).flatten(message)
    except Exception:  # noqa: BLE001 - fall back to the headers and raw body as read.
        buffer = BytesIO()
        for name, value in message.raw_items():
            buffer.write(f"{name}: {value}\n".encode("utf-8", "surrogateescape"))
        body = message.get_payload()
        buffer.write(b"\n")
        if isinstance(body, str):
            buffer.write(body.encode("utf-8", "surrogateescape"))
    return buffer.getvalue()


def part_charset(part: Message) -> str | None:
    """Return the declared charset parameter of a part, or None."""
    try:
        value = part.get_param("charset")
    except Exception:  # noqa: BLE001 - malformed parameters are treated as absent.
        return None
    if isinstance(value, tuple):
        value = value[2]
    return value.strip() if isinstance(value, str) and value.strip() else None


def part_text(part: Message, charset: str | None) -> tuple[str, tuple[str, ...]]:
    """Decode a text leaf with its declared charset (part_charset(part)) and fallbacks; never raises.

    Line endings become "\\n", and NUL characters are removed because the store
    (PostgreSQL text) cannot hold them.
    """
    data, notes = part_bytes(part)
    text, charset_notes = decode_bytes(data, charset)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
        charset_notes += ("NUL characters removed from a text body",)
    return text, notes + charset_notes
