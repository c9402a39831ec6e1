# SPDX-License-Identifier: GPL-3.0-or-later
"""The support mails every system of the peer benchmark gets: the same bytes, each with its own tag.

N small mails from bench/mailgen.py (seed 1) become N/2 new tickets and N/2 follow-ups:

- mails 1..N/2 are mailgen's first N/2 small mails, unchanged: each opens a ticket (N/2 tickets);
- mail N/2 + k (k = 1..N/2) is mailgen's mail N/2 + k, answering ticket k: it comes from the sender
  of mail k, its subject is "Re: <tag of ticket k> <subject of mail k>", and its In-Reply-To and
  References are removed.

Only the subject tag differs between the systems, each getting the tag it writes itself (Roundup
"[issue3]", django-helpdesk "[SUP-3]" with its queue's slug, casemail "[Case #00000003]"), so every
system threads the follow-ups by its own subject tag and nothing else. The follow-up keeps the
sender of the ticket because casemail (rightly) does not let a stranger write into a case by naming
its number; Roundup and django-helpdesk would take the mail from anyone.

Every ticket is numbered in the order its mail is processed, starting from 1 on a fresh database, so
the k-th new mail is ticket k in every system.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[1]
for _path in (_REPO / "bench", _REPO):
    if str(_path) not in sys.path:
        # mailgen is a sibling script, and the tag comes from casemail's own code.
        sys.path.insert(0, str(_path))

import mailgen  # noqa: E402
from store.codes import format_tag  # noqa: E402

from feedcommon import MANIFEST  # noqa: E402

# The slug of the django-helpdesk queue the mails go to; its tickets are tagged "[SUP-<id>]".
HELPDESK_QUEUE = "SUP"

# The subject tag of ticket n, per system.
TAGS = {
    "casemail": format_tag,
    "roundup": lambda n: f"[issue{n}]",
    "helpdesk": lambda n: f"[{HELPDESK_QUEUE}-{n}]",
}

_HEADER_END = b"\r\n\r\n"
_REPLY_PREFIX = re.compile(r"^(?:re:\s*)+", re.I)


def _fields(head: bytes) -> list[tuple[str, bytes]]:
    """The header block as (lower-case name, whole field with its folded lines) pairs, in order."""
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, text = fields[-1]
            fields[-1] = (name, text + b"\r\n" + line)
        else:
            fields.append((line.split(b":", 1)[0].strip().lower().decode("ascii"), line))
    return fields


def _split(data: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    head, sep, rest = data.partition(_HEADER_END)
    return _fields(head), sep + rest


def _value(fields: list[tuple[str, bytes]], name: str) -> bytes:
    for field_name, text in fields:
        if field_name == name:
            return text.split(b":", 1)[1].strip()
    raise ValueError(f"the generated mail has no {name} field")


def follow_up(ticket_mail: bytes, body_mail: bytes, tag: str) -> bytes:
    """body_mail rewritten as the ticket sender's answer to ticket_mail's ticket, threaded by tag only."""
    ticket_fields, _ = _split(ticket_mail)
    fields, rest = _split(body_mail)
    subject = _REPLY_PREFIX.sub("", _value(ticket_fields, "subject").decode("utf-8"))
    replaced = {
        "from": b"From: " + _value(ticket_fields, "from"),
        "return-path": b"Return-Path: " + _value(ticket_fields, "return-path"),
        "subject": f"Subject: Re: {tag} {subject}".encode("utf-8"),
    }
    out = [replaced.get(name, text) for name, text in fields if name not in ("in-reply-to", "references")]
    return b"\r\n".join(out) + rest


def build(count: int, *, seed: int = 1) -> dict[str, list[bytes]]:
    """The mails of each system, in processing order; count is rounded down to an even number."""
    half = count // 2
    base = [m.data for m in mailgen.generate("small", 2 * half, seed=seed)]
    return {
        system: base[:half] + [follow_up(base[k], base[half + k], tag(k + 1)) for k in range(half)]
        for system, tag in TAGS.items()
    }


def write(folder: Path, system: str, mails: list[bytes]) -> Path:
    """Write one system's mails as numbered .eml files beside a manifest; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    half = len(mails) // 2
    for i, data in enumerate(mails):
        kind = "new" if i < half else "reply"
        (folder / f"{i + 1:05d}-{kind}.eml").write_bytes(data)
    manifest = {"mails": len(mails), "tickets": half, "tag": TAGS[system](1), "system": system,
                "mean_bytes": round(sum(map(len, mails)) / max(1, len(mails)))}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder
