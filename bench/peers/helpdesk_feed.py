# SPDX-License-Identifier: GPL-3.0-or-later
"""django-helpdesk's side of the peer benchmark: a folder of mails through its e-mail import.

Run with the peers' environment (peer_bench.py does; setup_peers.sh makes it)::

    PEERS_VENV/bin/python bench/peers/helpdesk_feed.py MAIL_FOLDER [--mode in-process|get-email]
                                                       [--queue-slug SUP]

It makes a fresh project database (helpdesk_settings.py, SQLite in a temporary folder), migrates
it, and creates one queue taking e-mail, then feeds it every mail in one of two ways:

- in-process: one process hands each message to ``helpdesk.email.extract_email_metadata`` (parse,
  match the "[SLUG-id]" subject tag, create the ticket or follow-up, store the HTML part and any
  attachments, mail the submitter), which is what ``get_email`` calls for each message;
- get-email: the queue reads a local mail folder and ``django-admin get_email``, the command a
  cron job runs, takes the messages in a process of its own, Django's start included. It is run
  twice, first with the new mails and then with the follow-ups, because the command takes a folder
  in directory order, and a follow-up read before its ticket exists would open a ticket instead.

Outgoing mail goes to files (Django's file backend), never to a server. Only the feeding is timed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from feedcommon import Timer, read_folder, report

_HERE = Path(__file__).resolve().parent
# How long one get_email run may take; a slower one means something is broken.
GET_EMAIL_TIMEOUT = 600.0


def _django_env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "HELPDESK_BENCH_DIR": str(workdir), "DJANGO_SETTINGS_MODULE": "helpdesk_settings",
            "PYTHONPATH": os.pathsep.join(filter(None, (str(_HERE), os.environ.get("PYTHONPATH"))))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--mode", choices=("in-process", "get-email"), default="in-process")
    parser.add_argument("--queue-slug", default="SUP", help="the slug in the follow-ups' subject tags")
    args = parser.parse_args(argv)

    folder = read_folder(args.folder)
    with tempfile.TemporaryDirectory(prefix="helpdesk-peers-") as tmp:
        workdir = Path(tmp)
        os.environ.update(_django_env(workdir))
        # Django is imported only now: its settings module reads the folder from the environment.
        import django
        from django.core.management import call_command
        from django.db import connections

        django.setup()
        call_command("migrate", verbosity=0)
        from django.db.models import Count
        from helpdesk.models import Queue, Ticket

        queue = Queue.objects.create(title="Support", slug=args.queue_slug, email_address="support@example.com",
                                     allow_email_submission=True)
        timer = Timer()
        if args.mode == "in-process":
            feed_in_process(queue, folder.paths, timer)
        else:
            inbox = workdir / "inbox"
            inbox.mkdir()
            queue.email_box_type = "local"
            queue.email_box_local_dir = str(inbox)
            # Checked on every run: the interval would otherwise skip the second run.
            queue.email_box_interval = 0
            queue.save()
            connections.close_all()
            feed_get_email(workdir, inbox, folder.paths, folder.tickets, timer)
        per_ticket = list(Ticket.objects.annotate(n=Count("followup")).values_list("n", flat=True))
        sent = _count_sent(workdir / "sent")
    return report(peer="django-helpdesk", mode=args.mode, folder=folder, per_ticket=per_ticket, timer=timer,
                  mail_sent=sent)


def feed_in_process(queue, paths: list[Path], timer: Timer) -> None:  # noqa: ANN001 - helpdesk.models.Queue
    from django.utils import encoding
    from helpdesk.email import extract_email_metadata

    # The logger get_email gives a queue whose logging type is "none": no handlers, no propagation.
    logger = logging.getLogger("django.helpdesk.queue." + queue.slug)
    logger.handlers = []
    logger.propagate = False
    with timer:
        for path in paths:
            # Read as get_email reads a local mailbox file: text, undecodable bytes replaced.
            with open(path, encoding="utf-8", errors="replace") as f:
                message = encoding.force_str(f.read(), errors="replace")
            extract_email_metadata(message=message, queue=queue, logger=logger)


def feed_get_email(workdir: Path, inbox: Path, paths: list[Path], tickets: int, timer: Timer) -> None:
    command = [sys.executable, "-m", "django", "get_email", "--quiet"]
    for batch in (paths[:tickets], paths[tickets:]):
        # Putting the mails into the folder is the MTA's work, not timed.
        for path in batch:
            shutil.copy(path, inbox / path.name)
        with timer:
            subprocess.run(command, check=True, env=_django_env(workdir), stdout=subprocess.DEVNULL,
                           timeout=GET_EMAIL_TIMEOUT)
        left = sorted(p.name for p in inbox.iterdir())
        if left:
            raise SystemExit(f"get_email left {len(left)} messages unprocessed, e.g. {left[0]}")


def _count_sent(folder: Path) -> int:
    # Django's file backend ends every message with a line of 79 dashes.
    rule = "-" * 79
    if not folder.is_dir():
        return 0
    return sum(line.rstrip("\r\n") == rule for f in folder.iterdir()
               for line in f.read_text(errors="replace").splitlines())


if __name__ == "__main__":
    sys.exit(main())
