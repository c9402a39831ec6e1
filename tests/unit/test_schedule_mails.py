# SPDX-License-Identifier: GPL-3.0-or-later
"""The scheduled mails render from the contexts the job runner builds, and say what they should."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta, timezone
from typing import Any

from notifier import schedules
from notifier.render import Renderer, Sender, make_environment
from store.jobs import Activity, CaseClock

NOW = datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc)


def schedule_context(subject: str, name: str) -> dict[str, Any]:
    """The keys the scheduled templates read, with the given (possibly hostile) subject and name."""
    clocks = [CaseClock(case_id=1, number=7, subject=subject, severity=1, production_down=True,
                        created_at=NOW - timedelta(days=2), requester_address="eve@elsewhere.example",
                        last_human_entry_id=None, last_human_kind=None, last_human_at=None, staff_replied=False)]
    activity = [Activity(case_number=7, case_subject=subject, case_status="open", entry_id=3, kind="staff_reply",
                         author_name=name, text="hi <script>x</script>", created_at=NOW - timedelta(hours=3))]
    return {
        "reminder": {"days": "3", "autoclose_days": "7", "reply_author": name, "reply_text": "<b>which</b> version?",
                     "reply_at": "2026-11-26 07:00 UTC"},
        "escalation": {"round": 2, "waited": "2 h 5 min", "reason": "production down",
                       "description": "<script>down</script>"},
        "autoclose": {"days": "7"},
        "digest": {**schedules.staff_digest(clocks, NOW),
                   **schedules.customer_digest(activity, name=name, since=NOW - timedelta(days=1), until=NOW)},
    }


def case_context(**extra: Any) -> dict[str, Any]:
    case = {"number": "00000007", "tag": "[Case #00000007]", "subject": "Printer on fire",
            "tagged_subject": "[Case #00000007] Printer on fire", "status": "open", "severity": 1,
            "severity_source": "body", "production_down": True, "product": "Printer", "version": "2",
            "requester_name": "Jane Doe", "requester_address": "jane@customer.example", "follow_up_of": None,
            "created_at": NOW.isoformat()}
    return {"case": case, "headers": {"message_id": "<m@example.com>", "in_reply_to": None, "references": [],
                                      "reply_to": "support+00000007.abc@example.com"},
            "footer_token": "[ref:00000007-abc]", **extra}


def render(template: str, context: dict[str, Any]) -> email.message.EmailMessage:
    r = Renderer(make_environment(), Sender("support@example.com", "Example Support", "loop-id"))
    out = r.render(template=template, context=context, recipients=["x@example.com"], message_id="<m@example.com>",
                   now=NOW)
    return email.message_from_bytes(out.data, policy=email.policy.default)  # type: ignore[return-value]


def test_reminder_quotes_the_staff_reply_and_announces_the_close():
    ctx = case_context(**schedule_context("Printer on fire", "Sam"))
    msg = render("customer/reminder", ctx)
    assert msg["Subject"] == "Waiting for your answer: [Case #00000007] Printer on fire"
    assert msg["Auto-Submitted"] == "auto-generated"
    text = msg.get_body(("plain",)).get_content()
    assert "3 days ago" in text and "closed 7 days after our reply" in text
    assert "<b>which</b> version?" in text and "(Sam)" in text and "[ref:00000007-abc]" in text
    html = msg.get_body(("html",)).get_content()
    assert "&lt;b&gt;which&lt;/b&gt;" in html


def test_reminder_without_autoclose_does_not_announce_one():
    ctx = case_context(**schedule_context("Printer on fire", "Sam"))
    ctx["reminder"]["autoclose_days"] = None
    text = render("customer/reminder", ctx).get_body(("plain",)).get_content()
    assert "will be closed" not in text


def test_escalation_names_the_round_and_the_reason():
    msg = render("staff/escalation", case_context(**schedule_context("Printer on fire", "Sam")))
    assert msg["Subject"] == "[Escalation 2] [Case #00000007] Printer on fire"
    text = msg.get_body(("plain",)).get_content()
    assert "(production down) has had no reply from staff for 2 h 5 min" in text
    assert "escalation number 2" in text and "jane@customer.example" in text
    ctx = case_context(**schedule_context("Printer on fire", "Sam"))
    ctx["escalation"]["round"] = 1
    assert render("staff/escalation", ctx)["Subject"] == "[Escalation] [Case #00000007] Printer on fire"


def test_staff_digest_groups_by_severity():
    clocks = [
        CaseClock(1, 1, "Old low", 3, False, NOW - timedelta(days=5), "a@x.example", 9, "staff_reply",
                  NOW - timedelta(days=1), True),
        CaseClock(2, 2, "Down", 1, True, NOW - timedelta(hours=2), "b@x.example", None, None, None, False),
        CaseClock(3, 3, "Newer low", 3, False, NOW - timedelta(minutes=5), "c@x.example", 4, "customer_message",
                  NOW - timedelta(minutes=5), False),
    ]
    msg = render("staff/digest", {"headers": {"message_id": "<m@example.com>", "in_reply_to": None,
                                              "references": [], "reply_to": None},
                                  "digest": schedules.staff_digest(clocks, NOW)})
    assert msg["Subject"] == "Open cases on 2026-11-29: 3, 2 without a staff reply"
    text = msg.get_body(("plain",)).get_content()
    assert text.index("Severity 1") < text.index("Severity 3")
    assert text.index("Old low") < text.index("Newer low")
    assert "00000001  5 d 0 h  Old low [waiting on customer]" in text
    assert "00000002  2 h 0 min  Down [production down] [no staff reply]" in text


def test_staff_digest_with_no_open_cases_says_so():
    msg = render("staff/digest", {"headers": {"message_id": "<m@example.com>"},
                                  "digest": schedules.staff_digest([], NOW)})
    assert "No open cases." in msg.get_body(("plain",)).get_content()
    assert msg["Subject"] == "Open cases on 2026-11-29: 0"


def test_customer_digest_lists_activity_by_case():
    activity = [
        Activity(2, "Second", "open", 5, "customer_message", "Jane", "More logs", NOW - timedelta(hours=20)),
        Activity(2, "Second", "open", 6, "staff_reply", "Sam", "Thanks, fixed", NOW - timedelta(hours=2)),
        Activity(1, "First", "closed", 7, "status_change", "", "x" * 600, NOW - timedelta(hours=1)),
    ]
    digest = schedules.customer_digest(activity, name="Jane", since=NOW - timedelta(days=1), until=NOW)
    msg = render("customer/digest", {"headers": {"message_id": "<m@example.com>"}, "digest": digest})
    assert msg["Subject"] == "Your cases: activity until 2026-11-29 07:00 UTC"
    text = msg.get_body(("plain",)).get_content()
    assert text.index("[Case #00000001] First (closed)") < text.index("[Case #00000002] Second (open)")
    assert "Reply from support, Sam" in text and "    Thanks, fixed" in text
    assert "x" * 500 + " [...]" in text and "x" * 501 not in text


def test_the_closing_notice_says_why_only_when_the_schedule_closed_the_case():
    ctx = case_context(**schedule_context("Printer on fire", "Sam"))
    text = render("customer/closed", ctx).get_body(("plain",)).get_content()
    assert "is now closed.\r\n\r\nWe closed it because we have not heard from you in the 7 days" in text
    del ctx["autoclose"]
    text = render("customer/closed", ctx).get_body(("plain",)).get_content()
    assert "We closed it" not in text
