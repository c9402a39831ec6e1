# SPDX-License-Identifier: GPL-3.0-or-later
"""The IMAP poller in the real daemon against a real Dovecot: IDLE, restart, UIDVALIDITY, BYE, bad logins."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from tests.e2e.dovecot import GOOD_TOKEN_PREFIX, Dovecot, dovecot  # noqa: F401 - the session fixture.
from tests.e2e.transport_helpers import StoreView, eventually, raw_mail


@pytest.fixture
def view(database_url: str):  # type: ignore[no-untyped-def]
    v = StoreView(database_url)
    yield v
    v.close()


async def test_new_mail_via_idle_becomes_a_case_within_two_seconds(start_daemon, dovecot: Dovecot, view):
    user = dovecot.new_user()
    # poll_seconds=300: within this test only IDLE can make the daemon look again.
    d = await start_daemon(imap={"mailboxes": [dovecot.mailbox(user)]})
    await asyncio.to_thread(dovecot.append, user, raw_mail("First", message_id="idle-1@customer.example"))
    await eventually(lambda: view.settled(1), what="the first mail to be processed")

    started = time.monotonic()
    await asyncio.to_thread(dovecot.append, user, raw_mail("Second", message_id="idle-2@customer.example"))
    await eventually(lambda: view.subjects() == ["First", "Second"], timeout=5, what="the second case")
    assert time.monotonic() - started < 2.5

    # Moved only after commit, read with PEEK: the processed copies are unread and the inbox is empty.
    await eventually(lambda: len(dovecot.messages(user, "Processed")) == 2, timeout=5, what="the moves")
    assert dovecot.messages(user, "INBOX") == []
    assert all("Seen" not in flags for _, flags, _ in dovecot.messages(user, "Processed"))
    await d.shutdown()


async def test_mail_appended_while_the_daemon_is_down_is_taken_on_restart(start_daemon, dovecot: Dovecot, view):
    user = dovecot.new_user()
    box = dovecot.mailbox(user)
    d = await start_daemon(imap={"mailboxes": [box]})
    await asyncio.to_thread(dovecot.append, user, raw_mail("Before", message_id="down-1@customer.example"))
    await eventually(lambda: view.settled(1), what="the first mail")
    await d.shutdown()

    await asyncio.to_thread(dovecot.append, user, raw_mail("While down", message_id="down-2@customer.example"))
    await start_daemon(imap={"mailboxes": [box]})
    await eventually(lambda: view.subjects() == ["Before", "While down"], what="the mail sent while down")
    assert [o for _, o, _ in view.inbound()] == ["new-case", "new-case"]


async def test_flag_mode_and_a_uidvalidity_change_take_nothing_twice(start_daemon, dovecot: Dovecot, view):
    user = dovecot.new_user()
    box = dovecot.mailbox(user, after="flag")
    d = await start_daemon(imap={"mailboxes": [box]})
    for n in (1, 2):
        await asyncio.to_thread(dovecot.append, user, raw_mail(f"Flagged {n}", message_id=f"uv-{n}@c.example"))
    await eventually(lambda: view.settled(2), what="both mails")
    await eventually(lambda: all("Seen" in f for _, f, _ in dovecot.messages(user, "INBOX")), what="\\Seen flags")
    await d.shutdown()

    home = dovecot.dir / "mail" / user
    uidlist = home / "dovecot-uidlist"
    header, _, entries = uidlist.read_text().partition("\n")
    version, old_validity, *rest = header.split()
    before = int(old_validity[1:])
    # Renumbering the folder under a new UIDVALIDITY, as a restored or migrated mailbox would be: a UID
    # list with another V value and no index files for Dovecot to trust instead.
    for index in home.glob("dovecot*index*"):
        index.unlink()
    uidlist.write_text(" ".join([version, f"V{before + 1000}", *rest]) + "\n" + entries)
    await asyncio.to_thread(dovecot.append, user, raw_mail("After the change", message_id="uv-3@c.example"))
    c = await asyncio.to_thread(dovecot.connect, user)
    assert c.select("INBOX")[0] == "OK"
    assert c.response("UIDVALIDITY")[1] == [str(before + 1000).encode()]
    c.logout()

    await start_daemon(imap={"mailboxes": [box]})
    await eventually(lambda: view.settled(5), what="the folder to be read again")
    outcomes = sorted(o or "" for _, o, _ in view.inbound())
    assert outcomes == ["duplicate", "duplicate", "new-case", "new-case", "new-case"]
    assert view.subjects() == ["Flagged 1", "Flagged 2", "After the change"]


async def test_server_bye_during_idle_reconnects(start_daemon, dovecot: Dovecot, view, caplog):
    user = dovecot.new_user()
    await start_daemon(imap={"mailboxes": [dovecot.mailbox(user)]})
    await asyncio.to_thread(dovecot.append, user, raw_mail("Before BYE", message_id="bye-1@c.example"))
    await eventually(lambda: view.settled(1), what="the first mail")

    with caplog.at_level(logging.INFO, logger="intake.transports.imap"):
        await asyncio.to_thread(dovecot.kick, user)
        await asyncio.to_thread(dovecot.append, user, raw_mail("After BYE", message_id="bye-2@c.example"))
        await eventually(lambda: view.subjects() == ["Before BYE", "After BYE"], what="the mail after BYE")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "retrying" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


async def test_xoauth2_with_a_token_file(start_daemon, dovecot: Dovecot, view, tmp_path: Path):
    user = dovecot.new_user()
    token = tmp_path / "access.token"
    token.write_text(GOOD_TOKEN_PREFIX + user + "\n")
    await start_daemon(imap={"mailboxes": [dovecot.mailbox(user, password="", oauth2_token_file=str(token))]})
    await asyncio.to_thread(dovecot.append, user, raw_mail("Token", message_id="oauth-1@c.example"))
    await eventually(lambda: view.subjects() == ["Token"], what="the mail read over XOAUTH2")


async def test_a_bad_token_or_password_never_wedges_the_daemon(start_daemon, dovecot: Dovecot, view, tmp_path: Path,
                                                               caplog):
    good = dovecot.new_user()
    bad_token = tmp_path / "bad.token"
    bad_token.write_text("expired\n")
    boxes = [
        dovecot.mailbox(good),
        dovecot.mailbox(dovecot.new_user(), name="badtoken", password="", oauth2_token_file=str(bad_token),
                        timeout=2.0),
        dovecot.mailbox(dovecot.new_user(), name="badpassword", password="wrong"),
    ]
    with caplog.at_level(logging.INFO, logger="intake.transports.imap"):
        d = await start_daemon(imap={"mailboxes": boxes})
        await asyncio.to_thread(dovecot.append, good, raw_mail("Password", message_id="auth-1@c.example"))
        await eventually(lambda: view.subjects() == ["Password"], what="the good mailbox")
        await eventually(lambda: len({r.getMessage().split(":")[0] for r in caplog.records
                                      if r.levelno == logging.WARNING}) == 2, what="both failures logged")
        # Shutting down while a login is refused or a backoff runs is still prompt.
        started = time.monotonic()
        await d.shutdown()
        assert time.monotonic() - started < 5
    failing = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(m.split(":")[0] for m in failing) == ["imap badpassword", "imap badtoken"], failing
