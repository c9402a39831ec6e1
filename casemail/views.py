# SPDX-License-Identifier: GPL-3.0-or-later
"""How cases look on the command line: plain dicts for --json, and text for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from store.cases import CaseListing
from store.codes import format_case_number
from store.models import Case, Entry, Participant

KIND_LABELS = {
    "customer_message": "mail from customer",
    "staff_reply": "reply from staff",
    "internal_note": "internal note",
    "notification": "mail sent",
    "status_change": "status change",
    "system_event": "automatic mail",
}


def case_row(case: CaseListing) -> dict[str, Any]:
    return {
        "number": format_case_number(case.number),
        "subject": case.subject,
        "status": case.status,
        "severity": case.severity,
        "production_down": case.production_down,
        "requester": case.requester_address,
        "updated": case.updated_at.isoformat(timespec="seconds"),
    }


def format_case_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "no cases"
    lines = [f"{'CASE':<8}  {'STATUS':<6}  SEV  {'UPDATED':<19}  {'REQUESTER':<28}  SUBJECT"]
    for r in rows:
        sev = f"{r['severity']}{'!' if r['production_down'] else ' '}"
        lines.append(f"{r['number']:<8}  {r['status']:<6}  {sev:<3}  {r['updated'][:19]:<19}  "
                     f"{_clip(r['requester'], 28):<28}  {_clip(r['subject'], 60)}")
    return "\n".join(lines)


def case_detail(case: Case, participants: Sequence[Participant], entries: Sequence[Entry]) -> dict[str, Any]:
    return {
        **case_row(CaseListing.of(case)),
        "product": case.product,
        "version": case.version,
        "severity_source": case.severity_source,
        "created": case.created_at.isoformat(timespec="seconds"),
        "closed": case.closed_at.isoformat(timespec="seconds") if case.closed_at else None,
        "follow_up_of": format_case_number(case.follow_up_of.number) if case.follow_up_of else None,
        "participants": [{"address": p.contact.address, "role": p.role} for p in participants],
        "history": [entry_view(e) for e in entries],
    }


def entry_view(e: Entry) -> dict[str, Any]:
    return {
        "entry": e.id,
        "at": e.created_at.isoformat(timespec="seconds"),
        "kind": e.kind,
        "visibility": e.visibility,
        "author": e.author.address if e.author else None,
        "subject": e.subject,
        "text": e.text,
        "message_id": e.message_id,
        "matched_by": e.matched_by,
        "has_raw": e.inbound_id is not None or e.outbox_id is not None,
        "attachments": [
            {"filename": a.filename, "type": a.sniffed_type, "declared_type": a.declared_type, "size": a.size,
             "sha256": a.sha256, "inline": a.inline}
            for a in e.attachments
        ],
        "details": e.details,
    }


def format_case_detail(d: dict[str, Any]) -> str:
    out = [
        f"Case {d['number']}: {d['subject']}",
        f"  status {d['status']}, severity {d['severity']}{' (production down)' if d['production_down'] else ''}"
        f" [{d['severity_source']}]",
        f"  requester {d['requester']}; created {d['created']}; updated {d['updated']}"
        + (f"; closed {d['closed']}" if d["closed"] else ""),
    ]
    if d["product"] or d["version"]:
        out.append(f"  product {d['product'] or '-'}, version {d['version'] or '-'}")
    if d["follow_up_of"]:
        out.append(f"  follows up closed case {d['follow_up_of']}")
    if d["participants"]:
        out.append("  people: " + ", ".join(p["address"] for p in d["participants"]))
    out.append("")
    for e in d["history"]:
        who = f" from {e['author']}" if e["author"] else ""
        how = f" (matched by {e['matched_by']})" if e["matched_by"] and e["matched_by"] != "new" else ""
        raw = f"  [--raw {e['entry']}]" if e["has_raw"] else ""
        vis = " [internal]" if e["visibility"] != "public" else ""
        out.append(f"#{e['entry']} {e['at']} {KIND_LABELS.get(e['kind'], e['kind'])}{who}{how}{vis}{raw}")
        if e["subject"]:
            out.append(f"    Subject: {e['subject']}")
        for note in e["details"].get("notes", []):
            out.append(f"    Note: {note}")
        for line in (e["text"] or "").strip().splitlines()[:40]:
            out.append(f"    {line}")
        for a in e["attachments"]:
            out.append(f"    [attachment] {a['filename']} ({attachment_type(a['declared_type'], a['type'])}, "
                       f"{a['size']} bytes)")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# Types a sender gives when it does not know what it is sending.
_GENERIC_TYPES = {"", "application/octet-stream", "application/unknown", "binary/octet-stream"}


def attachment_type(declared: str, sniffed: str) -> str:
    """How the history shows an attachment's type: what the sender declared (text/csv says more than
    the text/plain its content sniffs as), what its content is when the declaration says nothing,
    and both when they disagree about the kind of thing it is (a "picture" that is a program)."""
    declared, sniffed = declared.strip().lower(), sniffed.strip().lower()
    if declared in _GENERIC_TYPES or not sniffed or declared == sniffed:
        return sniffed or declared or "unknown type"
    if declared.partition("/")[0] != sniffed.partition("/")[0] and sniffed not in _GENERIC_TYPES:
        return f"{declared}; its content is {sniffed}"
    return declared


def print_json(data: Any) -> None:
    """What every command prints with --json: indented, non-ASCII text as itself."""
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
