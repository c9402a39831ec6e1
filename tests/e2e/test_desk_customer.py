# SPDX-License-Identifier: GPL-3.0-or-later
"""Customers use the desk by mail over real SMTP: close, thanks, My Cases, help, settings, preferences."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import select

from casemail.app import open_store
from store import cases
from store.db import read_only
from store.models import Contact, Inbound
from tests.e2e.conftest import smarthost
from tests.e2e.desk_helpers import AGENT, JANE, STAFF, exchange, open_case, staff_mail, text, to
from tests.e2e.test_case_flow import make_mail

BOSS = "boss@customer.example"


def reply(ack: EmailMessage, body: str, n: str, sender: str = "Jane Doe <jane@customer.example>") -> EmailMessage:
    return make_mail(f"Re: {ack['Subject']}", body, sender=sender, message_id=f"<{n}@customer.example>",
                     in_reply_to=ack["Message-ID"])


async def test_customer_closes_their_case_and_thanks_after_close_opens_nothing(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    ack, _ = await open_case(d, sink)
    out = await exchange(d, sink, reply(ack, "#close\nAll good now.\n", "cl1"))
    (closed,) = to(out, JANE)
    assert "is now closed" in text(closed)
    assert "All good now." in text(to(out, AGENT)[0])  # the comment still reaches staff
    # Thanks after the close: kept on the closed case, no new case, no mail.
    out = await exchange(d, sink, reply(closed, "Thank you very much!\n\n> case 00000001 is now closed\n", "cl2"))
    assert out == []
    # Anything else after the close opens a new case that points back.
    out = await exchange(d, sink, reply(closed, "It broke again.\n", "cl3"))
    (new_ack,) = to(out, JANE)
    assert new_ack["Subject"].startswith("[Case #00000002]")
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        case = cases.get_case(s, 1)
        assert case.status == "closed"
        history = cases.history(s, case)
        assert [e.kind for e in history if e.kind == "status_change"] == ["status_change"]
        thanks = next(e for e in history if e.message_id == "cl2@customer.example")
        assert thanks.kind == "customer_message" and thanks.text.startswith("Thank you very much!")
        assert case.updated_at < thanks.created_at  # a thank-you is not activity
        assert cases.get_case(s, 2).follow_up_of_id == case.id
        assert cases.get_case(s, 3) is None
    store.engine.dispose()


async def test_the_word_close_alone_closes_and_only_the_requester_may(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    out = await exchange(d, sink, make_mail("VPN", "Down.\n", message_id="<v1@customer.example>",
                                            to=f"support@example.com, {BOSS}"))
    ack = to(out, JANE)[0]
    # The colleague copied on the case may write into it but not close it.
    out = await exchange(d, sink, reply(ack, "close\n", "v2", sender=BOSS))
    assert "only the person who opened the case may close it" in text(to(out, BOSS)[0])
    out = await exchange(d, sink, reply(ack, "Close.\n", "v3"))
    assert all("is now closed" in text(m) for m in out) and to(out, JANE) and to(out, BOSS)
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        assert cases.get_case(s, 1).status == "closed"
    store.engine.dispose()


async def test_my_cases_by_mail_with_filters_and_search(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    for n, subject in enumerate(["Printer jams", "VPN drops", "Printer toner"], start=1):
        await open_case(d, sink, subject, n)
    ack3 = [m for m in sink.parsed() if m["Subject"] == "[Case #00000003] Printer toner"][0]
    await exchange(d, sink, reply(ack3, "close", "t1"))
    await exchange(d, sink, make_mail("Other", "x\n", sender="eve@elsewhere.example", message_id="<e@x.example>"))

    async def ask(subject: str, n: int) -> str:
        out = await exchange(d, sink, make_mail(subject, "\n", message_id=f"<q{n}@customer.example>"))
        (answer,) = out
        assert answer["To"] == JANE and answer["Auto-Submitted"] == "auto-replied"
        assert answer["In-Reply-To"] == f"<q{n}@customer.example>"
        return text(answer)

    body = await ask("my cases", 1)
    assert "Printer jams" in body and "VPN drops" in body and "Printer toner" not in body and "Other" not in body
    assert "00000001" in body and "severity 3" in body and "open" in body and "UTC" in body
    body = await ask("Re: My Cases closed", 2)
    assert "Printer toner" in body and "VPN drops" not in body
    body = await ask("my cases all search printer", 3)
    assert "Printer jams" in body and "Printer toner" in body and "VPN" not in body
    body = await ask("my cases search nothing-like-this", 4)
    assert "you have no open cases" in body
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        rows = s.scalars(select(Inbound).where(Inbound.message_id.like("q%"))).all()
        assert [r.outcome for r in rows] == ["request"] * 4 and all(r.case_id is None for r in rows)
        assert cases.get_case(s, 5) is None
    store.engine.dispose()


async def test_help_and_settings_by_mail_and_robots_are_never_answered(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    (answer,) = await exchange(d, sink, make_mail("help", "\n", message_id="<h1@customer.example>"))
    assert "my cases" in text(answer) and "#close" in text(answer) and "settings" in text(answer)
    (answer,) = await exchange(d, sink, make_mail("Settings", "Hello,\nname: Jane Q. Doe\nnotify: replies\n"
                                                                "colour: blue\n", message_id="<h2@customer.example>"))
    body = text(answer)
    assert "Jane Q. Doe" in body and "replies" in body and "there is no setting 'colour'" in body
    robot = make_mail("my cases", "\n", message_id="<h3@customer.example>")
    robot["Auto-Submitted"] = "auto-replied"
    assert await exchange(d, sink, robot) == []
    await d.shutdown()
    store = open_store(d.settings)
    with read_only(store.engine) as s:
        jane = s.scalar(select(Contact).where(Contact.address_key == JANE))
        assert (jane.display_name, jane.notify) == ("Jane Q. Doe", "replies")
    store.engine.dispose()


async def test_requests_count_toward_the_sender_rate_limit(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), limits={"new_cases_per_hour": 2})
    answers = []
    for n in range(4):
        answers += await exchange(d, sink, make_mail("help", "\n", message_id=f"<r{n}@customer.example>"))
    subjects = [m["Subject"] for m in answers]
    assert subjects.count("What you can do by mail at Example Support") == 2
    assert subjects.count("Too many new cases: your mail was kept but not opened as a case") == 1


async def test_notification_preferences_thin_out_the_mail(start_daemon, sink):
    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    out = await exchange(d, sink, make_mail("Slow", "Slow.\n", message_id="<p1@customer.example>",
                                            to=f"support@example.com, {BOSS}"))
    note = to(out, AGENT)[0]
    await exchange(d, sink, make_mail("settings", "notify: replies\n", sender=BOSS, message_id="<p2@c.example>"))
    out = await exchange(d, sink, staff_mail(f"Re: {note['Subject']}", "Looking.\n", in_reply_to=note["Message-ID"],
                                             message_id="<p3@staff.example>"))
    assert to(out, JANE) and not to(out, BOSS)  # a copy to a cc'd "replies" person is not a reply to them
    await exchange(d, sink, make_mail("settings", "notify: digest\n", message_id="<p4@customer.example>"))
    out = await exchange(d, sink, staff_mail(f"Re: {note['Subject']}", "#close\nDone.\n", in_reply_to=note["Message-ID"],
                                             message_id="<p5@staff.example>"))
    assert to(out, JANE) == [] and to(out, BOSS) == []
    await d.shutdown()


async def test_operator_sets_a_profile_from_the_cli(start_daemon, sink, capsys):
    import json

    from casemail.cli import main
    from tests.e2e.test_case_flow import _write_config

    d = await start_daemon(outbound=smarthost(sink), staff=STAFF)
    await open_case(d, sink)
    await d.shutdown()
    cfg = str(_write_config(d))
    capsys.readouterr()
    assert main(["-c", cfg, "profile", "JANE@customer.example", "--name", "Jane  Roe", "--notify", "digest",
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["name"], row["notify"], row["address"]) == ("Jane Roe", "digest", JANE)
    assert main(["-c", cfg, "profile", JANE]) == 0
    assert "name Jane Roe, notify digest" in capsys.readouterr().out
    assert main(["-c", cfg, "profile", "nobody@elsewhere.example", "--notify", "every"]) == 66
    assert main(["-c", cfg, "profile", JANE, "--name", " "]) == 64
