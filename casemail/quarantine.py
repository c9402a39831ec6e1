# SPDX-License-Identifier: GPL-3.0-or-later
"""`casemail quarantine` and `casemail requeue`: the mail that could not be processed, and running it again.

A message whose processing fails on every attempt (intake.max_attempts) is quarantined: its raw bytes
stay in the blob store and its inbound row keeps the reason. Once the cause is fixed (a bug, a
setting), `requeue` gives it back to processing with its attempts counted afresh; the running daemon
takes it within seconds (its intake sweep), and a copy of it that was processed meanwhile makes it a
duplicate, so a re-run never opens a second case.
"""

from __future__ import annotations

import argparse
import os
import sys

from casemail import views
from casemail.app import opened_store
from casemail.settings import Settings
from store import inbound
from store.db import read_only, unit_of_work


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    q = sub.add_parser("quarantine", help="list the mail that could not be processed, with the reasons")
    q.add_argument("--json", action="store_true")
    r = sub.add_parser("requeue", help="process quarantined mail again (the running daemon takes it)")
    r.add_argument("ids", nargs="*", type=int, metavar="ID", help="inbound ids, as `casemail quarantine` lists them")
    r.add_argument("--all", action="store_true", help="every quarantined message")


def cmd_quarantine(settings: Settings, args: argparse.Namespace) -> int:
    with opened_store(settings) as store, read_only(store.engine) as s:
        rows = [{"id": r.id, "received_at": r.received_at.isoformat(), "transport": r.transport,
                 "mail_from": r.mail_from, "message_id": r.message_id, "size": r.size, "reason": r.reason}
                for r in inbound.quarantined(s)]
    if args.json:
        views.print_json(rows)
    elif not rows:
        print("no quarantined mail")
    else:
        for r in rows:
            reason = r["reason"].splitlines()[0] if r["reason"] else ""
            print(f"{r['id']:>8}  {r['received_at'][:19]}  {r['mail_from'] or '<>'}  {reason}")
    return 0


def cmd_requeue(settings: Settings, args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        print("casemail: name the inbound ids to requeue, or --all", file=sys.stderr)
        return os.EX_USAGE
    with opened_store(settings) as store, unit_of_work(store.engine) as s:
        ids = args.ids or [r.id for r in inbound.quarantined(s)]
        done = inbound.requeue(s, ids)
    for missing in sorted(set(ids) - set(done)):
        print(f"casemail: inbound {missing} is not quarantined; left alone", file=sys.stderr)
    if not done:
        print("nothing requeued")
        return os.EX_NOINPUT if args.ids else 0
    print(f"requeued {len(done)}: {' '.join(map(str, done))}; the running daemon processes them within seconds")
    return 0


COMMANDS = {"quarantine": cmd_quarantine, "requeue": cmd_requeue}
