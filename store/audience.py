# SPDX-License-Identifier: GPL-3.0-or-later
"""Who is told what: the one table of notifications (pure).

docs/notifications.md shows the same table; a test keeps the two equal. Each event of a case names,
per audience, the template that audience receives:

- requester: the person who opened the case;
- people: the others copied on the case (participants with the role "cc");
- staff: every configured staff address;
- assignee: the staff member the case is assigned to (#assign), if any.

The author of the mail that caused the event is never told about their own mail, an address is told
once per template even when it belongs to two audiences, and the customers' notification preferences
(see `wants()`) thin out what they receive. Mail answering the sender directly (acknowledgements,
command confirmations, answers to requests, notices about held mail or lost attachments) is not an
event of this table: it goes to the sender whatever their preference, because they asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENTS = ("new_case", "customer_comment", "staff_reply", "internal_note", "status_change", "closed")
AUDIENCES = ("requester", "people", "staff", "assignee")
CUSTOMER_SIDE = frozenset({"requester", "people"})

NOTIFICATIONS: dict[str, dict[str, str]] = {
    "new_case": {"requester": "customer/ack", "staff": "staff/new_case"},
    "customer_comment": {"staff": "staff/comment", "assignee": "staff/comment"},
    "staff_reply": {"requester": "customer/reply", "people": "customer/reply", "assignee": "staff/comment"},
    "internal_note": {"staff": "staff/note", "assignee": "staff/note"},
    "status_change": {"assignee": "staff/changed"},
    "closed": {"requester": "customer/closed", "people": "customer/closed", "assignee": "staff/changed"},
}

# Templates whose Reply-To is the case's note address, so that a staff member's reply to them stays
# internal without any command.
NOTE_TEMPLATES = frozenset({"staff/note"})

NOTIFY_CHOICES = ("every", "digest", "replies")
# The acknowledgement answers the requester's own mail, so it is sent whatever their preference.
ALWAYS = frozenset({"customer/ack"})


@dataclass(frozen=True)
class Notice:
    """A mail to send because of this one: a template and who gets it ("sender" or an audience)."""

    template: str
    audience: str


def notices_for(event: str | None) -> tuple[Notice, ...]:
    """The notifications one event causes, in the table's order."""
    if event is None:
        return ()
    return tuple(Notice(template, audience) for audience, template in NOTIFICATIONS[event].items())


def wants(notify: str, template: str, audience: str) -> bool:
    """Whether a person with this notification preference gets this mail now.

    "every" gets everything. "digest" gets nothing about their cases immediately (the daily digest
    tells them). "replies" gets only staff replies addressed to them, as the person who opened the
    case, not the copies of replies to others nor the notices of changes. Staff are always told, and
    mail to the sender of a mail is not a notification (see the module docstring).
    """
    if audience not in CUSTOMER_SIDE or notify == "every" or template in ALWAYS:
        return True
    if notify == "replies":
        return template == "customer/reply" and audience == "requester"
    return False
