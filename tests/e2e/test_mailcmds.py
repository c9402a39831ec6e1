# SPDX-License-Identifier: GPL-3.0-or-later
"""`casemail deliver` (the MTA pipe) and `casemail import`, run as the real command."""

from __future__ import annotations

import base64
import mailbox
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from store.models import Outbox
from tests.e2e.transport_helpers import StoreView, raw_mail

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, database_url: str) -> Path:
    cfg = tmp_path / "casemail.toml"
    cfg.write_text(f'[database]\nurl = "{database_url}"\n[support]\naddresses = ["support@example.com"]\n'
                   'secret_key = "test-key-0123456789abcdef"\n[logging]\nlevel = "WARNING"\n')
    return cfg


def casemail(cfg: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "casemail", "-c", str(cfg), *args], input=stdin, cwd=REPO,
                          capture_output=True, timeout=60)


def test_deliver_exit_codes(database_url: str, tmp_path: Path):
    cfg = write_config(tmp_path, database_url)
    assert casemail(cfg, "migrate").returncode == 0
    mail = raw_mail("Piped", message_id="pipe-1@customer.example")

    ok = casemail(cfg, "deliver", "--sender", "jane@customer.example", "--recipient", "support+x@example.com",
                  stdin=mail)
    assert ok.returncode == 0, ok.stderr
    view = StoreView(database_url)
    try:
        assert view.inbound() == [("accepted", None, "pipe-1@customer.example")]
    finally:
        view.close()

    not_ours = casemail(cfg, "deliver", "--sender", "jane@customer.example", "--recipient", "sales@example.com",
                        stdin=mail)
    assert not_ours.returncode == 67
    assert not_ours.stderr.decode().strip().count("\n") == 0 and "not a mailbox of ours" in not_ours.stderr.decode()

    garbage = casemail(cfg, "deliver", "--sender", "", "--recipient", "support@example.com", stdin=b"\x00\x01 hello")
    assert garbage.returncode == 65, garbage.stderr

    # Nothing listens on port 1: the store is unavailable, so the MTA must keep the mail and retry.
    (tmp_path / "down").mkdir()
    down = write_config(tmp_path / "down", "postgresql+psycopg://casemail@127.0.0.1:1/casemail?connect_timeout=5")
    tempfail = casemail(down, "deliver", "--sender", "jane@customer.example", "--recipient", "support@example.com",
                        stdin=mail)
    assert tempfail.returncode == 75, tempfail.stderr
    assert "cannot store the message now" in tempfail.stderr.decode()


def make_sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    mbox_path = tmp_path / "archive.mbox"
    box = mailbox.mbox(mbox_path)
    box.add(raw_mail("Old problem", message_id="imp-1@customer.example"))
    box.add(raw_mail("Re: [Case #00000001] Old problem", message_id="imp-2@customer.example"))
    box.add(raw_mail("Another problem", message_id="imp-3@customer.example", sender="joe@other.example"))
    box.close()
    md_path = tmp_path / "maildir"
    md = mailbox.Maildir(md_path)
    md.add(raw_mail("From a maildir", message_id="imp-4@customer.example"))
    # The same message as the first one in the mbox, delivered again with an extra Received line.
    md.add(b"Received: from relay.example by mx.example; Sun, 29 Nov 2026 04:00:00 +0000\r\n"
           + raw_mail("Old problem", message_id="imp-1@customer.example"))
    eml = tmp_path / "single.eml"
    eml.write_bytes(raw_mail("Single file", message_id="imp-5@customer.example"))
    return mbox_path, md_path, eml


def test_import_twice_changes_nothing_the_second_time(database_url: str, tmp_path: Path):
    cfg = write_config(tmp_path, database_url)
    sources = [str(p) for p in make_sources(tmp_path)]
    first = casemail(cfg, "import", *sources)
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().strip() == (
        "imported 6 messages: 4 created, 1 threaded, 1 duplicates, 0 refused, 0 ignored, 0 failed")
    view = StoreView(database_url)
    try:
        rows = view.inbound()
        subjects = view.subjects()
        assert subjects == ["Old problem", "Another problem", "From a maildir", "Single file"]

        second = casemail(cfg, "import", *sources)
        assert second.returncode == 0, second.stderr
        assert second.stdout.decode().strip() == (
            "imported 6 messages: 0 created, 0 threaded, 6 duplicates, 0 refused, 0 ignored, 0 failed")
        assert view.inbound() == rows and view.subjects() == subjects
    finally:
        view.close()

    missing = casemail(cfg, "import", str(tmp_path / "nope.mbox"))
    assert missing.returncode == 66


