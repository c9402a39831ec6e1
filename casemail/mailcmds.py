# SPDX-License-Identifier: GPL-3.0-or-later
"""The commands that bring mail in without the daemon's listeners: deliver (for an MTA's pipe) and import.

`casemail deliver --sender S --recipient R` reads one message on stdin and exits with a sysexits
code, which is what Postfix pipe(8) understands: 0 only after the message is committed, 75
(EX_TEMPFAIL: the MTA keeps the mail and retries) when the store cannot take it now, and a permanent
code with a one-line reason when it is refused: 67 for a recipient that is not ours, 65 for input
that is not a mail, 69 for a message over the size limit. It only stores the message; the running
daemon processes it (its intake sweep finds accepted rows within seconds), because the daemon is
needed anyway to send the acknowledgement.

`casemail import PATH...` loads .eml files, maildirs and mbox files, and processes each message at
once, so it can report what became of them. A message whose exact bytes are already in the inbound
log is counted as a duplicate without being stored again, so a second run over the same files
changes nothing. Imported mail is old mail: unless --notify is given, its processing queues no mail
(no acknowledgements, no staff notifications, no answers), so a backfill does not write to every
customer of the past year.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import mailbox
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from casemail.app import make_identity, make_intake_config, open_store, utcnow
from casemail.settings import Settings
from intake.accept import Acceptor, Envelope
from intake.process import process_inbound
from intake.transports.envelope import envelope_from_headers, refusal
from intake.transports.smtp import Mailboxes
from store.db import read_only
from store.models import Inbound


# How process_inbound's outcomes are counted in the import summary.
SUMMARY = {"new-case": "created", "comment": "threaded", "system-event": "threaded", "duplicate": "duplicates",
           "rejected": "refused", "ignored": "ignored", "bounce": "ignored", "request": "ignored",
           "quarantined": "failed"}


def add_parsers(sub: Any) -> None:
    d = sub.add_parser("deliver", help="store one message from stdin (for an MTA's pipe transport)")
    d.add_argument("--sender", required=True, help="the envelope sender (empty for the null sender)")
    d.add_argument("--recipient", required=True, help="the envelope recipient")
    i = sub.add_parser("import", help="load .eml files, maildirs and mbox files, and process them")
    i.add_argument("paths", nargs="+", metavar="PATH")
    i.add_argument("--recipient", help="envelope recipient for messages naming none (default: the first "
                                       "support address)")
    i.add_argument("--notify", action="store_true",
                   help="queue the mail that new mail would cause (acknowledgements, staff notifications, "
                        "answers); by default imported mail is filed without mailing anyone")


def _acceptor(store: Any) -> Acceptor:
    # Only accept_sync is used here; the async runners are never called, but asyncio.to_thread is the
    # honest value for them.
    return Acceptor(store.engine, store.blobs, run_db=asyncio.to_thread, clock=utcnow,
                    on_accepted=lambda: None)


def cmd_deliver(settings: Settings, args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read()
    if not Mailboxes(settings.support.addresses).accepts(args.recipient):
        print(f"casemail: <{args.recipient}> is not a mailbox of ours", file=sys.stderr)
        return os.EX_NOUSER
    refused = refusal(raw, max_size=settings.smtp.max_message_size)
    if refused is not None:
        print(f"casemail: refused: {refused.reason}", file=sys.stderr)
        return refused.exit_code
    store = None
    try:
        # No schema upgrade here: one process per message must stay cheap, and a store that is not
        # ready is a temporary failure the MTA retries.
        store = open_store(settings, upgrade=False)
        inbound_id = _acceptor(store).accept_sync(raw, Envelope("pipe", args.sender, (args.recipient,)))
    except Exception as exc:  # noqa: BLE001 - anything that stops the commit means "try again later".
        reason = " ".join(str(exc).split())[:200]
        print(f"casemail: cannot store the message now ({type(exc).__name__}: {reason})", file=sys.stderr)
        return os.EX_TEMPFAIL
    finally:
        if store is not None:
            store.engine.dispose()
    print(f"casemail: stored as inbound {inbound_id}")
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"casemail: no such file or directory: {missing[0]}", file=sys.stderr)
        return os.EX_NOINPUT
    store = open_store(settings)
    cfg = dataclasses.replace(make_intake_config(settings, make_identity(settings)), notify=args.notify)
    acceptor = _acceptor(store)
    recipient = args.recipient or settings.support.addresses[0]
    counts: Counter[str] = Counter()
    progress = _Progress()
    try:
        for where, raw in iter_messages(paths):
            counts[_import_one(settings, store, acceptor, cfg, raw, recipient, where)] += 1
            progress.show(sum(counts.values()), where)
    finally:
        progress.done()
        store.engine.dispose()
    print(f"imported {sum(counts.values())} messages: " + ", ".join(
        f"{counts[k]} {k}" for k in ("created", "threaded", "duplicates", "refused", "ignored", "failed")))
    return 0


def _import_one(settings: Settings, store: Any, acceptor: Acceptor, cfg: Any, raw: bytes, recipient: str,
                where: str) -> str:
    refused = refusal(raw, max_size=settings.smtp.max_message_size)
    if refused is not None:
        print(f"casemail: {where}: refused: {refused.reason}", file=sys.stderr)
        return "refused"
    sha = hashlib.sha256(raw).hexdigest()
    with read_only(store.engine) as s:
        if s.scalar(select(Inbound.id).where(Inbound.sha256 == sha).limit(1)) is not None:
            return "duplicates"
    inbound_id = acceptor.accept_sync(raw, envelope_from_headers(raw, "import", default_recipients=(recipient,)))
    try:
        outcome = process_inbound(store.engine, store.blobs, inbound_id, cfg, utcnow)
    except Exception as exc:  # noqa: BLE001 - recorded on the inbound row; the import goes on.
        print(f"casemail: {where}: processing failed ({type(exc).__name__}); inbound {inbound_id} kept",
              file=sys.stderr)
        return "failed"
    if outcome is None:
        # A running daemon processed it first; count what it decided.
        with read_only(store.engine) as s:
            row = s.get(Inbound, inbound_id)
            outcome = row.outcome if row is not None else None
    return SUMMARY.get(outcome or "", "failed")


def iter_messages(paths: list[Path]) -> Iterator[tuple[str, bytes]]:
    """(where, raw bytes) for every message under the paths: maildirs, mbox files, .eml files."""
    for path in paths:
        if path.is_dir() and all((path / d).is_dir() for d in ("cur", "new")):
            md = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(md.keys()):
                yield f"{path}:{key}", md.get_bytes(key)
        elif path.is_dir():
            children = sorted(p for p in path.iterdir() if p.suffix == ".eml" or p.is_dir())
            yield from iter_messages(children)
        elif _is_mbox(path):
            box = mailbox.mbox(path, create=False)
            try:
                for n, key in enumerate(box.iterkeys(), start=1):
                    yield f"{path}#{n}", box.get_bytes(key)
            finally:
                box.close()
        else:
            yield str(path), path.read_bytes()


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(5) == b"From "


class _Progress:
    """One progress line on stderr: rewritten in place on a terminal, every 100 messages otherwise."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._shown = False

    def show(self, count: int, where: str) -> None:
        if self._tty:
            sys.stderr.write(f"\rimporting: {count} messages ({where[-60:]})\x1b[K")
            self._shown = True
        elif count % 100 == 0:
            sys.stderr.write(f"importing: {count} messages\n")

    def done(self) -> None:
        if self._shown:
            sys.stderr.write("\n")


COMMANDS = {"deliver": cmd_deliver, "import": cmd_import}
