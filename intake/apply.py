# SPDX-License-Identifier: GPL-3.0-or-later
"""Carrying out a plan inside the caller's transaction: the only intake module that writes cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from intake.body import BodyText
from intake.classify import Classification
from intake.commands import CommandMail
from intake.fields import CaseFields
from intake.parse import ParsedMail
from intake.actions import answer_request, run_commands
from store.audience import NOTE_TEMPLATES, Notice, notices_for
from intake.plan import Plan
from intake.requests import Request
from intake.resolve import ThreadDecision
from intake.trust import StaffPolicy
from store import cases, outbox
from store.codes import clean_subject, format_case_number
from store.contacts import address_key, ensure_contact, mark_bouncing
from store.mailing import Identity, audience_addresses, deliverable, queue_case_mail, queue_notice
from store.models import Case, Contact, Inbound

DEFAULT_SEVERITY = 3


@dataclass(frozen=True)
class MailFacts:
    """What was read from one message, ready for deciding."""

    parsed: ParsedMail
    classification: Classification
    body: BodyText
    fields: CaseFields
    attachments: tuple[cases.NewAttachment, ...]
    refused_attachments: tuple[tuple[str, str], ...]
    dangerous_attachments: tuple[str, ...]
    sender: str
    sender_name: str
    is_staff: bool          # a staff address with an authenticated sender
    staff_claimed: bool     # a staff address in From, authenticated or not
    recipients: tuple[str, ...]
    # What the text alone decides (intake/process.py read_mail).
    thread: ThreadDecision
    commands: CommandMail
    close_word: bool        # the whole text is "close"
    thanks_only: bool       # the text only says thanks
    request: Request | None  # the subject asks for "my cases", "help" or "settings"


def apply_plan(
    s: Session,
    row: Inbound,
    plan: Plan,
    decision: ThreadDecision,
    facts: MailFacts,
    case: Case | None,
    identity: Identity,
    staff: StaffPolicy,
    now: datetime,
) -> int | None:
    """Write what the plan says; return the id of the case the mail ended up on, if any."""
    if facts.classification.bounce is not None:
        _record_bounce(s, facts, now)
    if plan.action == "ignore":
        return None
    author = ensure_contact(s, facts.sender, display_name=facts.sender_name,
                            role="staff" if facts.is_staff else "customer", now=now)
    if plan.action == "hold":
        for notice in plan.notices:
            queue_notice(s, identity=identity, template=notice.template, recipients=[author.address], now=now,
                         in_reply_to=facts.parsed.message_id)
        return None
    if plan.action == "request":
        assert plan.request is not None
        answer_request(s, plan.request, author, text=facts.body.visible, in_reply_to=facts.parsed.message_id,
                       identity=identity, now=now)
        return None
    details = _details(plan, decision, facts)

    if plan.action == "system-event":
        assert case is not None
        cases.add_entry(s, case, kind="system_event", visibility="internal", author=author,
                        subject=facts.parsed.subject, text=facts.body.visible, full_text=facts.body.full,
                        html=facts.body.html, message_id=facts.parsed.message_id,
                        matched_by=decision.matched_by, details=details, inbound_id=row.id,
                        attachments=facts.attachments, touch=False, now=now)
        return case.id

    if plan.action == "new-case":
        case = _open_case(s, plan, facts, author, now)
        matched_by = "new"
    else:
        assert case is not None
        matched_by = decision.matched_by
    _add_copied_people(s, case, facts, identity, staff, now)
    text = plan.text if plan.text is not None else facts.body.visible
    entry_id = cases.add_entry(
        s, case, kind=plan.entry_kind, visibility=plan.visibility, author=author,
        subject=facts.parsed.subject, text=text, full_text=facts.body.full,
        html=facts.body.html, message_id=facts.parsed.message_id, matched_by=matched_by,
        details=details, inbound_id=row.id, attachments=facts.attachments, touch=plan.touch, now=now,
    )
    done = run_commands(s, case, plan, author, is_staff=facts.is_staff, staff=staff, identity=identity, now=now)
    if done.done or done.refused:
        cases.set_entry_details(s, entry_id, {**details, "commands": {"done": done.done, "refused": done.refused}})
    extra = {
        "entry": {
            "id": entry_id,
            "author_name": author.display_name or author.address,
            "text": text,
            "attachments": [a.filename for a in facts.attachments],
        },
        "notes": list(plan.notes),
        "related_to": format_case_number(plan.related_to) if plan.related_to else None,
        "not_kept": [{"filename": n, "reason": r} for n, r in facts.refused_attachments],
        "dangerous": list(facts.dangerous_attachments),
        "changes": done.done,
        "done": done.done,
        "refused": done.refused,
    }
    notices = list(plan.notices) + [n for event in done.events for n in notices_for(event)]
    if "closed" in done.events and not facts.is_staff:
        # The closed notice is how a customer who closed their own case learns that it worked.
        notices.append(Notice("customer/closed", "sender"))
    if facts.refused_attachments and not any(n.template == "customer/ack" for n in notices):
        # The sender must learn which files did not arrive; a new case's acknowledgement says it, a
        # comment gets a short notice of its own.
        notices.append(Notice("customer/not_kept", "sender"))
    if plan.confirm == "staff/confirm" or (plan.confirm and done.refused):
        # Staff are told what each of their commands did; a customer's own close is confirmed by the
        # closed notice, so a customer hears back separately only about what was refused.
        notices.append(Notice(plan.confirm, "sender"))
    _queue(s, notices, case, author, identity, staff, facts, extra, now)
    return case.id


def _queue(s: Session, notices: list[Notice], case: Case, author: Contact, identity: Identity, staff: StaffPolicy,
           facts: MailFacts, extra: dict[str, Any], now: datetime) -> None:
    # One mail per template, to everyone any of its audiences names, each address once.
    by_template: dict[str, list[str]] = {}
    for notice in notices:
        wanted = by_template.setdefault(notice.template, [])
        for address in _recipients(s, notice, case, author, identity, staff):
            if address_key(address) not in {address_key(a) for a in wanted}:
                wanted.append(address)
    for template, recipients in by_template.items():
        if not recipients:
            continue
        context = dict(extra)
        if template == "customer/reply":
            context.update(_relay(author, identity, facts))
            # The signature line names the staff member, never their address (they may have no name).
            context["entry"] = {**extra["entry"], "author_name": author.display_name.strip() or identity.support_name}
        # A customer never saw a staff member's own mail, so mail to customers does not answer it.
        answers = None if facts.is_staff and not template.startswith("staff/") else facts.parsed.message_id
        # _recipients left out every bouncing address already, from the contacts it read.
        queue_case_mail(s, case, identity=identity, template=template, recipients=recipients, now=now,
                        in_reply_to=answers, extra=context, note=template in NOTE_TEMPLATES, screened=True)


def _relay(author: Contact, identity: Identity, facts: MailFacts) -> dict[str, Any]:
    """What a staff reply relayed to the customer carries beyond its text: a name and the files.

    The customer sees the staff member's name, but the mail comes from the support address: a reply
    must come back to the desk, and the staff member's own address stays private.
    """
    name = author.display_name.strip()
    return {
        "from_name": f"{name} via {identity.support_name}" if name else identity.support_name,
        "attachments": [{"sha256": a.sha256, "filename": a.filename, "type": a.declared_type or a.sniffed_type}
                        for a in facts.attachments],
    }


def _open_case(s: Session, plan: Plan, facts: MailFacts, requester: Contact, now: datetime) -> Case:
    fields = facts.fields
    follow_up = cases.get_case(s, plan.follow_up_of) if plan.follow_up_of else None
    subject = clean_subject(facts.parsed.subject) or "(no subject)"
    return cases.create_case(
        s,
        subject=subject,
        requester=requester,
        description=facts.body.visible,
        product=fields.product,
        version=fields.version,
        severity=fields.severity or DEFAULT_SEVERITY,
        severity_source=fields.severity_source or "default",
        production_down=fields.production_down,
        follow_up_of=follow_up,
        now=now,
    )


def _add_copied_people(s: Session, case: Case, facts: MailFacts, identity: Identity, staff: StaffPolicy,
                       now: datetime) -> None:
    # The people a case member copies on a mail follow the case from then on (the portal's CC list).
    # Our own addresses and staff are not participants: staff follow cases through their own role.
    ours = {address_key(a) for a in identity.support_addresses}
    for addr in (*facts.parsed.to, *facts.parsed.cc):
        key = address_key(addr.address)
        local, _, domain = key.partition("@")
        if not domain or key == address_key(facts.sender) or staff.is_staff_address(key):
            continue
        if key in ours or f"{local.split('+')[0]}@{domain}" in ours:
            continue
        contact = ensure_contact(s, addr.address, display_name=addr.name, now=now)
        cases.add_participant(s, case, contact, now=now)


def _recipients(s: Session, notice: Notice, case: Case, author: Contact, identity: Identity,
                staff: StaffPolicy) -> list[str]:
    if notice.audience == "staff":
        routed = staff.notified_for(case.product, case.severity)
        # One query for all of them rather than a contact lookup per address.
        return deliverable(s, [a for a in routed if a != author.address_key])
    if notice.audience != "sender":
        return audience_addresses(s, case, notice, author=author, support_addresses=identity.support_addresses)
    ours = {address_key(a) for a in identity.support_addresses}
    # Never mail ourselves (a loop) or an address known to bounce.
    return [author.address] if not author.bouncing and author.address_key not in ours else []


def _record_bounce(s: Session, facts: MailFacts, now: datetime) -> None:
    """Mark the mail that bounced as failed and, for a hard bounce, stop mailing the address.

    Only a bounce that names one of our own Message-IDs changes anything, and only for addresses that
    mail was sent to: otherwise a forged "bounce" could silence mail to anybody.
    """
    bounce = facts.classification.bounce
    assert bounce is not None
    reason = bounce.diagnostic or ("permanent failure" if bounce.permanent else "delivery delayed")
    for message_id in bounce.original_message_ids:
        row = outbox.find_by_message_id(s, message_id)
        if row is None:
            continue
        if bounce.permanent:
            outbox.mark_bounced(s, row, reason=reason)
            sent_to = {address_key(r) for r in row.recipients}
            for recipient in bounce.recipients:
                if address_key(recipient) in sent_to:
                    mark_bouncing(s, recipient, reason=reason, now=now)
        elif row.last_error is None:
            row.last_error = f"delayed: {reason}"[:2000]


def _details(plan: Plan, decision: ThreadDecision, facts: MailFacts) -> dict[str, Any]:
    details: dict[str, Any] = {
        "classification": str(facts.classification.kind),
        "referenced": [format_case_number(n) for n in decision.referenced],
    }
    if plan.notes:
        details["notes"] = list(plan.notes)
    if facts.classification.is_automatic:
        details["classification_reasons"] = list(facts.classification.reasons)
    if facts.staff_claimed and not facts.is_staff:
        details["unauthenticated_staff_address"] = True
    if facts.refused_attachments:
        details["attachments_not_kept"] = [{"filename": n, "reason": r} for n, r in facts.refused_attachments]
    if facts.dangerous_attachments:
        details["dangerous_attachments"] = list(facts.dangerous_attachments)
    if facts.classification.bounce is not None:
        b = facts.classification.bounce
        details["bounce"] = {"permanent": b.permanent, "recipients": list(b.recipients), "diagnostic": b.diagnostic}
    if facts.parsed.defects:
        details["defects"] = list(facts.parsed.defects)[:20]
    if facts.body.signature:
        details["signature"] = facts.body.signature
    if facts.fields.severity_source:
        details["severity_source"] = facts.fields.severity_source
    return details
