# SPDX-License-Identifier: GPL-3.0-or-later
"""The casemail command.

  casemail serve                      run the daemon
  casemail cases [--status S] [--search WORDS] [--requester ADDR] [--json]
  casemail show NUMBER [--json] [--raw ENTRY]
  casemail close NUMBER
  casemail deliver --sender S --recipient R   store one message from stdin (MTA pipe; sysexits codes)
  casemail import PATH...             load .eml files, maildirs and mbox files
  casemail bounces [--json]           addresses no longer mailed because they hard-bounced
  casemail clear-bounce ADDRESS       mail an address again
  casemail profile ADDRESS [--name N] [--notify every|digest|replies] [--json]   a person's profile
  casemail smtp-user NAME [--remove]  add or change (password on stdin) or remove an SMTP AUTH user
  casemail quarantine [--json]        mail that could not be processed, with the reasons
  casemail requeue ID... | --all      process quarantined mail again (the running daemon takes it)
  casemail migrate                    bring the database schema up to date
  casemail check-config               read the config and report problems

The config file is -c/--config PATH, else ./casemail.toml, else $CASEMAIL_CONFIG.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from casemail import admin, mailcmds, quarantine, smtpusers, views
from casemail.app import configure_logging, make_identity, opened_store, release_large_blocks, utcnow
from casemail.settings import ConfigError, Settings, load_settings
from store import cases
from store.blobs import BlobNotFound
from store.codes import format_case_number
from store.db import read_only, unit_of_work
from store.mailing import queue_closed_notices
from store.models import Inbound, Outbox


def find_config(given: str | None) -> Path:
    if given:
        return Path(given)
    local = Path("casemail.toml")
    if local.exists():
        return local
    env = os.environ.get("CASEMAIL_CONFIG")
    if env:
        return Path(env)
    raise ConfigError("no config file: pass -c PATH, create ./casemail.toml, or set CASEMAIL_CONFIG "
                      "(config.example.toml holds every key with its default)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="casemail", description="A support desk run over email.")
    p.add_argument("-c", "--config", help="config file (default ./casemail.toml, then $CASEMAIL_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the daemon")
    sub.add_parser("migrate", help="bring the database schema up to date")
    sub.add_parser("check-config", help="read the config file and report problems")
    c = sub.add_parser("cases", help="list cases")
    c.add_argument("--status", choices=("open", "closed", "all"), default="open")
    c.add_argument("--search", default="", help="words that must all appear in the subject")
    c.add_argument("--requester", help="only cases of this requester address")
    c.add_argument("--json", action="store_true")
    s = sub.add_parser("show", help="show a case and its activity history")
    s.add_argument("number", type=int)
    s.add_argument("--json", action="store_true")
    s.add_argument("--raw", type=int, metavar="ENTRY", help="print one entry's message exactly as received or sent")
    cl = sub.add_parser("close", help="close a case and tell the requester")
    cl.add_argument("number", type=int)
    mailcmds.add_parsers(sub)
    admin.add_commands(sub)
    smtpusers.add_commands(sub)
    quarantine.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(find_config(args.config))
    except ConfigError as exc:
        print(f"casemail: config error: {exc}", file=sys.stderr)
        return os.EX_CONFIG
    configure_logging(settings.logging.level)
    try:
        return COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"casemail: config error: {exc}", file=sys.stderr)
        return os.EX_CONFIG


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from casemail.daemon import serve

    # The event loop answers senders while worker threads parse mail. With CPython's default 5 ms
    # switch interval every hand-over of the GIL from a busy worker to the loop can cost up to 5 ms,
    # and one SMTP transaction needs several; a shorter interval halved the median time to 250 at one
    # connection in bench/smtp_bench.py (docs/performance.md).
    sys.setswitchinterval(0.0005)
    release_large_blocks()
    asyncio.run(serve(settings))
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with opened_store(settings):
        print("schema is up to date")
    return 0


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    make_identity(settings)
    print(f"config ok: support {', '.join(settings.support.addresses)}, database {settings.database_url}")
    return 0


def cmd_cases(settings: Settings, args: argparse.Namespace) -> int:
    with opened_store(settings) as store, start_up_frozen():
        with read_only(store.engine) as s:
            rows = case_rows(s, status=args.status, search=args.search, requester=args.requester)
        if args.json:
            views.print_json(rows)
        else:
            print(views.format_case_table(rows))
    return 0


def case_rows(s: Session, *, status: str = "all", search: str = "", requester: str | None = None,
              limit: int = 1000) -> list[dict[str, Any]]:
    """The cases `casemail cases` lists, as the rows it prints (bench/search_bench.py times this)."""
    found = cases.listing(s, status=status, search=search, requester=requester, limit=limit)
    return [views.case_row(c) for c in found]


@contextlib.contextmanager
def start_up_frozen() -> Iterator[None]:
    """Keep what exists now out of the garbage collector's way until the block ends.

    `casemail cases` lists once and exits, so what start-up made (imports, the config, alembic's
    migration check: some 95,000 objects) stays alive anyway. Frozen, it is not walked by the
    collections that the listing's own objects set off; a full collection over all of it costs tens
    of milliseconds, over 100 on a busy machine, and was the p95 of 1,000-case listings
    (docs/performance.md). Unfrozen at the end, for callers of main() that go on running. The daemon
    never freezes: its objects come and go.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    with opened_store(settings) as store, read_only(store.engine) as s:
        case = cases.get_case(s, args.number)
        if case is None:
            print(f"casemail: no case {format_case_number(args.number)}", file=sys.stderr)
            return os.EX_NOINPUT
        if args.raw is not None:
            return _print_raw(s, store.blobs, case, args.raw)
        data = views.case_detail(case, cases.participants(s, case), cases.history(s, case))
    if args.json:
        views.print_json(data)
    else:
        print(views.format_case_detail(data))
    return 0


