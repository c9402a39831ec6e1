# SPDX-License-Identifier: GPL-3.0-or-later
"""Walking a stdlib (compat32) message tree safely: own parts, bytes and text of a part.

"Own" parts are those that belong to the message itself; an attached message/rfc822
is one leaf here, so its text never leaks into the body. Every function tolerates
the trees that broken mail produces (a multipart left as text because its boundary
is missing, payloads that are the wrong type, charsets that do not exist) and
returns notes instead of raising.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import Message
from email.policy import Compat32
from io import BytesIO

from intake.headers import decode_bytes

# Deeper nesting than this is not descended: real mail nests a handful of levels,
# and hostile mail nests thousands to exhaust the stack.
MAX_DEPTH = 64

_HEADER_LINE = re.compile(r"^[!-9;-~]+:")  # an RFC 5322 field name followed by ":"


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
        rebuilt = email.message_from_bytes(
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
        data = part.get_payload(decode=True)
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


def part_text(part: Message) -> tuple[str, tuple[str, ...]]:
    """Decode a text leaf with its declared charset and fallbacks; never raises.

    Line endings become "\\n", and NUL characters are removed because the store
    (PostgreSQL text) cannot hold them.
    """
    data, notes = part_bytes(part)
    text, charset_notes = decode_bytes(data, part_charset(part))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
        charset_notes += ("NUL characters removed from a text body",)
    return text, notes + charset_notes
