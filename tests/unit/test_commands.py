# SPDX-License-Identifier: GPL-3.0-or-later
"""Command lines, "close", "thanks", requests by subject and settings lines, as tables."""

from __future__ import annotations

import pytest

from intake.commands import CaseState, Command, after, is_close_word, is_thanks_only, judge, parse_commands
from intake.requests import Request, parse_request, parse_settings

# (text, commands as (name, value), refused reasons' beginnings, comment)
COMMAND_ROWS: list[tuple[str, list[tuple[str, object]], list[str], str]] = [
    ("", [], [], ""),
    ("Just a reply.", [], [], "Just a reply."),
    ("#close", [("close", None)], [], ""),
    ("#CLOSE", [("close", None)], [], ""),
    ("  #close  ", [("close", None)], [], ""),
    ("\n\n#close\n", [("close", None)], [], ""),
    ("#close\nThanks for your patience.", [("close", None)], [], "Thanks for your patience."),
    ("#close\n\nThanks.\n\nBye.", [("close", None)], [], "Thanks.\n\nBye."),
    ("#close now", [], ["#close takes nothing"], ""),
    ("#severity 1", [("severity", 1)], [], ""),
    ("#severity 4", [("severity", 4)], [], ""),
    ("#severity S2", [("severity", 2)], [], ""),
    ("#severity sev3", [("severity", 3)], [], ""),
    ("#severity: 2", [("severity", 2)], [], ""),
    ("#sev 2", [("severity", 2)], [], ""),
    ("#priority 1", [("severity", 1)], [], ""),
    ("#severity 0", [], ["severity must be"], ""),
    ("#severity 5", [], ["severity must be"], ""),
    ("#severity high", [], ["severity must be"], ""),
    ("#severity", [], ["#severity needs"], ""),
    ("#severity 12", [], ["severity must be"], ""),
    ("#product Widget Pro", [("product", "Widget Pro")], [], ""),
    ("#product", [], ["#product needs"], ""),
    ("#product " + "x" * 101, [], ["a product is at most"], ""),
    ("#product " + "x" * 100, [("product", "x" * 100)], [], ""),
    ("#version 2.1.3", [("version", "2.1.3")], [], ""),
    ("#version", [], ["#version needs"], ""),
    ("#version \x07", [], ["the version contains"], ""),
    ("#assign bob@staff.example", [("assign", "bob@staff.example")], [], ""),
    ("#assign <bob@staff.example>", [("assign", "bob@staff.example")], [], ""),
    ("#assign Bob Agent <bob@staff.example>", [("assign", "bob@staff.example")], [], ""),
    ("#assign me", [("assign", "me")], [], ""),
    ("#assign ME", [("assign", "me")], [], ""),
    ("#assign bob", [], ["'bob' is not a mail address"], ""),
    ("#assign", [], ["#assign needs"], ""),
    ("#assign a@b.example, c@d.example", [], ["is not a mail address"], ""),
    ("#cc boss@customer.example", [("cc", "boss@customer.example")], [], ""),
    ("#cc boss@customer", [], ["is not a mail address"], ""),
    ("#cc @customer.example", [], ["is not a mail address"], ""),
    ("#cc", [], ["#cc needs"], ""),
    ("#uncc boss@customer.example", [("uncc", "boss@customer.example")], [], ""),
    ("#uncc boss@@customer.example", [], ["is not a mail address"], ""),
    ("#note", [("note", None)], [], ""),
    ("#internal", [("note", None)], [], ""),
    ("#private", [("note", None)], [], ""),
    ("#note\nCustomer is upset.", [("note", None)], [], "Customer is upset."),
    ("#note the customer called\nmore", [("note", None)], [], "the customer called\nmore"),
    ("#internal: they called", [("note", None)], [], "they called"),
    ("#note\n#close", [("note", None), ("close", None)], [], ""),
    ("#clsoe", [], ["there is no command #clsoe"], ""),
    ("#foo bar\nText", [], ["there is no command #foo"], "Text"),
    ("#1 issue is the printer", [], [], "#1 issue is the printer"),
    ("# heading", [], [], "# heading"),
    ("##close", [], [], "##close"),
    ("Hello\n#close", [], [], "Hello\n#close"),
    ("#severity 1\n#product Widget\n#version 3\nDown for everyone.",
     [("severity", 1), ("product", "Widget"), ("version", "3")], [], "Down for everyone."),
    ("#severity 1\n\n#assign me\n\nOn it.", [("severity", 1), ("assign", "me")], [], "On it."),
    ("#severity 9\n#close", [("close", None)], ["severity must be"], ""),
    ("#cc a@b.example\n#uncc c@d.example", [("cc", "a@b.example"), ("uncc", "c@d.example")], [], ""),
    ("#close\n#close", [("close", None), ("close", None)], [], ""),
    ("\r\n#close\r\nbye\r\n", [("close", None)], [], "bye"),
    ("#note\n\n\n", [("note", None)], [], ""),
    ("   \n  \n", [], [], ""),
    ("#cc\tboss@customer.example", [("cc", "boss@customer.example")], [], ""),
]