def with_attachment(subject: str, *, message_id: str, size: int) -> bytes:
    # A reply carrying a file over the limit: the sender would be told that it was not kept, by a
    # notice that is not one of the plan's notifications.
    return (f"From: Jane Doe <jane@customer.example>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}>\r\nDate: Sun, 29 Nov 2026 04:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
            "Here is the log.\r\n--b\r\nContent-Type: application/octet-stream\r\n"
            'Content-Disposition: attachment; filename="big.log"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + base64.encodebytes(b"x" * size).decode().replace("\n", "\r\n") + "--b--\r\n").encode()


def outbox_templates(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        with Session(engine) as s:
            return sorted(s.scalars(select(Outbox.template)))
    finally:
        engine.dispose()


def test_import_mails_nobody_without_notify(database_url: str, tmp_path: Path):
    cfg = write_config(tmp_path, database_url)
    with cfg.open("a") as f:
        f.write('[staff]\naddresses = ["agent@example.com"]\n[limits]\nmax_attachment_size = 1024\n')
    old = tmp_path / "old"
    old.mkdir()
    (old / "1.eml").write_bytes(raw_mail("Old problem", message_id="quiet-1@customer.example"))
    (old / "2.eml").write_bytes(raw_mail("Re: [Case #00000001] Old problem", message_id="quiet-2@customer.example",
                                         body="It still fails.\r\n"))
    (old / "3.eml").write_bytes(with_attachment("Re: [Case #00000001] Old problem",
                                                message_id="quiet-3@customer.example", size=4096))
    quiet = casemail(cfg, "import", str(old))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.decode().strip() == (
        "imported 3 messages: 1 created, 2 threaded, 0 duplicates, 0 refused, 0 ignored, 0 failed")
    # Filed, but nobody was mailed: no acknowledgement, no staff notification, no notice about the
    # file that was not kept.
    assert outbox_templates(database_url) == []

    # Running it again with --notify does not mail about mail already imported.
    again = casemail(cfg, "import", "--notify", str(old))
    assert again.returncode == 0, again.stderr
    assert "0 created, 0 threaded, 3 duplicates" in again.stdout.decode()
    assert outbox_templates(database_url) == []

    # With --notify, imported mail is treated as new mail.
    new = tmp_path / "new"
    new.mkdir()
    (new / "1.eml").write_bytes(raw_mail("New problem", message_id="loud-1@customer.example",
                                         sender="joe@other.example"))
    (new / "2.eml").write_bytes(with_attachment("Re: [Case #00000001] Old problem",
                                                message_id="loud-2@customer.example", size=4096))
    loud = casemail(cfg, "import", "--notify", str(new))
    assert loud.returncode == 0, loud.stderr
    assert "1 created, 1 threaded, 0 duplicates" in loud.stdout.decode()
    assert outbox_templates(database_url) == ["customer/ack", "customer/not_kept", "staff/comment",
                                              "staff/new_case"]
    view = StoreView(database_url)
    try:
        assert view.subjects() == ["Old problem", "New problem"]
    finally:
        view.close()

    help_text = casemail(cfg, "import", "--help").stdout.decode()
    assert "--notify" in help_text


def test_quarantined_mail_is_listed_and_requeued(database_url: str, tmp_path: Path):
    import json
    from datetime import datetime, timezone

    from store import inbound
    from store.models import Inbound

    cfg = write_config(tmp_path, database_url)
    assert casemail(cfg, "migrate").returncode == 0
    assert casemail(cfg, "deliver", "--sender", "jane@customer.example", "--recipient", "support@example.com",
                    stdin=raw_mail("Stuck", message_id="stuck-1@customer.example")).returncode == 0
    assert casemail(cfg, "quarantine").stdout.decode().strip() == "no quarantined mail"
    # What processing leaves after the last failed attempt.
    engine = create_engine(database_url)
    with Session(engine) as s, s.begin():
        row = s.scalars(select(Inbound)).one()
        inbound.finish(s, row, outcome="quarantined", reason="RuntimeError: a bug\nmore detail", case_id=None,
                       now=datetime.now(timezone.utc))
        row_id = row.id

    listed = json.loads(casemail(cfg, "quarantine", "--json").stdout)
    assert [(r["id"], r["mail_from"], r["reason"]) for r in listed] == [
        (row_id, "jane@customer.example", "RuntimeError: a bug\nmore detail")]
    assert "RuntimeError: a bug" in casemail(cfg, "quarantine").stdout.decode()
    assert casemail(cfg, "requeue").returncode == 64                 # neither ids nor --all
    done = casemail(cfg, "requeue", str(row_id))
    assert done.returncode == 0 and f"requeued 1: {row_id}" in done.stdout.decode()
    with Session(engine) as s:
        assert (s.get(Inbound, row_id).state, s.get(Inbound, row_id).attempts) == ("accepted", 0)
    again = casemail(cfg, "requeue", str(row_id))
    assert again.returncode == 66                                    # no longer quarantined
    assert f"inbound {row_id} is not quarantined; left alone" in again.stderr.decode()
    assert casemail(cfg, "requeue", "--all").returncode == 0         # nothing to do is no error
    engine.dispose()
