# SPDX-License-Identifier: GPL-3.0-or-later
"""What to do with one mail, decided from plain facts (pure).

The plan says whether the mail opens a case, adds to one, is recorded as an event, or is only logged;
what kind of entry it makes; and which mails go out because of it. intake.apply carries the plan out in
one transaction. Nothing here touches the database, the clock or the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from store.audience import Notice, notices_for
from intake.commands import Command, CommandMail, Refusal
from intake.requests import Request
from intake.resolve import ThreadDecision
from store.codes import format_case_number as num

__all__ = ["CaseView", "MailView", "Notice", "Plan", "plan_mail"]


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
    recent_requests: int = 0    # requests ("my cases", "help", "settings") answered this hour
    commands: CommandMail = field(default_factory=CommandMail)   # command lines at the top, and the rest
    close_word: bool = False    # the whole text is "close"
    thanks_only: bool = False   # the whole text only says thanks
    request: Request | None = None   # the subject asks for "my cases", "help" or "settings"
    replies_to_note: bool = False    # In-Reply-To names a staff-only notification of an internal note


@dataclass(frozen=True)
class Plan:
    action: str                 # "new-case" | "comment" | "request" | "system-event" | "ignore" | "hold"
    case_number: int | None     # the case commented on, or recorded on (None for a new case)
    entry_kind: str = "customer_message"
    visibility: str = "public"
    follow_up_of: int | None = None   # a new case that continues a closed one
    related_to: int | None = None     # a new case opened because the sender may not write into this one
    notes: tuple[str, ...] = ()       # why the mail was not simply added where it pointed
    notices: tuple[Notice, ...] = ()
    outcome: str = "new-case"
    reason: str | None = None
    text: str | None = None           # the entry's text when it is not the whole visible text (commands)
    commands: tuple[Command, ...] = ()   # to judge against the case and carry out, in order
    refused: tuple[Refusal, ...] = ()    # command lines refused already when read
    confirm: str | None = None        # the template confirming the commands to their sender
    request: Request | None = None
    touch: bool = True                # whether the case counts this mail as activity


NEW_CASE_NOTICES = notices_for("new_case")
REQUEST_TEMPLATES = {"my-cases": "customer/my_cases", "help": "customer/help", "settings": "customer/settings"}


def plan_mail(mail: MailView, decision: ThreadDecision, case: CaseView | None, *,
              new_case_cap: int = 20) -> Plan:
    """Decide what a mail does, given who sent it, what it threads to and what that case is."""
    if mail.automatic:
        return _plan_automatic(mail, case)
    plan = _plan_human(mail, decision, case)
    recent = mail.recent_new_cases + mail.recent_requests
    if plan.action in ("new-case", "request") and not mail.is_staff and recent >= new_case_cap:
        # A flood from one sender (or an autoresponder no header gives away) must not become a flood
        # of cases, acknowledgements or answers. Requests count with new cases: each one is answered
        # by a mail just as a new case is. The mail is kept, not dropped, and the sender is told once.
        return Plan(
            "hold", None, outcome="rejected",
            reason=f"rate limit: {recent} new cases and requests from this sender in the last hour",
            notices=() if mail.rate_notice_sent else (Notice("customer/rate_limited", "sender"),),
        )
    return plan


def _plan_human(mail: MailView, decision: ThreadDecision, case: CaseView | None) -> Plan:
    if mail.request is not None and not decision.signed:
        # A request by subject is answered and opens nothing. A mail tied to a case by one of our
        # signed tokens is about that case, whatever its subject says.
        return Plan("request", None, outcome="request", request=mail.request,
                    notices=(Notice(REQUEST_TEMPLATES[mail.request.kind], "sender"),))

    if case is None:
        notes = (decision.refused,) if decision.refused else ()
        if decision.case_number is not None:
            notes += (f"case {num(decision.case_number)} does not exist",)
        return Plan("new-case", None, notes=notes, notices=NEW_CASE_NOTICES)

    may_write = decision.signed or mail.sender in case.people or mail.is_staff
    if not may_write:
        # A case number in the subject is not a password: a stranger's mail does not go into the
        # case, it opens a new one that points to it, and both the sender and staff are told.
        return Plan(
            "new-case", None, related_to=case.number,
            notes=(f"the sender is not on case {num(case.number)}",),
            notices=NEW_CASE_NOTICES,
        )
    if mail.is_staff:
        return _plan_staff(mail, decision, case)
    cmds = mail.commands
    text = cmds.comment if cmds.any else None
    commands = cmds.commands + ((Command("close", None, "close"),) if mail.close_word else ())
    if case.status == "closed":
        closing_again = bool(commands) and all(c.name == "close" for c in commands) and not cmds.refused
        if mail.thanks_only or (closing_again and not (text or "").strip()):
            # Thanks after the case was closed (or asking once more to close it) is recorded on the
            # closed case and answered by nothing: neither a new case nor another mail.
            return Plan("comment", case.number, outcome="comment", touch=False,
                        text="close" if mail.close_word else text, notes=(f"case {num(case.number)} is closed",))
        # The seed product's rule: a closed case gets no further action; a recurrence is a new case.
        return Plan(
            "new-case", None, follow_up_of=case.number,
            notes=(f"case {num(case.number)} is closed",),
            notices=NEW_CASE_NOTICES,
        )
    if commands or cmds.refused:
        has_text = bool(text and text.strip()) and not mail.close_word
        return Plan("comment", case.number, outcome="comment", text=text if not mail.close_word else "close",
                    commands=commands, refused=cmds.refused, confirm="customer/confirm",
                    notices=notices_for("customer_comment" if has_text else None))
    return Plan("comment", case.number, entry_kind="customer_message", outcome="comment",
                notices=notices_for("customer_comment"))


def _plan_staff(mail: MailView, decision: ThreadDecision, case: CaseView) -> Plan:
    # Staff may always write into a case, open or closed: their commands and notes are how the desk
    # is run. A reply is public unless something says it is internal: "#note" (or "#internal"), the
    # case's note address, or answering a notification of an internal note.
    cmds = mail.commands
    internal = decision.note or cmds.has("note") or mail.replies_to_note
    text = cmds.comment if cmds.any else None
    commands = cmds.commands
    confirm = "staff/confirm" if cmds.any else None
    if text is not None and not text.strip() and not cmds.has("note"):
        # A mail of commands only: kept on the case for the record, answered by the confirmation.
        return Plan("comment", case.number, entry_kind="staff_command", visibility="internal", outcome="comment",
                    text=text, commands=commands, refused=cmds.refused, confirm=confirm, touch=False)
    event = "internal_note" if internal else "staff_reply"
    return Plan("comment", case.number, entry_kind=event, visibility="internal" if internal else "public",
                outcome="comment", text=text, commands=commands, refused=cmds.refused, confirm=confirm,
                notices=notices_for(event))


def _plan_automatic(mail: MailView, case: CaseView | None) -> Plan:
    # Automatic mail is never acknowledged, never opens a case, never reopens or touches one, and never
    # triggers notifications: answering a robot is how mail loops start.
    outcome = "bounce" if mail.kind in ("bounce", "delay") else "ignored"
    if case is None:
        return Plan("ignore", None, outcome=outcome, reason=f"automatic mail ({mail.kind}) for no case")
    return Plan("system-event", case.number, entry_kind="system_event", visibility="internal",
                outcome="system-event" if outcome == "ignored" else outcome,
                reason=f"automatic mail ({mail.kind})")
