# SPDX-License-Identifier: GPL-3.0-or-later
"""Header decoding that never raises: charsets, RFC 2047 words, addresses, ids, dates.

The stdlib's email.header.decode_header raises on unknown charsets and on NUL bytes
in a charset name, and mail-parser's wrapper strips and silently drops bytes; real
mail needs a decoder that always produces text and says what it had to guess. Each
function returns its result and, where it guessed, notes that the caller records as
defects.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import getaddresses, parsedate_to_datetime
from types import MappingProxyType

# Labels that mailers use for a charset whose superset is what they really mean; the
# WHATWG encoding standard makes the same substitutions in every browser.
_SUPERSETS = MappingProxyType(
    {
        "iso-8859-1": "cp1252",
        "iso8859-1": "cp1252",
        "latin1": "cp1252",
        "latin-1": "cp1252",
        "gb2312": "gb18030",
        "gbk": "gb18030",
        "x-gbk": "gb18030",
        "euc-cn": "gb18030",
        "ks_c_5601-1987": "cp949",
        "euc-kr": "cp949",
        "shift_jis": "cp932",
        "shift-jis": "cp932",
        "sjis": "cp932",
        "x-sjis": "cp932",
        "iso-8859-8-i": "iso-8859-8",
        "iso-8859-6-i": "iso-8859-6",
        "unicode-1-1-utf-7": "utf-7",
        "x-mac-roman": "mac-roman",
        "macintosh": "mac-roman",
    }
)

# One RFC 2047 encoded word. The charset may carry an RFC 2231 language ("*en").
# The charset is matched loosely (anything but "?" and whitespace) so that a hostile
# charset name is decoded by our fallbacks instead of being left in the text.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*?)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINE_BREAKS = re.compile(r"[\r\n\x00]")
_SURROGATE = re.compile("[\udc80-\udcff]")
_MSGID = re.compile(r"<([^<>]*)>")
_BARE_ADDRESS = re.compile(r"[^\s<>,;:\"()\[\]@]+@[^\s<>,;:\"()\[\]@]+")
# What an addr-spec never holds: whitespace (\s is exactly str.isspace() in a str pattern),
# control characters, angle brackets and commas. One regex search instead of a Python-level
# loop over every character, as each address of every header is checked twice.
_ADDR_SPEC_JUNK = re.compile(r"[\s\x00-\x1f<>,]")


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header."""

    name: str  # decoded display name, "" when absent
    address: str  # addr-spec as written (local part kept, domain lower-cased), "" if unparseable


def codec_for(charset: str | None) -> str | None:
    """Return the Python codec that decodes a declared MIME charset, or None.

    Unknown names, names with NUL or other junk, and codecs that are not text
    encodings (base64, rot13, "undefined") all give None.
    """
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    label = _SUPERSETS.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError, TypeError):
        return None
    # Binary transforms (base64_codec, hex, zlib) are registered as codecs too.
    if not getattr(info, "_is_text_encoding", True) or info.name == "undefined":
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, tuple[str, ...]]:
    """Decode bytes declared as charset: declared, then utf-8, then a lenient last try.

    The last try uses the declared charset with replacement characters when it is
    known (it is still the best guess), else cp1252 with replacement. Returns the
    text and notes describing any fallback; it never raises.
    """
    codec = codec_for(charset)
    if codec is not None:
        try:
            return data.decode(codec), ()
        except (UnicodeError, LookupError, ValueError):
            pass
    if codec != "utf-8":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if not charset:
                return text, ()
            why = "unknown charset" if codec is None else "bytes undecodable as"
            return text, (f"{why} {_label(charset)}, decoded as utf-8",)
    last = codec if codec not in (None, "ascii", "utf-8") else "cp1252"
    try:
        text = data.decode(last, "replace")
    except (UnicodeError, LookupError, ValueError):
        last, text = "cp1252", data.decode("cp1252", "replace")
    if charset and codec is None:
        return text, (f"unknown charset {_label(charset)}, decoded as {last}",)
    return text, (f"bytes undecodable as {_label(charset or 'utf-8')}, decoded as {last} with replacement",)


def _label(charset: str | None) -> str:
    # Defect notes are shown to operators, so a hostile charset name is made
    # printable and short.
    text = (charset or "").encode("ascii", "backslashreplace").decode("ascii")[:40]
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def decode_words(text: str) -> tuple[str, tuple[str, ...]]:
    """Decode RFC 2047 encoded words in text; undecodable words are kept as written.

    Whitespace between two adjacent encoded words is dropped (RFC 2047 section 6.2),
    and adjacent words in the same charset are joined as bytes before decoding,
    because mailers split multi-byte characters across words.
    """
    if "=?" not in text:
        return text, ()
    notes: list[str] = []
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset = ""
    position = 0

    def flush() -> None:
        if pending:
            decoded, why = decode_bytes(b"".join(pending), pending_charset)
            out.append(decoded)
            notes.extend(why)
            pending.clear()

    previous_was_word = False
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        raw = _word_bytes(match.group(2), match.group(3))
        charset = match.group(1).partition("*")[0]
        if raw is None:
            flush()
            out.append(between + match.group(0))
            notes.append("malformed encoded word kept as written")
            previous_was_word = False
        else:
            if between.strip():
                flush()
                out.append(between)
            elif not previous_was_word:
                out.append(between)
            # Whitespace between two encoded words is dropped: nothing appended.
            if pending and charset.lower() != pending_charset.lower():
                flush()
            pending.append(raw)
            pending_charset = charset
            previous_was_word = True
        position = match.end()
    flush()
    out.append(text[position:])
    return "".join(out), tuple(notes)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        data = payload.encode("ascii")
    except UnicodeEncodeError:
        # Raw 8-bit inside an encoded word is against the RFC; take the bytes as sent.
        data = payload.encode("utf-8", "surrogateescape")
    if encoding in "Bb":
        cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        if data.strip(b"=") and not cleaned:
            return None
        cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
        try:
            return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError):
            return None
    # Q encoding: "_" is a space and =XX a byte; a stray "=" is kept literally.
    data = data.replace(b"_", b" ")
    return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)


