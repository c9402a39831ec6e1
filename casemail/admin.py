# SPDX-License-Identifier: GPL-3.0-or-later
"""Operator commands about addresses: which ones bounce, clearing them, and a person's profile."""

from __future__ import annotations

import argparse
import json
import os
import sys

from casemail import views
from casemail.app import opened_store
from casemail.settings import Settings
from store import contacts
from store.audience import NOTIFY_CHOICES
from store.db import read_only, unit_of_work


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    b = sub.add_parser("bounces", help="list addresses casemail stops mailing because they hard-bounced")
    b.add_argument("--json", action="store_true")
    c = sub.add_parser("clear-bounce", help="mail an address again after it was marked as bouncing")
    c.add_argument("address")
    p = sub.add_parser("profile", help="show or change a person's display name and notification preference")
    p.add_argument("address")
    p.add_argument("--name", help="the display name used in mail to and about them")
    p.add_argument("--notify", choices=NOTIFY_CHOICES,
                   help="every update, a daily digest, or only replies addressed to them")
    p.add_argument("--json", action="store_true")


def cmd_bounces(settings: Settings, args: argparse.Namespace) -> int:
    with opened_store(settings) as store, read_only(store.engine) as s:
        rows = [{"address": c.address, "reason": c.bounce_reason} for c in contacts.bouncing_contacts(s)]
    if args.json:
        views.print_json(rows)
    elif not rows:
        print("no bouncing addresses")
    else:
        for r in rows:
            print(f"{r['address']}: {r['reason']}")
    return 0


def cmd_clear_bounce(settings: Settings, args: argparse.Namespace) -> int:
    with opened_store(settings) as store, unit_of_work(store.engine) as s:
        cleared = contacts.clear_bouncing(s, args.address)
    if not cleared:
        print(f"casemail: {args.address} is not marked as bouncing", file=sys.stderr)
        return os.EX_NOINPUT
    print(f"{args.address} will be mailed again")
    return 0


def cmd_profile(settings: Settings, args: argparse.Namespace) -> int:
    # Only a known person can be changed: creating a contact from a typo would mail nobody and hide
    # the mistake. Anyone who has written to us, or was copied on a case, is known.
    if args.name is not None and (not args.name.strip() or len(args.name) > 200):
        print("casemail: --name must be 1 to 200 characters", file=sys.stderr)
        return os.EX_USAGE
    with opened_store(settings) as store, unit_of_work(store.engine) as s:
        contact = contacts.get_contact(s, args.address)
        if contact is None:
            print(f"casemail: no one with the address {args.address} is known", file=sys.stderr)
            return os.EX_NOINPUT
        if args.name is not None:
            contact.display_name = " ".join(args.name.split())
        if args.notify is not None:
            contact.notify = args.notify
        row = {"address": contact.address, "name": contact.display_name, "notify": contact.notify,
               "role": contact.role, "bouncing": contact.bouncing}
    if args.json:
        json.dump(row, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(f"{row['address']}: name {row['name'] or '(none)'}, notify {row['notify']}, {row['role']}"
              + (", bouncing" if row["bouncing"] else ""))
    return 0


COMMANDS = {"bounces": cmd_bounces, "clear-bounce": cmd_clear_bounce, "profile": cmd_profile}