# Every command with every kind of bad argument, generated so that the table covers the whole grammar.
for _name in ("severity", "product", "version", "assign", "cc", "uncc"):
    COMMAND_ROWS.append((f"#{_name}", [], [f"#{_name} needs"], ""))
    COMMAND_ROWS.append((f"#{_name.upper()}", [], [f"#{_name} needs"], ""))
    COMMAND_ROWS.append((f"#{_name}\nafter", [], [f"#{_name} needs"], "after"))
for _name in ("assign", "cc", "uncc"):
    for _bad in ("nobody", "a@b", "a b@c.example", "<>", "a@b.c, d@e.f", "a@b.example;c@d.example", "@x.example"):
        COMMAND_ROWS.append((f"#{_name} {_bad}", [], ["is not a mail address"], ""))
    for _good in ("x@y.example", "X.Y+tag@sub.y.example", "Name <x@y.example>", '"Y, X" <x@y.example>'):
        expected = _good[_good.find("<") + 1:-1] if "<" in _good else _good
        COMMAND_ROWS.append((f"#{_name} {_good}", [(_name, expected)], [], ""))
for _n in range(-2, 12):
    ok = 1 <= _n <= 4
    COMMAND_ROWS.append((f"#severity {_n}", [("severity", _n)] if ok else [], [] if ok else ["severity must"], ""))
for _word in ("open", "reopen", "assignee", "ccc", "notes", "closed", "severities", "prod", "ver", "help"):
    COMMAND_ROWS.append((f"#{_word}", [], [f"there is no command #{_word}"], ""))
for _name in ("close", "note", "internal"):
    for _prefix in ("", " ", "\n", "\n\n", "\t"):
        COMMAND_ROWS.append((f"{_prefix}#{_name}\nText.", [(("note" if _name == "internal" else _name), None)], [],
                             "Text."))


@pytest.mark.parametrize(("text", "commands", "refused", "comment"), COMMAND_ROWS,
                         ids=[f"{i}:{r[0][:30]!r}" for i, r in enumerate(COMMAND_ROWS)])
def test_parse_commands(text, commands, refused, comment):
    got = parse_commands(text)
    assert [(c.name, c.value) for c in got.commands] == commands
    assert len(got.refused) == len(refused)
    for r, want in zip(got.refused, refused):
        assert want in r.reason, r.reason
    assert got.comment == comment


STATE = CaseState(status="open", severity=3, product="Widget", version="1", requester="jane@customer.example",
                  cc=frozenset({"bob@customer.example"}), assignee=None, ours=frozenset({"support@example.com"}),
                  is_staff_address=lambda a: a.endswith("@staff.example"))
CLOSED_STATE = CaseState(status="closed", severity=3, product=None, version=None, requester="jane@customer.example")
AGENT = "agent@staff.example"
JANE = "jane@customer.example"
BOB = "bob@customer.example"

