# SPDX-License-Identifier: GPL-3.0-or-later
"""Attachment records: content sniffing, hashing, and unpacking winmail.dat (TNEF).

libmagic (python-magic) sniffs the real type because the declared type is whatever
the sender's client guessed, or chose to claim. tnefparse unpacks the TNEF container
that Outlook sends instead of ordinary MIME attachments, so that staff see the files
rather than an opaque winmail.dat.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import magic
from tnefparse import TNEF

from intake.filenames import guess_type, invent_filename, sanitize_filename, unique_filenames

# libmagic needs only the start of a file; 8 KiB is what it reads from disk too.
SNIFF_BYTES = 8192

# Every TNEF stream starts with this signature (0x223E9F78, little-endian).
TNEF_SIGNATURE = b"\x78\x9f\x3e\x22"

TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


@dataclass(frozen=True)
class Attachment:
    """One file carried by a mail, with its bytes decoded."""

    filename: str  # safe name, never empty
    declared_type: str  # lower-case content type from the part header
    sniffed_type: str  # libmagic's MIME type, "application/octet-stream" if unknown
    content: bytes  # decoded bytes, never base64 text
    size: int
    sha256: str  # hex
    content_id: str | None  # without angle brackets
    inline: bool  # Content-Disposition inline, or referenced by cid: from the HTML body


def sniff_type(content: bytes) -> str:
    """Return libmagic's MIME type for content, "application/octet-stream" if unknown."""
    try:
        found = magic.from_buffer(content[:SNIFF_BYTES], mime=True)
    except Exception:  # noqa: BLE001 - libmagic errors must not stop a parse.
        return "application/octet-stream"
    return found.lower() if isinstance(found, str) and "/" in found else "application/octet-stream"


def make_attachment(
    filename: str,
    declared_type: str,
    content: bytes,
    content_id: str | None = None,
    inline: bool = False,
) -> Attachment:
    """Build an Attachment, computing size, hash and sniffed type from content.

    filename must already be safe and unique; see intake.filenames.
    """
    return Attachment(
        filename=filename,
        declared_type=declared_type.lower(),
        sniffed_type=sniff_type(content),
        content=content,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content_id=content_id,
        inline=inline,
    )


def is_tnef(declared_type: str, filename: str | None, content: bytes) -> bool:
    """True when a part is a TNEF container: declared so or named winmail.dat, and signed so."""
    named = (filename or "").strip().lower() in {"winmail.dat", "win.dat"}
    return (declared_type.lower() in TNEF_TYPES or named) and content.startswith(TNEF_SIGNATURE)


def unpack_tnef(data: bytes) -> tuple[Attachment, ...]:
    """Return the files inside a TNEF (winmail.dat) stream, in order, with safe unique names.

    The declared type of each file is guessed from its name, as TNEF carries none.
    Raises ValueError when data is not a TNEF stream or tnefparse cannot read it,
    so that the caller can keep the original winmail.dat instead.
    """
    if not data.startswith(TNEF_SIGNATURE):
        raise ValueError("not a TNEF stream (bad signature)")
    try:
        # The checksum is skipped: Outlook's streams are often slightly off, and a
        # wrong checksum would lose files that are otherwise readable.
        tnef = TNEF(data, do_checksum=False)
    except Exception as exc:  # noqa: BLE001 - tnefparse raises anything from struct to IndexError.
        raise ValueError(f"tnefparse failed: {type(exc).__name__}") from exc
    names: list[str] = []
    contents: list[bytes] = []
    for index, item in enumerate(tnef.attachments, start=1):
        content = item.data if isinstance(item.data, bytes) else bytes(item.data or b"")
        names.append(sanitize_filename(_tnef_name(item)) or invent_filename("application/octet-stream", index))
        contents.append(content)
    return tuple(
        make_attachment(name, guess_type(name), content)
        for name, content in zip(unique_filenames(names), contents)
    )


def _tnef_name(item: object) -> str:
    # tnefparse gives the long file name as str, or bytes for some code pages, and
    # its name properties decode on access, so each may raise on a broken stream.
    for getter in (lambda: item.long_filename(), lambda: item.name):  # type: ignore[attr-defined]
        try:
            name = getter()
        except Exception:  # noqa: BLE001 - try the next source of a name.
            continue
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if isinstance(name, str) and name.strip("\x00").strip():
            return name.strip("\x00")
    return ""
