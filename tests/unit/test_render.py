# SPDX-License-Identifier: GPL-3.0-or-later
"""Rendering: every template renders, and customer-controlled text can inject neither headers nor markup."""

from __future__ import annotations

import email
import email.policy
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from notifier.render import DEFAULT_TEMPLATES, Renderer, Sender, make_environment
from tests.unit.test_desk_mails import desk_context
from tests.unit.test_schedule_mails import schedule_context

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
HOSTILE_SUBJECT = "Help\r\nBcc: victim@elsewhere.example\r\nX-Evil: 1 <script>alert(1)</script>"
HOSTILE_NAME = 'Eve <script>alert("x")</script>\r\nCc: more@elsewhere.example'
HOSTILE_FILE = '<img src=x onerror=alert(1)>.pdf'


def context(**over):  # type: ignore[no-untyped-def]
    case = {"number": "00000007", "tag": "[Case #00000007]", "subject": HOSTILE_SUBJECT,
            "tagged_subject": "[Case #00000007] " + HOSTILE_SUBJECT, "status": "open", "severity": 2,
            "severity_source": "body", "production_down": False, "product": "<b>X</b>", "version": "1",
            "requester_name": HOSTILE_NAME, "requester_address": "eve@elsewhere.example", "follow_up_of": "00000003",
            "created_at": NOW.isoformat()}
    ctx = {"case": case, "headers": {"message_id": "<m@example.com>", "in_reply_to": "<x@y>",
                                      "references": ["<x@y>"], "reply_to": "support+00000007.abc@example.com"},
           "footer_token": "[ref:00000007-abc]", "notes": ["case 00000003 is closed"], "related_to": "00000003",
           "entry": {"id": 1, "author_name": HOSTILE_NAME, "text": "hi <script>x</script>",
                     "attachments": [HOSTILE_FILE]},
           "not_kept": [{"filename": HOSTILE_FILE, "reason": "too big"}], "dangerous": [HOSTILE_FILE],
           # The scheduled mails' own keys (reminder, escalation, digest): see tests/unit/test_schedule_mails.py.
           **schedule_context(HOSTILE_SUBJECT, HOSTILE_NAME),
           # The desk's own keys (confirmations, changes, requests): see tests/unit/test_desk_mails.py.
           **desk_context(HOSTILE_SUBJECT, HOSTILE_NAME, HOSTILE_FILE)}
    ctx.update(over)
    return ctx


def templates() -> list[str]:
    return sorted(str(p.relative_to(DEFAULT_TEMPLATES))[: -len(".subject.j2")]
                  for p in DEFAULT_TEMPLATES.rglob("*.subject.j2"))


@pytest.mark.parametrize("template", templates())
def test_every_template_renders_safely(template):
    r = Renderer(make_environment(), Sender("support@example.com", "Example Support", "loop-id"))
    out = r.render(template=template, context=context(), recipients=["eve@elsewhere.example"],
                   message_id="<m@example.com>", now=NOW)
    msg = email.message_from_bytes(out.data, policy=email.policy.default)
    assert msg["Bcc"] is None and msg["X-Evil"] is None and msg["Cc"] is None
    assert msg["To"] == "eve@elsewhere.example"
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["X-Casemail-Loop"] == "loop-id" and msg["X-Auto-Response-Suppress"] == "All"
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "<img src=x" not in html and "<b>X</b>" not in html
    text = msg.get_body(("plain",)).get_content()
    assert text.strip()


def test_acknowledgement_is_auto_replied_and_staff_relay_is_not_marked():
    r = Renderer(make_environment(), Sender("support@example.com", "S", "i"))
    ack = email.message_from_bytes(r.render(template="customer/ack", context=context(), recipients=["a@b.c"],
                                            message_id="<1@x>", now=NOW).data, policy=email.policy.default)
    relay = email.message_from_bytes(r.render(template="customer/reply", context=context(), recipients=["a@b.c"],
                                              message_id="<2@x>", now=NOW).data, policy=email.policy.default)
    note = email.message_from_bytes(r.render(template="staff/new_case", context=context(), recipients=["a@b.c"],
                                             message_id="<3@x>", now=NOW).data, policy=email.policy.default)
    assert ack["Auto-Submitted"] == "auto-replied"
    assert relay["Auto-Submitted"] is None
    assert note["Auto-Submitted"] == "auto-generated"


def test_override_folder_wins(tmp_path: Path):
    (tmp_path / "customer").mkdir()
    (tmp_path / "customer" / "ack.subject.j2").write_text("Custom {{ case.number }}\n")
    r = Renderer(make_environment(tmp_path), Sender("support@example.com", "S", "i"))
    out = r.render(template="customer/ack", context=context(), recipients=["a@b.c"], message_id="<1@x>", now=NOW)
    assert out.subject == "Custom 00000007"


def test_an_edited_override_is_used_once_the_recheck_interval_has_passed(tmp_path: Path):
    from notifier.render import TEMPLATE_RECHECK_SECONDS

    (tmp_path / "customer").mkdir()
    subject = tmp_path / "customer" / "ack.subject.j2"
    subject.write_text("First {{ case.number }}\n")
    clock = [100.0]
    r = Renderer(make_environment(tmp_path), Sender("support@example.com", "S", "i"), clock=lambda: clock[0])

    def render() -> str:
        return r.render(template="customer/ack", context=context(), recipients=["a@b.c"], message_id="<1@x>",
                        now=NOW).subject

    assert render() == "First 00000007"
    subject.write_text("Second {{ case.number }}\n")
    os.utime(subject, (1, 2_000_000_000))   # a modification time Jinja cannot mistake for the old one
    clock[0] += TEMPLATE_RECHECK_SECONDS / 2
    assert render() == "First 00000007"     # not looked at again yet
    clock[0] += TEMPLATE_RECHECK_SECONDS
    assert render() == "Second 00000007"


def test_an_edited_layout_is_used_once_the_recheck_interval_has_passed(tmp_path: Path):
    from notifier.render import DEFAULT_TEMPLATES, TEMPLATE_RECHECK_SECONDS

    layout = tmp_path / "_layout.txt.j2"
    original = (DEFAULT_TEMPLATES / "_layout.txt.j2").read_text()
    layout.write_text("Layout one\n" + original)
    clock = [100.0]
    r = Renderer(make_environment(tmp_path), Sender("support@example.com", "S", "i"), clock=lambda: clock[0])

    def render() -> str:
        return r.render(template="customer/ack", context=context(), recipients=["a@b.c"], message_id="<1@x>",
                        now=NOW).text

    assert "Layout one" in render()
    layout.write_text("Layout two\n" + original)
    os.utime(layout, (1, 2_000_000_000))
    clock[0] += TEMPLATE_RECHECK_SECONDS / 2
    assert "Layout one" in render()          # not looked at again yet
    clock[0] += TEMPLATE_RECHECK_SECONDS
    text = render()
    assert "Layout two" in text and "Layout one" not in text
