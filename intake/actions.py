# SPDX-License-Identifier: GPL-3.0-or-later
"""Carrying out commands on a case, and answering requests by mail, inside the caller's transaction.

Whether a command may run is decided by the pure `intake.commands.judge()`; this module only writes
what it decided, one status_change entry per command, and reports what was done and refused so the
sender's confirmation can list both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from intake.commands import CaseState, Command, after, judge
from intake.plan import Plan
from intake.requests import Request, parse_settings
from intake.trust import StaffPolicy
from store import cases
from store.codes import format_case_number
from store.contacts import address_key, ensure_contact, get_contact
from store.mailing import Identity, queue_notice
from store.models import Case, Contact

# How many cases a "my cases" answer lists; the rest are counted, and a search narrows them down.
MAX_LISTED = 50


@dataclass
class CommandResult:
    done: list[dict[str, str]] = field(default_factory=list)      # {"line", "what"}
    refused: list[dict[str, str]] = field(default_factory=list)   # {"line", "reason"}
    events: list[str] = field(default_factory=list)               # "closed", "status_change"


def run_commands(s: Session, case: Case, plan: Plan, author: Contact, *, is_staff: bool, staff: StaffPolicy,
                 identity: Identity, now: datetime) -> CommandResult:
    """Judge and carry out the plan's commands in order; each sees the case as the previous left it."""
    result = CommandResult(refused=[{"line": r.line, "reason": r.reason} for r in plan.refused])
    if not plan.commands:
        # Most mail carries none; the case's state below costs two queries.
        return result
    current = cases.assignee(s, case)
    state = CaseState(
        status=case.status, severity=case.severity, product=case.product, version=case.version,
        requester=case.requester.address_key,
        cc=frozenset(c.address_key for c in cases.copied(s, case)),
        assignee=current.address_key if current else None,
        ours=frozenset(address_key(a) for a in identity.support_addresses),
        is_staff_address=staff.is_staff_address,
    )
    for cmd in plan.commands:
        why = judge(cmd, state, sender=author.address_key, is_staff=is_staff)
        if why is not None:
            result.refused.append({"line": cmd.line, "reason": why})
            continue
        if cmd.name == "note":
            # The planner already made the mail an internal note; there is nothing to change.
            result.done.append({"line": cmd.line, "what": "kept as an internal note, not sent to the customer"})
            continue
        what = _carry_out(s, case, cmd, author, now)
        state = after(cmd, state, sender=author.address_key)
        result.done.append({"line": cmd.line, "what": what})
        event = "closed" if cmd.name == "close" else "status_change"
        # Closing is news for the customer; the other changes concern the desk's own bookkeeping.
        cases.add_entry(s, case, kind="status_change", visibility="public" if event == "closed" else "internal",
                        author=author, subject=f"#{cmd.name}", text=what,
                        details={"command": cmd.line, "status": case.status}, now=now)
        if event not in result.events:
            result.events.append(event)
    return result


def _carry_out(s: Session, case: Case, cmd: Command, author: Contact, now: datetime) -> str:
    if cmd.name == "close":
        cases.close_case(s, case, now=now)
        return "closed the case"
    if cmd.name == "severity":
        old, case.severity, case.severity_source = case.severity, int(cmd.value or 0), "staff"
        return f"severity {old} -> {case.severity}"
    if cmd.name in ("product", "version"):
        old = getattr(case, cmd.name)
        setattr(case, cmd.name, str(cmd.value))
        return f"{cmd.name} {old or '(none)'} -> {cmd.value}"
    address = author.address if cmd.value == "me" else str(cmd.value)
    if cmd.name == "assign":
        contact = author if cmd.value == "me" else ensure_contact(s, address, role="staff", now=now)
        cases.set_assignee(s, case, contact, now=now)
        return f"assigned to {contact.address}"
    if cmd.name == "cc":
        contact = ensure_contact(s, address, now=now)
        cases.add_participant(s, case, contact, role="cc", now=now)
        return f"copied {contact.address} on the case"
    if cmd.name == "uncc":
        found = get_contact(s, address)
        if found is not None:
            cases.remove_participant(s, case, found)
        return f"removed {address} from the case"
    raise ValueError(f"unknown command {cmd.name!r}")


def answer_request(s: Session, request: Request, author: Contact, *, text: str, in_reply_to: str | None,
                   identity: Identity, now: datetime) -> None:
    """Answer "my cases", "help" or "settings" by mail to its sender; nothing else changes but settings."""
    extra: dict[str, Any] = {"request": {"kind": request.kind, "status": request.status, "search": request.search}}
    if request.kind == "my-cases":
        found = cases.listing(s, status=request.status, search=request.search, requester=author.address,
                              limit=MAX_LISTED + 1)
        extra["cases"] = [_case_row(c) for c in found[:MAX_LISTED]]
        extra["more"] = len(found) > MAX_LISTED
        template = "customer/my_cases"
    elif request.kind == "settings":
        change = parse_settings(text)
        if change.name is not None:
            author.display_name = change.name
        if change.notify is not None:
            author.notify = change.notify
        extra["settings"] = {"name": author.display_name, "notify": author.notify, "done": list(change.done),
                             "refused": [{"line": r.line, "reason": r.reason} for r in change.refused]}
        template = "customer/settings"
    else:
        template = "customer/help"
    queue_notice(s, identity=identity, template=template, recipients=[author.address], now=now,
                 in_reply_to=in_reply_to, extra=extra)


def _case_row(case: cases.CaseListing) -> dict[str, Any]:
    return {"number": format_case_number(case.number), "subject": case.subject, "status": case.status,
            "severity": case.severity, "updated": case.updated_at.strftime("%Y-%m-%d %H:%M UTC")}
