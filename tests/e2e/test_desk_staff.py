# SPDX-License-Identifier: GPL-3.0-or-later
"""Staff run the desk by mail over real SMTP: public replies with files, internal notes, commands."""

from __future__ import annotations

from casemail.app import open_store
from store import cases
from store.db import read_only
from tests.e2e.conftest import smarthost
from tests.e2e.desk_helpers import AGENT, JANE, SIGNER, STAFF, exchange, open_case, staff_mail, text, to
from tests.e2e.test_case_flow import make_mail

BOB = "bob@staff.example"
BOSS = "boss@customer.example"


async def test_staff_reply_reaches_the_customer_with_its_attachment_and_without_the_staff_address(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    ack, note = await open_case(d, sink)
    out = await exchange(d, sink, staff_mail(
        f"Re: {note['Subject']}", "Please apply the attached patch.\n\nOn Monday, Support wrote:\n> Export fails.\n",
        in_reply_to=note["Message-ID"], message_id="<r1@staff.example>", attachment=("fix.patch", b"--- a\n+++ b\n")))
    (reply,) = to(out, JANE)
    raw = reply.as_string()
    assert "agent@staff.example" not in raw and "staff.example" not in raw
    assert reply["From"] == "Alice Agent via Example Support <support@example.com>"
    assert reply["Auto-Submitted"] is None
    body = text(reply)
    assert "Please apply the attached patch." in body and "Export fails." not in body  # quoted history stripped
    (att,) = list(reply.iter_attachments())
    assert att.get_filename() == "fix.patch" and att.get_content() == b"--- a\n+++ b\n"
    assert ack["Message-ID"] in reply["References"]
    # The other staff member is not the assignee and gets no copy; the author none either.
    assert to(out, AGENT) == [] and to(out, BOB) == []
    await d.shutdown()


async def test_an_internal_note_never_reaches_the_customer(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    _, note_mail = await open_case(d, sink)
    # 1. "#note" on the first line.
    out = await exchange(d, sink, staff_mail(f"Re: {note_mail['Subject']}", "#note\nCustomer is on the old plan.\n",
                                             in_reply_to=note_mail["Message-ID"], message_id="<n1@staff.example>"))
    assert to(out, JANE) == []
    (colleague,) = to(out, BOB)
    assert "INTERNAL NOTE" in text(colleague) and "Customer is on the old plan." in text(colleague)
    note_address = SIGNER.reply_address(1, "support@example.com", note=True)
    assert note_address in colleague["Reply-To"]
    (confirm,) = to(out, AGENT)
    assert "kept as an internal note" in text(confirm)
    # 2. Bob replies to the note's notification (to its From, not its Reply-To): it stays internal.
    out = await exchange(d, sink, staff_mail(f"Re: {colleague['Subject']}", "Then offer the upgrade.\n",
                                             sender="Bob <bob@staff.example>", in_reply_to=colleague["Message-ID"],
                                             message_id="<n2@staff.example>"))
    assert to(out, JANE) == [] and "Then offer the upgrade." in text(to(out, AGENT)[0])
    # 3. A mail to the case's note address is a note, whatever it says.
    out = await exchange(d, sink, staff_mail("anything", "Escalated to engineering.\n", to=note_address,
                                             message_id="<n3@staff.example>"), rcpt=[note_address])
    assert to(out, JANE) == [] and to(out, BOB)
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        history = cases.history(s, cases.get_case(s, 1))
        notes = [e for e in history if e.kind == "internal_note"]
        assert len(notes) == 3 and all(e.visibility == "internal" for e in notes)
        assert notes[0].text == "Customer is on the old plan."
        assert not [e for e in history if e.kind == "staff_reply"]
    store.engine.dispose()


async def test_each_command_is_carried_out_and_confirmed(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    _, note = await open_case(d, sink)
    subject = f"Re: {note['Subject']}"
    out = await exchange(d, sink, staff_mail(subject, "#severity 1\n#product Widget\n#version 2.1\n#assign bob@staff.example\n"
                                                      f"#cc {BOSS}\n", in_reply_to=note["Message-ID"],
                                             message_id="<k1@staff.example>"))
    (confirm,) = to(out, AGENT)
    assert confirm["Subject"] == "Commands on [Case #00000001]: 5 done, 0 refused"
    body = text(confirm)
    for line in ("severity 3 -> 1", "product (none) -> Widget", "version (none) -> 2.1",
                 "assigned to bob@staff.example", f"copied {BOSS} on the case"):
        assert line in body
    (changed,) = to(out, BOB)  # the new assignee is told
    assert "assigned to bob@staff.example" in text(changed)
    assert to(out, JANE) == [] and to(out, BOSS) == []  # commands alone send the customer nothing

    # The copied person now receives the staff replies, and the assignee a copy of a colleague's reply.
    out = await exchange(d, sink, staff_mail(subject, "We are on it.\n", in_reply_to=note["Message-ID"],
                                             message_id="<k2@staff.example>"))
    (reply,) = to(out, JANE)
    assert BOSS in reply["To"] and "We are on it." in text(reply)
    assert "We are on it." in text(to(out, BOB)[0])

    out = await exchange(d, sink, staff_mail(subject, f"#uncc {BOSS}\n#close\nFixed in 2.2.\n",
                                             in_reply_to=note["Message-ID"], message_id="<k3@staff.example>"))
    closed = [m for m in to(out, JANE) if "is now closed" in text(m)]
    assert closed and BOSS not in closed[0]["To"]
    reply = next(m for m in to(out, JANE) if "Fixed in 2.2." in text(m))
    assert "#close" not in text(reply) and BOSS not in reply["To"]
    confirm = next(m for m in to(out, AGENT) if m["Subject"].startswith("Commands on"))
    assert "closed the case" in text(confirm) and f"removed {BOSS}" in text(confirm)
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        case = cases.get_case(s, 1)
        assert (case.status, case.severity, case.product, case.version) == ("closed", 1, "Widget", "2.1")
        assert cases.assignee(s, case).address == BOB and cases.copied(s, case) == []
        changes = [e for e in cases.history(s, case) if e.kind == "status_change"]
        assert len(changes) == 7
    store.engine.dispose()


async def test_a_refused_command_says_why_and_a_customer_may_not_use_staff_commands(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    ack, note = await open_case(d, sink)
    out = await exchange(d, sink, staff_mail(f"Re: {note['Subject']}", "#severity 9\n#assign eve@elsewhere.example\n"
                                                                         "#clsoe\n", in_reply_to=note["Message-ID"],
                                             message_id="<x1@staff.example>"))
    (confirm,) = to(out, AGENT)
    assert confirm["Subject"] == "Commands on [Case #00000001]: 0 done, 3 refused"
    body = text(confirm)
    assert "severity must be a number from 1" in body and "eve@elsewhere.example is not a staff address" in body
    assert "there is no command #clsoe" in body
    assert to(out, JANE) == []
    # A customer's #severity is refused with a reason; the rest of the mail is their comment.
    out = await exchange(d, sink, make_mail(f"Re: {ack['Subject']}", "#severity 1\nIt is urgent now.\n",
                                            message_id="<x2@customer.example>", in_reply_to=ack["Message-ID"]))
    (told,) = to(out, JANE)
    assert "only staff may use #severity" in text(told)
    assert "It is urgent now." in text(to(out, AGENT)[0])
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        assert cases.get_case(s, 1).severity == 3
    store.engine.dispose()


async def test_spoofed_staff_commands_do_nothing(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    ack, _ = await open_case(d, sink)
    m = make_mail(f"Re: {ack['Subject']}", "#close\n", sender="agent@staff.example", message_id="<f1@x.example>",
                  in_reply_to=ack["Message-ID"])
    await exchange(d, sink, m)
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        assert cases.get_case(s, 1).status == "open"
    store.engine.dispose()


async def test_a_staff_member_without_a_name_is_signed_as_the_desk(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    _, note = await open_case(d, sink)
    out = await exchange(d, sink, staff_mail(f"Re: {note['Subject']}", "Fixed.\n", sender="agent@staff.example",
                                             in_reply_to=note["Message-ID"], message_id="<u1@staff.example>"))
    (reply,) = to(out, JANE)
    assert "agent@" not in reply.as_string() and reply["From"] == "Example Support <support@example.com>"
    assert "Example Support" in text(reply).split("-- ")[0]
    await d.shutdown()
