# SPDX-License-Identifier: GPL-3.0-or-later
"""Roundup's side of the peer benchmark: a folder of mails through its mail gateway.

Run with the peers' environment (peer_bench.py does; setup_peers.sh makes it)::

    PEERS_VENV/bin/python bench/peers/roundup_feed.py MAIL_FOLDER [--mode in-process|per-mail]

It installs a fresh classic tracker with the sqlite backend in a temporary folder and feeds it every
mail, in one of Roundup's two ways of taking mail:

- in-process: one process opens the tracker once and hands each message to
  ``roundup.mailgw.MailGW.main`` (which opens the database, parses, creates or updates the issue and
  its msg and file nodes, runs the detectors and commits, per message), as ``roundup-mailgw`` does
  for a mailbox;
- per-mail: one ``roundup-mailgw TRACKER`` process per message, the message on its standard input,
  which is how an MTA pipes mail into Roundup; the start of each process is part of the time.

Two settings differ from a fresh classic tracker, both so that it does the work the other systems
do: anonymous senders may use the mail gateway (the classic schema comments the line out to keep
spam from registering users; a support desk takes mail from strangers, and so do the others), and
messages_to_author is on, so that the sender gets a copy of each message as the others send an
acknowledgement or notice. Outgoing mail goes to a file (mail debug), never to a server.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import roundup.instance
from roundup import mailgw
from roundup.scripts.roundup_mailgw import parse_arguments

from feedcommon import Timer, read_folder, report

_BIN = Path(sys.executable).parent
# How long one roundup-mailgw process may take; a slower one means something is broken.
PER_MAIL_TIMEOUT = 60.0

_ANONYMOUS_EMAIL = "#db.security.addPermissionToRole('Anonymous', 'Email Access')"


def install_tracker(home: Path) -> Path:
    """A fresh classic tracker with the sqlite backend in home, mail going to home/sent.txt."""
    sent = home / "sent.txt"
    options = ",".join((
        f"mail_debug={sent}", "mail_domain=example.com", "tracker_web=http://localhost/tracker/",
        "messages_to_author=yes",
    ))
    admin = [str(_BIN / "roundup-admin"), "-i", str(home)]
    subprocess.run([*admin, "install", "classic", "sqlite", options], check=True, stdout=subprocess.DEVNULL,
                   timeout=120)
    schema = home / "schema.py"
    text = schema.read_text()
    if _ANONYMOUS_EMAIL not in text:
        raise SystemExit("the classic schema no longer has the commented anonymous 'Email Access' line")
    schema.write_text(text.replace(_ANONYMOUS_EMAIL, _ANONYMOUS_EMAIL[1:]))
    subprocess.run([*admin, "initialise", "admin-password"], check=True, stdout=subprocess.DEVNULL, timeout=120)
    return sent


def feed_in_process(home: Path, raws: list[bytes], timer: Timer) -> None:
    instance = roundup.instance.open(str(home))
    _parser, arguments = parse_arguments([str(home)])
    handler = mailgw.MailGW(instance, arguments)
    with timer:
        for raw in raws:
            handler.main(io.BytesIO(raw))


def feed_per_mail(home: Path, raws: list[bytes], timer: Timer) -> None:
    command = [str(_BIN / "roundup-mailgw"), str(home)]
    with timer:
        for raw in raws:
            subprocess.run(command, input=raw, check=True, stdout=subprocess.DEVNULL, timeout=PER_MAIL_TIMEOUT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--mode", choices=("in-process", "per-mail"), default="in-process")
    args = parser.parse_args(argv)
    folder = read_folder(args.folder)
    raws = [p.read_bytes() for p in folder.paths]

    with tempfile.TemporaryDirectory(prefix="roundup-peers-") as tmp:
        home = Path(tmp) / "tracker"
        sent = install_tracker(home)
        feed = feed_in_process if args.mode == "in-process" else feed_per_mail
        timer = Timer()
        feed(home, raws, timer)
        db = roundup.instance.open(str(home)).open("admin")
        try:
            per_issue = [len(db.issue.get(issue, "messages")) for issue in db.issue.list()]
        finally:
            db.close()
        # The debug file holds every outgoing mail, each under a "FROM:" line of its own.
        outgoing = len(re.findall(r"^FROM: ", sent.read_text(errors="replace"), re.M)) if sent.exists() else 0
    return report(peer="roundup", mode=args.mode, folder=folder, per_ticket=per_issue, timer=timer,
                  mail_sent=outgoing)


if __name__ == "__main__":
    sys.exit(main())
