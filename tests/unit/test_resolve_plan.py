# SPDX-License-Identifier: GPL-3.0-or-later
"""Thread resolution and planning, as tables: plain data in, decisions out."""

from __future__ import annotations

import pytest

from intake.plan import CaseView, MailView, plan_mail
from intake.resolve import ThreadDecision, ThreadFacts, resolve_thread
from store.codes import Signer

SIGNER = Signer(b"unit-test-key-0123456789")
OTHER = Signer(b"some-other-key-9876543210")
SUPPORT = ("support@example.com",)


def mid(n: int, signer: Signer = SIGNER) -> str:
    return signer.mint_message_id(n, "u1", "example.com")


def facts(*, ids: tuple[str, ...] = (), rcpts: tuple[str, ...] = ("support@example.com",), text: str = "",
          subject: str = "") -> ThreadFacts:
    return ThreadFacts(header_ids=ids, recipients=rcpts, text=text, subject=subject)


RESOLVE_CASES = [
    # (description, facts, expected case, expected matched_by, signed, refused?)
    ("nothing at all", facts(subject="Printer broken"), None, "new", False, False),
    ("our Message-ID in In-Reply-To", facts(ids=(mid(7),)), 7, "message-id", True, False),
    ("our Message-ID among foreign References", facts(ids=("x@y", mid(7), "z@w")), 7, "message-id", True, False),
    ("Message-ID beats a different subject tag", facts(ids=(mid(7),), subject="Re: [Case #9] x"), 7,
     "message-id", True, False),
    ("two cases in headers", facts(ids=(mid(7), mid(8))), None, "new", False, True),
    ("forged Message-ID", facts(ids=(mid(7, OTHER),)), None, "new", False, True),
    ("forged Message-ID even with a subject tag", facts(ids=(mid(7, OTHER),), subject="[Case #7]"), None, "new",
     False, True),
    ("signed reply address", facts(rcpts=(SIGNER.reply_address(5, "support@example.com"),)), 5,
     "reply-address", True, False),
    ("forged reply address", facts(rcpts=(OTHER.reply_address(5, "support@example.com"),)), None, "new", False,
     True),
    ("note address", facts(rcpts=(SIGNER.reply_address(5, "support@example.com", note=True),)), 5,
     "reply-address", True, False),
    ("footer token in quoted text", facts(text=f"thanks\n> {SIGNER.footer_token(3)}\n"), 3, "footer", True, False),
    ("footer of another key is ignored", facts(text=f"> {OTHER.footer_token(3)}", subject="hello"), None, "new",
     False, False),
    ("subject tag only", facts(subject="Re: AW: [Case #00000012] Printer"), 12, "subject", False, False),
    ("two subject tags", facts(subject="[Case #1] and [Case #2]"), None, "new", False, True),
    ("header ids without ours", facts(ids=("a@b", "c@d"), subject="Re: lunch"), None, "new", False, False),
]


@pytest.mark.parametrize(("name", "f", "case", "matched_by", "signed", "refused"), RESOLVE_CASES,
                         ids=[c[0] for c in RESOLVE_CASES])
def test_resolve_thread(name, f, case, matched_by, signed, refused):
    d = resolve_thread(f, SIGNER, SUPPORT)
    assert (d.case_number, d.matched_by, d.signed, d.refused is not None) == (case, matched_by, signed, refused)


def test_note_address_is_reported_as_note():
    d = resolve_thread(facts(rcpts=(SIGNER.reply_address(5, "support@example.com", note=True),)), SIGNER, SUPPORT)
    assert d.note


OPEN = CaseView(5, "open", frozenset({"jane@customer.example", "bob@customer.example"}))
CLOSED = CaseView(5, "closed", frozenset({"jane@customer.example"}))
JANE = MailView("jane@customer.example", is_staff=False, automatic=False, kind="human")
STRANGER = MailView("eve@elsewhere.example", is_staff=False, automatic=False, kind="human")
STAFF = MailView("agent@staff.example", is_staff=True, automatic=False, kind="human")
OOO = MailView("jane@customer.example", is_staff=False, automatic=True, kind="auto-reply")
BOUNCE = MailView("mailer-daemon@customer.example", is_staff=False, automatic=True, kind="bounce")
BY_SUBJECT = ThreadDecision(5, "subject")
BY_TOKEN = ThreadDecision(5, "message-id", signed=True)
NEW = ThreadDecision(None, "new")

PLAN_CASES = [
    ("new mail opens a case and is acknowledged", JANE, NEW, None, "new-case", None, "customer/ack"),
    ("requester comments by subject", JANE, BY_SUBJECT, OPEN, "comment", 5, "staff/comment"),
    ("stranger with a subject number gets a new case", STRANGER, BY_SUBJECT, OPEN, "new-case", None,
     "customer/ack"),
    ("stranger with a signed token may write", STRANGER, BY_TOKEN, OPEN, "comment", 5, "staff/comment"),
    ("staff reply goes to the people on the case", STAFF, BY_SUBJECT, OPEN, "comment", 5, "customer/reply"),
    ("closed case: a new case follows it up", JANE, BY_SUBJECT, CLOSED, "new-case", None, "customer/ack"),
    ("auto-reply on a case is an event, no mail", OOO, BY_TOKEN, OPEN, "system-event", 5, None),
    ("auto-reply on a closed case does not reopen", OOO, BY_TOKEN, CLOSED, "system-event", 5, None),
    ("auto-reply for no case is ignored", OOO, NEW, None, "ignore", None, None),
    ("bounce for no case is logged as a bounce", BOUNCE, NEW, None, "ignore", None, None),
]


@pytest.mark.parametrize(("name", "mail", "decision", "case", "action", "target", "first_notice"), PLAN_CASES,
                         ids=[c[0] for c in PLAN_CASES])
def test_plan_mail(name, mail, decision, case, action, target, first_notice):
    plan = plan_mail(mail, decision, case)
    assert plan.action == action and plan.case_number == target
    assert (plan.notices[0].template if plan.notices else None) == first_notice
    if mail.automatic:
        assert plan.notices == ()


def test_closed_and_stranger_plans_say_why():
    closed = plan_mail(JANE, BY_SUBJECT, CLOSED)
    assert closed.follow_up_of == 5 and closed.notes == ("case 00000005 is closed",)
    stranger = plan_mail(STRANGER, BY_SUBJECT, OPEN)
    assert stranger.related_to == 5 and stranger.follow_up_of is None
    assert plan_mail(BOUNCE, NEW, None).outcome == "bounce"