def has_raw_bytes(value: str) -> bool:
    """True when a str from the parser holds surrogate-escaped raw 8-bit bytes."""
    return not value.isascii() and _SURROGATE.search(value) is not None


def eight_bit_text(raw: str, fallback_charset: str | None = None) -> tuple[str, tuple[str, ...]]:
    """Decode the raw 8-bit bytes of a header value (surrogate-escaped by the parser).

    They are read as UTF-8, else as fallback_charset (usually the message's body
    charset, which such senders also use in headers), else as cp1252. Encoded words
    are left alone.
    """
    if not has_raw_bytes(raw):
        return raw, ()
    data = raw.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8"), ()
    except UnicodeDecodeError:
        pass
    text, notes = decode_bytes(data, fallback_charset)
    return text, notes or (f"8-bit header decoded as {_label(fallback_charset)}",)


def header_text(raw: str, fallback_charset: str | None = None) -> tuple[str, tuple[str, ...]]:
    """Turn one raw header value (as compat32 stores it) into clean text.

    Raw 8-bit bytes are decoded (see eight_bit_text), the value is unfolded, RFC 2047
    encoded words are decoded, and CR, LF and NUL are removed.
    """
    text, notes = eight_bit_text(raw, fallback_charset)
    text, word_notes = decode_words(_FOLD.sub("", text))
    return _LINE_BREAKS.sub("", text), notes + word_notes


def parse_addresses(values: tuple[str, ...]) -> tuple[Address, ...]:
    """Parse the already 8-bit-decoded values of one address header into Address rows.

    Display names are decoded after the list is split, so an encoded comma in a
    name cannot split an address. An entry with no usable addr-spec keeps its text
    as the name and gets address "".
    """
    if not values:
        # Most messages lack most address headers (Sender, Reply-To, Cc); the stdlib's
        # address parser would only confirm that there is nothing to read.
        return ()
    unfolded = [_LINE_BREAKS.sub("", _FOLD.sub("", value)) for value in values]
    try:
        pairs = getaddresses(unfolded)
    except Exception:  # noqa: BLE001 - the stdlib address parser has raised on junk before.
        pairs = [("", value) for value in unfolded]
    specs = [_clean_addr_spec(addr) for _name, addr in pairs]
    if not any(specs):
        # The stdlib gives up on lists it cannot tokenise ("a@x.org b@x.org");
        # anything that plainly looks like an addr-spec is taken then.
        bare = [("", m) for value in unfolded for m in _BARE_ADDRESS.findall(value)]
        if bare:
            pairs, specs = bare, [_clean_addr_spec(addr) for _name, addr in bare]
    result: list[Address] = []
    for (name, addr), spec in zip(pairs, specs, strict=True):
        display, _notes = decode_words(name)
        display = display.strip()
        if not spec and not display and addr.strip():
            display = decode_words(addr.strip())[0]
        if spec or display:
            result.append(Address(display, spec))
    return tuple(result)


def _clean_addr_spec(addr: str) -> str:
    addr = addr.strip().strip("<>").strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        return ""
    if _ADDR_SPEC_JUNK.search(addr):
        return ""
    return f"{local}@{domain.lower()}"


def parse_msgids(value: str | None) -> tuple[str, ...]:
    """Return the message ids in an In-Reply-To or References value, without brackets.

    Broken mailers send ids without angle brackets or separated by commas; then
    every whitespace- or comma-separated token that contains "@" is taken.
    """
    if not value:
        return ()
    found = [m.strip() for m in _MSGID.findall(value)]
    if not found:
        found = [t.strip("<>") for t in re.split(r"[\s,]+", value) if "@" in t]
    return tuple(dict.fromkeys(i for i in found if i))


def parse_message_id(value: str | None) -> str | None:
    """Return a Message-ID without brackets and whitespace, None when absent or blank."""
    if value is None:
        return None
    found = _MSGID.search(value)
    text = found.group(1) if found else value
    text = re.sub(r"\s+", "", text).strip("<>")
    return text or None


def parse_date(value: str | None) -> datetime | None:
    """Parse a Date header into an aware UTC datetime, None when it cannot be read.

    A date without a zone (or "-0000", "zone unknown" per RFC 5322) is taken as UTC.
    """
    if not value or not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except Exception:  # noqa: BLE001 - TypeError/ValueError/IndexError/OverflowError all occur.
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None
