# SPDX-License-Identifier: GPL-3.0-or-later
"""Queueing a mail about a case: the identity every outgoing mail carries.

Intake and the CLI both queue mail about cases; the notifier only renders and sends. Everything that
ties a mail to its case (the signed Message-ID, the signed reply address, the footer token and the
References chain) is fixed here, when the mail is queued, so every retry sends the same mail.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from store import cases, outbox
from store.audience import ALWAYS, Notice, notices_for, wants
from store.codes import Signer, format_case_number, format_tag, tag_subject
from store.contacts import address_key
from store.db import plain
from store.models import Case, Contact, Entry

# How many earlier Message-IDs a References header carries: the first mail of the case and the
# most recent ones are what clients need to thread; the whole chain would grow without bound.
REFERENCES_KEPT = 10


def _unique() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Identity:
    """Who casemail is on the wire, and how it signs what it sends."""

    signer: Signer
    support_addresses: tuple[str, ...]
    support_name: str
    instance_id: str
    new_unique: Callable[[], str] = field(default=_unique)

    @property
    def support_address(self) -> str:
        return self.support_addresses[0]

    @property
    def domain(self) -> str:
        return self.support_address.rpartition("@")[2]


def case_summary(case: Case) -> dict[str, Any]:
    """A JSON-safe snapshot of a case for a template context."""
    return {
        "number": format_case_number(case.number),
        "tag": format_tag(case.number),
        "subject": case.subject,
        "tagged_subject": tag_subject(case.number, case.subject),
        "status": case.status,
        "severity": case.severity,
        "severity_source": case.severity_source,
        "production_down": case.production_down,
        "product": case.product,
        "version": case.version,
        "requester_name": case.requester.display_name,
        "requester_address": case.requester.address,
        "follow_up_of": format_case_number(case.follow_up_of.number) if case.follow_up_of else None,
        "created_at": case.created_at.isoformat(),
    }


# Built once: every processed mail queues at least one mail, and building these cost more than running them.
_THREAD_IDS = (select(Entry.message_id).where(Entry.case_id == bindparam("case_id"), Entry.message_id.is_not(None))
               .order_by(Entry.id))
_PUBLIC_THREAD_IDS = _THREAD_IDS.where(Entry.visibility == "public", Entry.kind != "staff_reply")
_BOUNCING = select(Contact.address_key).where(Contact.address_key.in_(bindparam("keys", expanding=True)),
                                              Contact.bouncing.is_(True))


def thread_ids(s: Session, case: Case, *, public: bool = False) -> list[str]:
    """The Message-IDs of the case's mails so far, oldest first.

    With `public`, only those a customer has seen: internal notes, staff-only notifications and the
    staff members' own mails (which carry their mail server's name) stay out of customers' headers.
    """
    q = _PUBLIC_THREAD_IDS if public else _THREAD_IDS
    return [m for m in plain(s).execute(q, {"case_id": case.id}).scalars() if m]


def queue_case_mail(
    s: Session,
    case: Case,
    *,
    identity: Identity,
    template: str,
    recipients: Sequence[str],
    now: datetime,
    in_reply_to: str | None = None,
    extra: dict[str, Any] | None = None,
    note: bool = False,
    screened: bool = False,
) -> outbox.Queued | None:
    """Queue one mail about a case, in the caller's transaction.

    Addresses marked as bouncing are left out (mailing them again only earns another bounce); when no
    recipient is left nothing is queued and None is returned. A caller that has already left them out,
    judging by contacts read in this transaction, says so with `screened` and saves the query.
    """
    if not screened:
        recipients = deliverable(s, recipients)
    if not recipients:
        return None
    ids = thread_ids(s, case, public=not template.startswith("staff/"))
    references = ids[:1] + ids[1:][-(REFERENCES_KEPT - 1):] if ids else []
    if in_reply_to and in_reply_to not in references:
        references.append(in_reply_to)
    message_id = identity.signer.mint_message_id(case.number, identity.new_unique(), identity.domain)
    context: dict[str, Any] = {
        "case": case_summary(case),
        "headers": {
            "message_id": message_id,
            "in_reply_to": _bracket(in_reply_to or (ids[-1] if ids else None)),
            "references": [_bracket(r) for r in references],
            "reply_to": identity.signer.reply_address(case.number, identity.support_address, note=note),
        },
        "footer_token": identity.signer.footer_token(case.number),
        **(extra or {}),
    }
    return outbox.enqueue(s, template=template, context=context, recipients=recipients,
                          message_id=message_id, case_id=case.id, now=now)


def deliverable(s: Session, recipients: Sequence[str]) -> list[str]:
    """The recipients whose addresses are not marked as bouncing, in their order."""
    if not recipients:
        return []
    keys = list({address_key(r) for r in recipients})
    bouncing = set(plain(s).execute(_BOUNCING, {"keys": keys}).scalars())
    return [r for r in recipients if address_key(r) not in bouncing]


def _bracket(message_id: str | None) -> str | None:
    if not message_id:
        return None
    m = message_id.strip()
    return m if m.startswith("<") else f"<{m}>"


def queue_notice(
    s: Session,
    *,
    identity: Identity,
    template: str,
    recipients: Sequence[str],
    now: datetime,
    in_reply_to: str | None = None,
    extra: dict[str, Any] | None = None,
) -> outbox.Queued | None:
    """Queue a mail that belongs to no case (e.g. the notice that a sender hit the rate limit)."""
    recipients = deliverable(s, recipients)
    if not recipients:
        return None
    message_id = f"<cm.notice.{identity.new_unique()}@{identity.domain}>"
    context: dict[str, Any] = {
        "headers": {"message_id": message_id, "in_reply_to": _bracket(in_reply_to),
                    "references": [_bracket(in_reply_to)] if in_reply_to else [], "reply_to": None},
        **(extra or {}),
    }
    return outbox.enqueue(s, template=template, context=context, recipients=recipients, message_id=message_id,
                          case_id=None, now=now)


# The answers to requests by mail ("my cases", "help", "settings"), counted for the sender rate limit.
REQUEST_TEMPLATES = ("customer/my_cases", "customer/help", "customer/settings")


def requests_answered_since(s: Session, recipient_key: str, since: datetime) -> int:
    """How many requests by mail from one address were answered since a moment.

    The answers are counted rather than the requests because the inbound log keeps the envelope
    sender, not the From address a request is answered to.
    """
    return outbox.sent_to_since(s, template=REQUEST_TEMPLATES, recipient_key=recipient_key, since=since)


def audience_addresses(s: Session, case: Case, notice: Notice, *, author: Contact | None,
                       support_addresses: Sequence[str]) -> list[str]:
    """The addresses of the case's people that a notice's audience (requester, people, assignee) names.

    Nobody is told about their own mail (but the acknowledgement answers it), each person's
    notification preference counts, and neither our own addresses (a loop) nor an address known to
    bounce are ever mailed. The "staff" and "sender" audiences are not people of the case; intake
    resolves them.
    """
    if notice.audience == "requester":
        people = [case.requester]
    elif notice.audience == "people":
        people = cases.copied(s, case)
    elif notice.audience == "assignee":
        assigned = cases.assignee(s, case)
        people = [assigned] if assigned is not None else []
    else:
        raise ValueError(f"not an audience of the case's people: {notice.audience!r}")
    ours = {address_key(a) for a in support_addresses}
    return [c.address for c in people
            if (author is None or c.id != author.id or notice.template in ALWAYS)
            and wants(c.notify, notice.template, notice.audience)
            and not c.bouncing and c.address_key not in ours]


def queue_closed_notices(s: Session, case: Case, *, identity: Identity, closed_by: str, what: str,
                         now: datetime, extra: dict[str, Any] | None = None) -> list[outbox.Queued]:
    """Tell everyone the table names for a closed case (requester, people copied, assignee), as a
    close by mail does, for a close that came from elsewhere (the command line, the schedule)."""
    by_template: dict[str, list[str]] = {}
    for notice in notices_for("closed"):
        wanted = by_template.setdefault(notice.template, [])
        for address in audience_addresses(s, case, notice, author=None,
                                          support_addresses=identity.support_addresses):
            if address_key(address) not in {address_key(a) for a in wanted}:
                wanted.append(address)
    context = {"entry": {"author_name": closed_by, "text": what, "attachments": []},
               "changes": [{"line": "", "what": what}], **(extra or {})}
    rows = [queue_case_mail(s, case, identity=identity, template=template, recipients=recipients, now=now,
                            extra=context)
            for template, recipients in by_template.items() if recipients]
    return [row for row in rows if row is not None]