def _print_raw(s: Any, blobs: Any, case: Any, entry_id: int) -> int:
    entry = cases.get_entry(s, case, entry_id)
    if entry is None:
        print(f"casemail: case {format_case_number(case.number)} has no entry {entry_id}", file=sys.stderr)
        return os.EX_NOINPUT
    sha, inline = None, None
    if entry.inbound_id is not None:
        received = s.get(Inbound, entry.inbound_id)
        sha, inline = received.sha256, received.raw
    elif entry.outbox_id is not None:
        sent = s.get(Outbox, entry.outbox_id)
        sha, inline = sent.rendered_sha256, sent.rendered
    if sha is None:
        print(f"casemail: entry {entry_id} is an event, not a mail", file=sys.stderr)
        return os.EX_NOINPUT
    try:
        sys.stdout.buffer.write(blobs.get_unless_inline(sha, inline))
    except BlobNotFound:
        print(f"casemail: the stored message {sha} is missing from the blob store", file=sys.stderr)
        return os.EX_NOINPUT
    sys.stdout.buffer.flush()
    return 0


def cmd_close(settings: Settings, args: argparse.Namespace) -> int:
    identity = make_identity(settings)
    now = utcnow()
    with opened_store(settings) as store, unit_of_work(store.engine) as s:
        case = cases.get_case(s, args.number)
        if case is None:
            print(f"casemail: no case {format_case_number(args.number)}", file=sys.stderr)
            return os.EX_NOINPUT
        if not cases.close_case(s, case, now=now):
            print(f"case {format_case_number(case.number)} is already closed")
            return 0
        cases.add_entry(s, case, kind="status_change", now=now, subject="closed",
                        text="Case closed from the command line.", details={"status": "closed"})
        # Everyone a close by mail would tell: the requester, the people copied, the assignee.
        told = queue_closed_notices(s, case, identity=identity, closed_by=identity.support_name,
                                    what="closed from the command line", now=now)
    n = sum(len(row.recipients) for row in told)
    print(f"closed case {format_case_number(args.number)}; {n} {'person' if n == 1 else 'people'} will be told")
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "check-config": cmd_check_config,
    "cases": cmd_cases,
    "show": cmd_show,
    "close": cmd_close,
    **mailcmds.COMMANDS,
    **admin.COMMANDS,
    **smtpusers.COMMANDS,
    **quarantine.COMMANDS,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
