# SPDX-License-Identifier: GPL-3.0-or-later
"""Limits on what one mail may bring in (pure).

Attachments past the limits are not stored, but the mail itself always is: the sender is told which
files were not kept and why, so they can send them another way. Files of dangerous types
(executables, scripts, macro-enabled documents) are kept but flagged, because staff must know before
they open one; the decision rests on the name and on the sniffed type, since either alone is easy to
fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from intake.parse import Attachment

DANGEROUS_EXTENSIONS = frozenset({
    "exe", "com", "scr", "pif", "bat", "cmd", "msi", "msp", "dll", "cpl", "jar", "js", "jse", "vbs", "vbe",
    "wsf", "wsh", "ps1", "psm1", "hta", "lnk", "reg", "sh", "iso", "img", "vhd", "vhdx", "application",
    "docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppam", "sldm", "one", "chm",
})
DANGEROUS_TYPES = frozenset({
    "application/x-dosexec", "application/x-msdownload", "application/x-executable", "application/x-sharedlib",
    "application/x-msi", "application/vnd.ms-excel.sheet.macroenabled.12",
    "application/vnd.ms-word.document.macroenabled.12", "application/x-sh", "text/x-shellscript",
    "application/java-archive", "application/x-ms-shortcut",
})


@dataclass(frozen=True)
class AttachmentLimits:
    max_count: int = 50
    max_file_bytes: int = 20 * 1024 * 1024
    max_total_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class AttachmentVerdict:
    kept: tuple[Attachment, ...]
    refused: tuple[tuple[str, str], ...]    # (file name, why it was not kept)
    dangerous: tuple[str, ...]               # names of kept files of a dangerous type


def is_dangerous(attachment: Attachment) -> bool:
    extension = attachment.filename.rpartition(".")[2].lower() if "." in attachment.filename else ""
    return extension in DANGEROUS_EXTENSIONS or attachment.sniffed_type.lower() in DANGEROUS_TYPES


def judge_attachments(attachments: Sequence[Attachment], limits: AttachmentLimits) -> AttachmentVerdict:
    """Decide which attachments are kept, in the order they came, within the limits."""
    kept: list[Attachment] = []
    refused: list[tuple[str, str]] = []
    total = 0
    for a in attachments:
        if a.size > limits.max_file_bytes:
            refused.append((a.filename, f"larger than the {_mib(limits.max_file_bytes)} limit per file"))
        elif len(kept) >= limits.max_count:
            refused.append((a.filename, f"more than {limits.max_count} files in one mail"))
        elif total + a.size > limits.max_total_bytes:
            refused.append((a.filename, f"the files of one mail exceed {_mib(limits.max_total_bytes)} in all"))
        else:
            kept.append(a)
            total += a.size
    return AttachmentVerdict(tuple(kept), tuple(refused), tuple(a.filename for a in kept if is_dangerous(a)))


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"
