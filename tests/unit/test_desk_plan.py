# SPDX-License-Identifier: GPL-3.0-or-later
"""The planner for the desk by mail, and the notification table, as tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from store.audience import AUDIENCES, NOTIFICATIONS, wants
from intake.commands import parse_commands
from intake.plan import CaseView, MailView, plan_mail
from intake.requests import parse_request
from intake.resolve import ThreadDecision

OPEN = CaseView(5, "open", frozenset({"jane@customer.example", "bob@customer.example"}))
CLOSED = CaseView(5, "closed", frozenset({"jane@customer.example"}))
BY_TOKEN = ThreadDecision(5, "message-id", signed=True)
BY_NOTE = ThreadDecision(5, "reply-address", signed=True, note=True)
BY_SUBJECT = ThreadDecision(5, "subject")
NEW = ThreadDecision(None, "new")


def mail(text: str = "Hello", *, staff: bool = False, subject: str = "Re: x", sender: str = "jane@customer.example",
         replies_to_note: bool = False, automatic: bool = False, recent: int = 0) -> MailView:
    from intake.commands import is_close_word, is_thanks_only

    return MailView(sender="agent@staff.example" if staff else sender, is_staff=staff, automatic=automatic,
                    kind="auto-reply" if automatic else "human", recent_new_cases=recent,
                    commands=parse_commands(text), close_word=is_close_word(text), thanks_only=is_thanks_only(text),
                    request=parse_request(subject), replies_to_note=replies_to_note)


def templates(plan) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.template for n in plan.notices]


PLAN_ROWS = [
    # (name, mail, decision, case, action, entry_kind, visibility, notice templates, commands, confirm)
    ("staff reply is public", mail("Try 2.1", staff=True), BY_TOKEN, OPEN, "comment", "staff_reply", "public",
     ["customer/reply", "customer/reply", "staff/comment"], [], None),
    ("#note makes it internal", mail("#note\nangry", staff=True), BY_TOKEN, OPEN, "comment", "internal_note",
     "internal", ["staff/note", "staff/note"], ["note"], "staff/confirm"),
    ("#internal too", mail("#internal\nangry", staff=True), BY_TOKEN, OPEN, "comment", "internal_note", "internal",
     ["staff/note", "staff/note"], ["note"], "staff/confirm"),
    ("note address makes it internal", mail("angry", staff=True), BY_NOTE, OPEN, "comment", "internal_note",
     "internal", ["staff/note", "staff/note"], [], None),
    ("reply to a note stays internal", mail("ok", staff=True, replies_to_note=True), BY_TOKEN, OPEN, "comment",
     "internal_note", "internal", ["staff/note", "staff/note"], [], None),
    ("commands only: no reply", mail("#severity 1\n#assign me", staff=True), BY_TOKEN, OPEN, "comment",
     "staff_command", "internal", [], ["severity", "assign"], "staff/confirm"),
    ("commands and text: a reply", mail("#severity 1\nOn it.", staff=True), BY_TOKEN, OPEN, "comment",
     "staff_reply", "public", ["customer/reply", "customer/reply", "staff/comment"], ["severity"], "staff/confirm"),
    ("refused command only", mail("#clsoe", staff=True), BY_TOKEN, OPEN, "comment", "staff_command", "internal",
     [], [], "staff/confirm"),
    ("staff may write into a closed case", mail("#severity 2", staff=True), BY_SUBJECT, CLOSED, "comment",
     "staff_command", "internal", [], ["severity"], "staff/confirm"),
    ("customer comment", mail("More logs"), BY_TOKEN, OPEN, "comment", "customer_message", "public",
     ["staff/comment", "staff/comment"], [], None),
    ("customer #close", mail("#close"), BY_TOKEN, OPEN, "comment", "customer_message", "public", [], ["close"],
     "customer/confirm"),
    ("customer close word", mail("close"), BY_TOKEN, OPEN, "comment", "customer_message", "public", [], ["close"],
     "customer/confirm"),
    ("customer #close with text tells staff", mail("#close\nall good"), BY_TOKEN, OPEN, "comment",
     "customer_message", "public", ["staff/comment", "staff/comment"], ["close"], "customer/confirm"),
    ("customer #severity is planned, judged later", mail("#severity 1"), BY_TOKEN, OPEN, "comment",
     "customer_message", "public", [], ["severity"], "customer/confirm"),
    ("thanks after close is kept", mail("Thanks!"), BY_TOKEN, CLOSED, "comment", "customer_message", "public", [],
     [], None),
    ("close after close is kept", mail("close"), BY_TOKEN, CLOSED, "comment", "customer_message", "public", [], [],
     None),
    ("more after close opens a new case", mail("It broke again"), BY_TOKEN, CLOSED, "new-case", "customer_message",
     "public", ["customer/ack", "staff/new_case"], [], None),
    ("thanks with a question after close opens a new case", mail("thanks, why?"), BY_TOKEN, CLOSED, "new-case",
     "customer_message", "public", ["customer/ack", "staff/new_case"], [], None),
    ("my cases is a request", mail("", subject="my cases all"), NEW, None, "request", "customer_message", "public",
     ["customer/my_cases"], [], None),
    ("help is a request", mail("", subject="help"), NEW, None, "request", "customer_message", "public",
     ["customer/help"], [], None),
    ("settings is a request", mail("name: X", subject="settings"), NEW, None, "request", "customer_message",
     "public", ["customer/settings"], [], None),
    ("a request tied to a case by token is about the case", mail("x", subject="help"), BY_TOKEN, OPEN, "comment",
     "customer_message", "public", ["staff/comment", "staff/comment"], [], None),
    ("a robot's request is not answered", mail("", subject="help", automatic=True), NEW, None, "ignore",
     "customer_message", "public", [], [], None),
    ("requests past the cap are held", mail("", subject="help", recent=20), NEW, None, "hold", "customer_message",
     "public", ["customer/rate_limited"], [], None),
    ("commands in a new mail are just text", mail("#close"), NEW, None, "new-case", "customer_message", "public",
     ["customer/ack", "staff/new_case"], [], None),
]


@pytest.mark.parametrize(("name", "m", "decision", "case", "action", "kind", "visibility", "notices", "commands",
                          "confirm"), PLAN_ROWS, ids=[r[0] for r in PLAN_ROWS])
def test_plan(name, m, decision, case, action, kind, visibility, notices, commands, confirm):
    plan = plan_mail(m, decision, case)
    assert plan.action == action
    assert (plan.entry_kind, plan.visibility) == (kind, visibility)
    assert templates(plan) == notices
    assert [c.name for c in plan.commands] == commands
    assert plan.confirm == confirm


def test_a_thanks_after_close_does_not_touch_the_case_and_says_why():
    plan = plan_mail(mail("danke"), BY_TOKEN, CLOSED)
    assert plan.touch is False and plan.outcome == "comment" and plan.notes == ("case 00000005 is closed",)


def test_command_text_is_the_comment_after_the_commands():
    assert plan_mail(mail("#severity 1\n\nOn it.", staff=True), BY_TOKEN, OPEN).text == "On it."
    assert plan_mail(mail("Plain", staff=True), BY_TOKEN, OPEN).text is None


WANTS_ROWS = [
    ("every", "customer/reply", "people", True),
    ("every", "customer/closed", "requester", True),
    ("replies", "customer/reply", "requester", True),
    ("replies", "customer/reply", "people", False),
    ("replies", "customer/closed", "requester", False),
    ("digest", "customer/reply", "requester", False),
    ("digest", "customer/closed", "people", False),
    ("digest", "customer/ack", "requester", True),
    ("digest", "staff/comment", "staff", True),
    ("digest", "staff/note", "assignee", True),
    ("replies", "staff/changed", "assignee", True),
]


@pytest.mark.parametrize(("notify", "template", "audience", "expected"), WANTS_ROWS)
def test_wants(notify, template, audience, expected):
    assert wants(notify, template, audience) is expected


def test_the_table_in_the_docs_is_the_table_in_the_code():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text()
    header = "| event | " + " | ".join(AUDIENCES) + " |"
    assert header in doc
    rows = doc[doc.index(header):].split("\n")[2:]
    table: dict[str, dict[str, str]] = {}
    for row in rows:
        if not row.startswith("|"):
            break
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0]] = {a: t for a, t in zip(AUDIENCES, cells[1:]) if t}
    assert table == NOTIFICATIONS
    assert all(re.fullmatch(r"(customer|staff)/[a-z_]+", t) for row in table.values() for t in row.values())
