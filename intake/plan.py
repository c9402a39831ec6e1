# SPDX-License-Identifier: GPL-3.0-or-later
"""What to do with one mail, decided from plain facts (pure).

The plan says whether the mail opens a case, adds to one, is recorded as an event, or is only logged;
what kind of entry it makes; and which mails go out because of it. intake.apply carries the plan out in
one transaction. Nothing here touches the database, the clock or the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from intake.resolve import ThreadDecision
from store.codes import format_case_number as num


@dataclass(frozen=True)
class CaseView:
    """The case a mail referred to, as the planner needs to see it."""

    number: int
    status: str
    people: frozenset[str]      # address keys of the requester and the participants


@dataclass(frozen=True)
class MailView:
    sender: str                 # address key of the author (From)
    is_staff: bool              # a staff address whose sender is trusted
    automatic: bool             # auto-reply, bounce, list mail...
    kind: str                   # the classification's kind
    recent_new_cases: int = 0   # cases this sender opened in the last hour
    rate_notice_sent: bool = False   # whether they were already told of the limit this hour


@dataclass(frozen=True)
class Notice:
    """A mail to send because of this one: a template and who gets it."""

    template: str
    audience: str               # "sender" | "requester" | "people" (everyone on the case but the author) | "staff"


@dataclass(frozen=True)
class Plan:
    action: str                 # "new-case" | "comment" | "system-event" | "ignore" | "hold"
    case_number: int | None     # the case commented on, or recorded on (None for a new case)
    entry_kind: str = "customer_message"
    visibility: str = "public"
    follow_up_of: int | None = None   # a new case that continues a closed one
    related_to: int | None = None     # a new case opened because the sender may not write into this one
    notes: tuple[str, ...] = ()       # why the mail was not simply added where it pointed
    notices: tuple[Notice, ...] = ()
    outcome: str = "new-case"
    reason: str | None = None


ACK = Notice("customer/ack", "sender")


def plan_mail(mail: MailView, decision: ThreadDecision, case: CaseView | None, *,
              new_case_cap: int = 20) -> Plan:
    """Decide what a mail does, given who sent it, what it threads to and what that case is."""
    if mail.automatic:
        return _plan_automatic(mail, case)
    plan = _plan_human(mail, decision, case)
    if plan.action == "new-case" and not mail.is_staff and mail.recent_new_cases >= new_case_cap:
        # A flood from one sender (or an autoresponder no header gives away) must not become a flood
        # of cases and acknowledgements. The mail is kept, not dropped, and the sender is told once.
        return Plan(
            "hold", None, outcome="rejected",
            reason=f"rate limit: {mail.recent_new_cases} new cases from this sender in the last hour",
            notices=() if mail.rate_notice_sent else (Notice("customer/rate_limited", "sender"),),
        )
    return plan


def _plan_human(mail: MailView, decision: ThreadDecision, case: CaseView | None) -> Plan:

    if case is None:
        notes = (decision.refused,) if decision.refused else ()
        if decision.case_number is not None:
            notes += (f"case {num(decision.case_number)} does not exist",)
        return Plan("new-case", None, notes=notes, notices=(ACK, Notice("staff/new_case", "staff")))

    may_write = decision.signed or mail.sender in case.people or mail.is_staff
    if not may_write:
        # A case number in the subject is not a password: a stranger's mail does not go into the
        # case, it opens a new one that points to it, and both the sender and staff are told.
        return Plan(
            "new-case", None, related_to=case.number,
            notes=(f"the sender is not on case {num(case.number)}",),
            notices=(ACK, Notice("staff/new_case", "staff")),
        )
    if case.status == "closed":
        # The seed product's rule: a closed case gets no further action; a recurrence is a new case.
        return Plan(
            "new-case", None, follow_up_of=case.number,
            notes=(f"case {num(case.number)} is closed",),
            notices=(ACK, Notice("staff/new_case", "staff")),
        )
    if mail.is_staff:
        return Plan("comment", case.number, entry_kind="staff_reply", outcome="comment",
                    notices=(Notice("customer/reply", "people"),))
    return Plan("comment", case.number, entry_kind="customer_message", outcome="comment",
                notices=(Notice("staff/comment", "staff"),))


def _plan_automatic(mail: MailView, case: CaseView | None) -> Plan:
    # Automatic mail is never acknowledged, never opens a case, never reopens or touches one, and never
    # triggers notifications: answering a robot is how mail loops start.
    outcome = "bounce" if mail.kind in ("bounce", "delay") else "ignored"
    if case is None:
        return Plan("ignore", None, outcome=outcome, reason=f"automatic mail ({mail.kind}) for no case")
    return Plan("system-event", case.number, entry_kind="system_event", visibility="internal",
                outcome="system-event" if outcome == "ignored" else outcome,
                reason=f"automatic mail ({mail.kind})")