JUDGE_ROWS = [
    # (command, state, sender, is_staff, reason beginning or None)
    (Command("close", None, ""), STATE, AGENT, True, None),
    (Command("close", None, ""), CLOSED_STATE, AGENT, True, "the case is already closed"),
    (Command("close", None, ""), STATE, JANE, False, None),
    (Command("close", None, ""), CLOSED_STATE, JANE, False, "the case is already closed"),
    (Command("close", None, ""), STATE, BOB, False, "only the person who opened"),
    (Command("severity", 1, ""), STATE, AGENT, True, None),
    (Command("severity", 3, ""), STATE, AGENT, True, "the severity already is 3"),
    (Command("severity", 1, ""), STATE, JANE, False, "only staff may use #severity"),
    (Command("product", "Gadget", ""), STATE, AGENT, True, None),
    (Command("product", "Widget", ""), STATE, AGENT, True, "the product already is"),
    (Command("product", "Gadget", ""), STATE, JANE, False, "only staff may use #product"),
    (Command("version", "2", ""), STATE, AGENT, True, None),
    (Command("version", "1", ""), STATE, AGENT, True, "the version already is"),
    (Command("assign", "bob@staff.example", ""), STATE, AGENT, True, None),
    (Command("assign", "me", ""), STATE, AGENT, True, None),
    (Command("assign", "eve@elsewhere.example", ""), STATE, AGENT, True, "eve@elsewhere.example is not a staff"),
    (Command("assign", "support@example.com", ""), STATE, AGENT, True, "that is the support address"),
    (Command("assign", "bob@staff.example", ""), STATE, JANE, False, "only staff may use #assign"),
    (Command("cc", "boss@customer.example", ""), STATE, AGENT, True, None),
    (Command("cc", "BOB@customer.example", ""), STATE, AGENT, True, "bob@customer.example is already copied"),
    (Command("cc", JANE, ""), STATE, AGENT, True, "jane@customer.example opened the case"),
    (Command("cc", "x@staff.example", ""), STATE, AGENT, True, "staff follow cases"),
    (Command("cc", "support@example.com", ""), STATE, AGENT, True, "that is the support address"),
    (Command("cc", "boss@customer.example", ""), STATE, JANE, False, "only staff may use #cc"),
    (Command("uncc", BOB, ""), STATE, AGENT, True, None),
    (Command("uncc", "boss@customer.example", ""), STATE, AGENT, True, "boss@customer.example is not copied"),
    (Command("uncc", JANE, ""), STATE, AGENT, True, "the person who opened the case cannot"),
    (Command("note", None, ""), STATE, AGENT, True, None),
    (Command("note", None, ""), STATE, JANE, False, "only staff may use #note"),
]


@pytest.mark.parametrize(("cmd", "state", "sender", "is_staff", "reason"), JUDGE_ROWS,
                         ids=[f"{i}:{r[0].name}" for i, r in enumerate(JUDGE_ROWS)])
def test_judge(cmd, state, sender, is_staff, reason):
    got = judge(cmd, state, sender=sender, is_staff=is_staff)
    assert (got is None) == (reason is None), got
    if reason:
        assert got.startswith(reason), got


def test_after_tracks_the_state_so_a_repeated_command_is_refused():
    s = after(Command("assign", "me", ""), STATE, sender=AGENT)
    assert s.assignee == AGENT
    assert judge(Command("assign", AGENT, ""), s, sender=AGENT, is_staff=True).startswith("the case is already")
    s = after(Command("cc", "x@y.example", ""), s, sender=AGENT)
    assert judge(Command("cc", "x@y.example", ""), s, sender=AGENT, is_staff=True).endswith("already copied on the case")
    s = after(Command("close", None, ""), s, sender=AGENT)
    assert judge(Command("close", None, ""), s, sender=AGENT, is_staff=True) == "the case is already closed"
    assert after(Command("severity", 1, ""), s, sender=AGENT).severity == 1


CLOSE_ROWS = [
    ("close", True), ("Close", True), ("CLOSE.", True), ("  close!  ", True), ("close please", True),
    ("please close", True), ("Please close.", True), ("close it", False), ("closed", False), ("", False),
    ("do not close", False), ("close?", False), ("#close", False), ("close\n\nJane", False),
]


@pytest.mark.parametrize(("text", "expected"), CLOSE_ROWS)
def test_is_close_word(text, expected):
    assert is_close_word(text) is expected


