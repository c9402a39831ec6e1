# SPDX-License-Identifier: GPL-3.0-or-later
"""Attachment file names: decoding them from MIME headers and making them safe.

A file name in a mail is chosen by the sender, so it is hostile input: it may carry
path separators, "..", control characters, bidirectional overrides that disguise the
extension, Windows device names, or thousands of characters. Everything here is pure
and never raises.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from collections.abc import Iterable
from email.message import Message
from types import MappingProxyType

from intake.headers import decode_bytes, decode_words, eight_bit_text, has_raw_bytes

# File names are stored on disk and shown in mail clients; 150 UTF-8 bytes leaves
# room under the common 255-byte limit for the " (2)" suffix and a blob-store prefix.
MAX_FILENAME_BYTES = 150

# An extension longer than this is treated as part of the stem, so that a name made
# of one very long "extension" is still truncated sensibly.
_MAX_EXTENSION_CHARS = 16

# Device names that Windows refuses as a file name, with or without an extension.
_RESERVED_STEMS = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"COM{c}" for c in "123456789¹²³"}
    | {f"LPT{c}" for c in "123456789¹²³"}
)

# Characters that are illegal in Windows file names; path separators are handled
# before this (everything up to the last separator is dropped).
_FORBIDDEN = re.compile(r'[<>:"|?*]')
_SPACES = re.compile(r"\s+")

# mimetypes answers from the host's mime.types files, which differ between machines;
# the common types are pinned here so invented names are the same everywhere.
_EXTENSIONS = MappingProxyType(
    {
        "application/octet-stream": ".bin",
        "application/pdf": ".pdf",
        "application/zip": ".zip",
        "application/ms-tnef": ".dat",
        "application/vnd.ms-tnef": ".dat",
        "application/pgp-signature": ".asc",
        "application/pkcs7-signature": ".p7s",
        "application/x-pkcs7-signature": ".p7s",
        "image/jpeg": ".jpg",
        "image/pjpeg": ".jpg",
        "image/png": ".png",
        "image/gif": ".gif",
        "image/bmp": ".bmp",
        "image/webp": ".webp",
        "image/tiff": ".tif",
        "image/svg+xml": ".svg",
        "text/plain": ".txt",
        "text/html": ".html",
        "text/calendar": ".ics",
        "text/csv": ".csv",
        "text/rfc822-headers": ".txt",
        "message/rfc822": ".eml",
        "message/global": ".eml",
        "message/delivery-status": ".txt",
        "message/global-delivery-status": ".txt",
        "message/disposition-notification": ".txt",
        "message/feedback-report": ".txt",
    }
)

# Main types whose invented names say what they are ("image-2.png"); the rest are
# called "attachment-N".
_NAMED_MAINTYPES = frozenset({"image", "audio", "video"})


def part_filename(part: Message) -> str | None:
    """Return the decoded file name a MIME part declares, or None.

    Content-Disposition's filename wins over Content-Type's name, as in every mail
    client. RFC 2231 parameters (continuations, and the charset'lang'value form) are
    reassembled by the stdlib; their bytes are decoded here with charset fallbacks,
    and RFC 2047 encoded words, which many mailers use in parameters although the
    RFC forbids it, are decoded too.

    >>> from email import message_from_string
    >>> part_filename(message_from_string("Content-Type: a/b; name==?utf-8?q?r=C3=A9sum=C3=A9.pdf?="))
    'résumé.pdf'
    """
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        try:
            value = _header_view(part, header).get_param(param, None, header=header)
        except Exception:  # noqa: BLE001 - a broken header must not stop the parse.
            continue
        if value is None:
            continue
        text = _param_text(value)
        if text.strip():
            return text
    return None


def _header_view(part: Message, header: str) -> Message:
    # compat32 turns a header value holding raw 8-bit bytes into a Header object
    # whose text has lost those bytes, so get_param would see replacement
    # characters. Such a value is decoded here and put into a throw-away message.
    raw = next((v for k, v in part.raw_items() if k.strip().lower() == header), None)
    if not isinstance(raw, str) or not has_raw_bytes(raw):
        return part
    view = Message()
    view[header] = eight_bit_text(raw, _charset_param(part))[0]
    return view


def _charset_param(part: Message) -> str | None:
    try:
        value = part.get_param("charset")
    except Exception:  # noqa: BLE001 - malformed parameters are treated as absent.
        return None
    return value if isinstance(value, str) else None


def _param_text(value: str | tuple[str | None, str | None, str]) -> str:
    # An RFC 2231 value arrives as (charset, language, text) where the text holds
    # the percent-decoded bytes as latin-1 code points (surrogate-escaped when the
    # message was parsed from bytes); re-encode and decode with the named charset.
    if isinstance(value, tuple):
        charset, _language, text = value
        raw = text.encode("latin-1", "surrogateescape") if _is_latin1(text) else text.encode("utf-8", "surrogateescape")
        decoded, _notes = decode_bytes(raw, charset or "utf-8")
        return decoded
    # A plain parameter may hold RFC 2047 encoded words (against RFC 2231, but
    # common); quotes have already been removed by get_param.
    decoded, _notes = decode_words(value)
    return decoded


def _is_latin1(text: str) -> bool:
    return all(ord(ch) < 256 or "\udc80" <= ch <= "\udcff" for ch in text)


def sanitize_filename(name: str, max_bytes: int = MAX_FILENAME_BYTES) -> str:
    """Return a file name that is safe on any file system, or "" if nothing is left.

    The last path component is kept (no separators, so no traversal); control and
    format characters (NUL, newlines, bidi overrides) are removed; characters that
    Windows forbids become "_"; leading dots and trailing dots and spaces go; a
    Windows device name gets a "_" prefix; and the name is cut to max_bytes of UTF-8
    keeping its extension.

    >>> sanitize_filename("../../etc/passwd")
    'passwd'
    >>> sanitize_filename("CON.txt")
    '_CON.txt'
    """
    text = unicodedata.normalize("NFC", name)
    # Both separators count, whatever the platform the sender used.
    text = re.split(r"[/\\]", text)[-1]
    # Whitespace controls (tab, CR, LF) become spaces; other controls vanish.
    text = _SPACES.sub(" ", text)
    text = "".join(ch for ch in text if not _is_invisible(ch))
    text = _FORBIDDEN.sub("_", text)
    text = _SPACES.sub(" ", text).strip()
    text = text.lstrip(". ").rstrip(". ")
    if not text or set(text) <= {"_", " ", "."}:
        return ""
    stem, ext = _split_extension(text)
    if stem.split(".")[0].rstrip(" ").upper() in _RESERVED_STEMS:
        stem = "_" + stem
    return _truncate(stem, ext, max_bytes)


def _is_invisible(ch: str) -> bool:
    # Cc: C0/C1 controls incl. NUL, CR, LF, DEL; Cf: format characters such as
    # U+202E (right-to-left override, used to show "exe.pdf" as "fdp.exe") and
    # zero-width spaces; Zl/Zp: line and paragraph separators; Cs: lone surrogates
    # left by undecodable bytes; Co/Cn: private-use and unassigned code points.
    return unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def _split_extension(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or not ext or len(ext) > _MAX_EXTENSION_CHARS or " " in ext:
        return name, ""
    return stem, "." + ext


def _truncate(stem: str, ext: str, max_bytes: int) -> str:
    budget = max_bytes - len(ext.encode("utf-8"))
    encoded = stem.encode("utf-8")
    if len(encoded) <= budget:
        return stem + ext
    # Cut on a character boundary, then tidy the cut end the same way as the whole.
    cut = encoded[: max(budget, 1)].decode("utf-8", "ignore").rstrip(". ")
    return (cut or "file") + ext


def invent_filename(content_type: str, index: int) -> str:
    """Name a part that has none, from its content type and its 1-based position.

    >>> invent_filename("image/png", 2)
    'image-2.png'
    >>> invent_filename("application/x-unheard-of", 1)
    'attachment-1.bin'
    """
    ctype = content_type.lower()
    maintype = ctype.partition("/")[0]
    ext = _EXTENSIONS.get(ctype)
    if ext is None:
        try:
            ext = mimetypes.guess_extension(ctype, strict=False)
        except Exception:  # noqa: BLE001 - an odd type string must not stop the parse.
            ext = None
    if ext is None:
        ext = ".txt" if maintype in {"text", "message"} else ".bin"
    prefix = maintype if maintype in _NAMED_MAINTYPES else "attachment"
    return f"{prefix}-{index}{ext}"


def guess_type(filename: str) -> str:
    """Guess a content type from a file name, "application/octet-stream" if unknown."""
    guessed, _encoding = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def unique_filenames(names: Iterable[str]) -> tuple[str, ...]:
    """Number repeated names within one mail: "report.pdf", "report (2).pdf", ...

    Names are compared without regard to case, because the file systems of most
    desktop users (Windows, macOS) do not distinguish them either.

    >>> unique_filenames(["a.txt", "A.txt", "a.txt"])
    ('a.txt', 'A (2).txt', 'a (3).txt')
    """
    taken: set[str] = set()
    result: list[str] = []
    for name in names:
        candidate = name
        stem, ext = _split_extension(name)
        number = 2
        while candidate.casefold() in taken:
            candidate = _truncate(f"{stem} ({number})", ext, MAX_FILENAME_BYTES + 8)
            number += 1
        taken.add(candidate.casefold())
        result.append(candidate)
    return tuple(result)
