# SPDX-License-Identifier: GPL-3.0-or-later
"""The desk's own mails: a relayed staff reply's name and files, confirmations, answers to requests."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone
from typing import Any

import pytest

from notifier.render import Renderer, Sender, make_environment

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def desk_context(subject: str, name: str, filename: str) -> dict[str, Any]:
    """The keys the desk's templates (confirm, changed, note, my cases, settings) read, hostile where it can be."""
    line = f"#product {subject}"
    return {
        "changes": [{"line": line, "what": f"product (none) -> {subject}"}],
        "done": [{"line": line, "what": f"product (none) -> {subject}"}],
        "refused": [{"line": f"#cc {name}", "reason": f"{name!r} is not a mail address"}],
        "request": {"kind": "my-cases", "status": "open", "search": subject},
        "cases": [{"number": "00000007", "subject": subject, "status": "open", "severity": 2,
                   "updated": "2026-11-29 12:00 UTC"}],
        "more": False,
        "settings": {"name": name, "notify": "every", "done": [f"name: {name}"],
                     "refused": [{"line": f"colour: {filename}", "reason": "there is no setting 'colour'"}]},
    }


def render(template: str, context: dict[str, Any], blobs: dict[str, bytes] | None = None) -> email.message.EmailMessage:
    r = Renderer(make_environment(), Sender("support@example.com", "Example Support", "loop"),
                 read_blob=(blobs or {}).__getitem__)
    out = r.render(template=template, context=context, recipients=["jane@customer.example"],
                   message_id="<m@example.com>", now=NOW)
    return email.message_from_bytes(out.data, policy=email.policy.default)  # type: ignore[return-value]


def case_context(**extra: Any) -> dict[str, Any]:
    from tests.unit.test_render import context

    return context(**extra)


def test_relayed_reply_is_from_the_support_address_with_the_staff_name_and_carries_the_files():
    msg = render("customer/reply", case_context(
        from_name="Alice Agent via Example Support",
        attachments=[{"sha256": "ab" * 32, "filename": "fix.patch", "type": "text/x-diff"},
                     {"sha256": "cd" * 32, "filename": "shot.png", "type": "image/png"},
                     {"sha256": "ef" * 32, "filename": "odd.bin", "type": "nonsense"}]),
        blobs={"ab" * 32: b"--- a\n+++ b\n", "cd" * 32: b"\x89PNG\r\n", "ef" * 32: b"\x00"})
    assert msg["From"] == "Alice Agent via Example Support <support@example.com>"
    files = {p.get_filename(): (p.get_content_type(), p.get_content()) for p in msg.iter_attachments()}
    assert files["fix.patch"][0] == "text/x-diff"
    assert files["shot.png"] == ("image/png", b"\x89PNG\r\n")
    assert files["odd.bin"][0] == "application/octet-stream"


def test_without_a_from_name_the_mail_is_from_the_desk():
    assert render("customer/ack", case_context())["From"] == "Example Support <support@example.com>"


def test_attachments_without_a_blob_reader_fail_the_rendering():
    r = Renderer(make_environment(), Sender("support@example.com", "S", "i"))
    with pytest.raises(RuntimeError):
        r.render(template="customer/reply", context=case_context(attachments=[
            {"sha256": "ab" * 32, "filename": "a", "type": "text/plain"}]), recipients=["a@b.c"],
            message_id="<1@x>", now=NOW)


@pytest.mark.parametrize("template", ["customer/my_cases", "customer/help", "customer/settings"])
def test_answers_to_requests_render_without_a_case(template):
    ctx = {"headers": {"message_id": "<n@example.com>", "in_reply_to": "<q@customer.example>",
                       "references": ["<q@customer.example>"], "reply_to": None},
           **desk_context("Printer <b>jams</b>", "Jane", "x.pdf")}
    msg = render(template, ctx)
    text = msg.get_body(("plain",)).get_content()
    assert "Case " not in text.split("-- ")[-1] and 'subject "help"' in text
    assert msg["Auto-Submitted"] == "auto-replied"
    assert "<b>jams</b>" not in msg.get_body(("html",)).get_content()


def test_my_cases_lists_number_subject_status_severity_and_last_activity():
    ctx = {"headers": {"message_id": "<n@x>", "in_reply_to": None, "references": [], "reply_to": None},
           **desk_context("VPN drops", "Jane", "x")}
    text = render("customer/my_cases", ctx).get_body(("plain",)).get_content()
    assert "00000007" in text and "VPN drops" in text and "open" in text and "severity 2" in text
    assert "2026-11-29 12:00 UTC" in text