THANKS_ROWS = [
    ("thanks", True), ("Thanks!", True), ("thank you", True), ("Thank you very much!", True), ("danke", True),
    ("Danke schön", True), ("Vielen Dank!", True), ("merci", True), ("Merci beaucoup", True), ("gracias", True),
    ("Muchas gracias", True), ("ok thanks!", True), ("OK, thanks", True), ("thx", True), ("ty", True),
    ("Thanks a lot", True), ("Thanks again", True), ("Great, thank you!", True), ("Perfect, thanks.", True),
    ("Thanks, works now", True), ("Cheers", True), ("thanks 🙂", True), ("Thank you so much for your help", True),
    ("grazie mille", True), ("Thanks, kind regards", True),
    ("", False), ("ok", False), ("great", False), ("thanks?", False), ("thanks, but it fails again", False),
    ("Thanks. Can you reopen?", False), ("thank you, one more question", False),
    ("The printer is on fire again, thanks", False), ("thanks " * 20, False),
    ("Thanks! Also the invoice is wrong.", False), ("Why thanks", False), ("no thanks", False),
    ("Danke, aber es geht nicht", False), ("merci, mais non", False), ("it is broken", False),
]


@pytest.mark.parametrize(("text", "expected"), THANKS_ROWS)
def test_is_thanks_only(text, expected):
    assert is_thanks_only(text) is expected


REQUEST_ROWS = [
    ("my cases", Request("my-cases", "open", "")),
    ("My Cases", Request("my-cases", "open", "")),
    ("MY CASES", Request("my-cases", "open", "")),
    ("Re: my cases", Request("my-cases", "open", "")),
    ("AW: RE: My cases", Request("my-cases", "open", "")),
    ("my cases open", Request("my-cases", "open", "")),
    ("my cases closed", Request("my-cases", "closed", "")),
    ("my cases all", Request("my-cases", "all", "")),
    ("My Cases ALL", Request("my-cases", "all", "")),
    ("my cases: closed", Request("my-cases", "closed", "")),
    ("my cases search printer", Request("my-cases", "open", "printer")),
    ("my cases search printer tray", Request("my-cases", "open", "printer tray")),
    ("my cases all search Printer", Request("my-cases", "all", "printer")),
    ("my cases closed search vpn", Request("my-cases", "closed", "vpn")),
    ("my cases, search vpn", Request("my-cases", "open", "vpn")),
    ("  my   cases   all  ", Request("my-cases", "all", "")),
    ("my cases.", Request("my-cases", "open", "")),
    ("help", Request("help")),
    ("HELP", Request("help")),
    ("Re: help", Request("help")),
    ("Help!", Request("help")),
    ("settings", Request("settings")),
    ("Settings", Request("settings")),
    ("Fwd: settings", Request("settings")),
    ("My cases are not shown", None),
    ("my cases is broken", None),
    ("my cases foo", None),
    ("my case", None),
    ("cases", None),
    ("help me, the printer is on fire", None),
    ("Need help", None),
    ("settings page broken", None),
    ("[Case #00000001] help", Request("help")),
    ("", None),
    ("Printer broken", None),
]


@pytest.mark.parametrize(("subject", "expected"), REQUEST_ROWS, ids=[r[0] or "empty" for r in REQUEST_ROWS])
def test_parse_request(subject, expected):
    assert parse_request(subject) == expected


SETTINGS_ROWS = [
    ("name: Jane Q. Doe", "Jane Q. Doe", None, 0),
    ("Name: Jane", "Jane", None, 0),
    ("notify: digest", None, "digest", 0),
    ("Notify: Replies", None, "replies", 0),
    ("notify: every", None, "every", 0),
    ("notify: weekly", None, None, 1),
    ("name:", None, None, 1),
    ("name: " + "x" * 201, None, None, 1),
    ("colour: blue", None, None, 1),
    ("Hello,\nname: Jane Doe\nnotify: replies\nThanks", "Jane Doe", "replies", 0),
    ("display name: J. Doe", "J. Doe", None, 0),
    ("notifications = digest", None, "digest", 0),
    ("", None, None, 0),
    ("please change my name", None, None, 0),
    ("name: A\nname: B", "B", None, 0),
]


@pytest.mark.parametrize(("text", "name", "notify", "refused"), SETTINGS_ROWS)
def test_parse_settings(text, name, notify, refused):
    got = parse_settings(text)
    assert (got.name, got.notify, len(got.refused)) == (name, notify, refused)
