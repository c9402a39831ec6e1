# SPDX-License-Identifier: GPL-3.0-or-later
"""What every feeder of the peer benchmark shares: reading the mail folder and reporting the result.

The feeders run in two different virtual environments (casemail's own and the peers'), so this
module uses the standard library only. A mail folder, as bench/peers/mails.py writes it, holds the
messages as numbered .eml files, processed in name order, and a manifest.json telling how many
tickets and ticket entries the mails must make.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class MailFolder:
    """The messages of one folder, in processing order, and what they must become."""

    paths: list[Path]
    tickets: int    # new tickets the first mails open
    entries: int    # ticket entries (messages, follow-ups) all mails make, one each
    tag: str        # the subject tag of ticket 1, as the follow-ups carry it, for the report

    @property
    def mails(self) -> int:
        return len(self.paths)


def read_folder(folder: Path) -> MailFolder:
    manifest = json.loads((folder / MANIFEST).read_text())
    paths = sorted(folder.glob("*.eml"))
    if len(paths) != manifest["mails"]:
        raise SystemExit(f"{folder}: {len(paths)} .eml files, the manifest says {manifest['mails']}")
    return MailFolder(paths=paths, tickets=manifest["tickets"], entries=manifest["mails"], tag=manifest["tag"])


class Timer:
    """Wall-clock and CPU seconds of the blocks it times (added up over several), the CPU of the
    processes they waited for included.

    The wall clock is the figure compared; the CPU seconds are beside it because the machine is
    shared: other work slows the wall clock of one run more than another's, and CPU time far less.
    """

    seconds = 0.0
    cpu_seconds = 0.0

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), self._cpu_now()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds += time.perf_counter() - self._wall
        self.cpu_seconds += self._cpu_now() - self._cpu

    @staticmethod
    def _cpu_now() -> float:
        # os.times() counts finished child processes too (Roundup's per-mail processes, get_email).
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system


def report(*, peer: str, mode: str, folder: MailFolder, per_ticket: list[int], timer: Timer,
           **extra: Any) -> int:
    """Print the one JSON line peer_bench.py reads; exit status 1 unless the tickets are as expected.

    per_ticket holds, for every ticket the system has, how many mails went into it. A rate is only
    worth comparing when the work was done, so the mails must have made the expected number of
    tickets, and each ticket must hold its first mail and its one follow-up (a follow-up threaded
    onto the wrong ticket leaves one with one and another with three). A feeder that finds anything
    else says so in "ok" and in its exit status.
    """
    tickets, entries = len(per_ticket), sum(per_ticket)
    per = folder.entries // folder.tickets if folder.tickets else 0
    ok = tickets == folder.tickets and entries == folder.entries and all(n == per for n in per_ticket)
    result = {
        "peer": peer,
        "mode": mode,
        "mails": folder.mails,
        "tag": folder.tag,
        "tickets": tickets,
        "entries": entries,
        "expected_tickets": folder.tickets,
        "expected_entries": folder.entries,
        "ok": ok,
        "seconds": round(timer.seconds, 4),
        "per_s": round(folder.mails / timer.seconds, 2) if timer.seconds > 0 else None,
        "cpu_seconds": round(timer.cpu_seconds, 4),
        "per_cpu_s": round(folder.mails / timer.cpu_seconds, 2) if timer.cpu_seconds > 0 else None,
        **extra,
    }
    print(json.dumps(result), flush=True)
    if not ok:
        print(f"{peer} ({mode}): expected {folder.tickets} tickets of {per} mails each, found {tickets} "
              f"tickets holding {entries} mails ({sorted(set(per_ticket))} per ticket)", file=sys.stderr)
    return 0 if ok else 1
