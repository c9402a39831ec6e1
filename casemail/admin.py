# SPDX-License-Identifier: GPL-3.0-or-later
"""Operator commands about addresses: which ones bounce, and clearing them."""

from __future__ import annotations

import argparse
import json
import sys

from casemail.app import open_store
from casemail.settings import Settings
from store import contacts
from store.db import read_only, unit_of_work

EX_NOINPUT = 66


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    b = sub.add_parser("bounces", help="list addresses casemail stops mailing because they hard-bounced")
    b.add_argument("--json", action="store_true")
    c = sub.add_parser("clear-bounce", help="mail an address again after it was marked as bouncing")
    c.add_argument("address")


def cmd_bounces(settings: Settings, args: argparse.Namespace) -> int:
    store = open_store(settings)
    try:
        with read_only(store.engine) as s:
            rows = [{"address": c.address, "reason": c.bounce_reason} for c in contacts.bouncing_contacts(s)]
    finally:
        store.engine.dispose()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not rows:
        print("no bouncing addresses")
    else:
        for r in rows:
            print(f"{r['address']}: {r['reason']}")
    return 0


def cmd_clear_bounce(settings: Settings, args: argparse.Namespace) -> int:
    store = open_store(settings)
    try:
        with unit_of_work(store.engine) as s:
            cleared = contacts.clear_bouncing(s, args.address)
    finally:
        store.engine.dispose()
    if not cleared:
        print(f"casemail: {args.address} is not marked as bouncing", file=sys.stderr)
        return EX_NOINPUT
    print(f"{args.address} will be mailed again")
    return 0


COMMANDS = {"bounces": cmd_bounces, "clear-bounce": cmd_clear_bounce}
