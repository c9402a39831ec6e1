# SPDX-License-Identifier: GPL-3.0-or-later
"""Resident memory of the daemon: a burst of large mails, or many small ones over a long run.

Starts `casemail serve` on a temporary store and measures the whole daemon: its own process and every
process it started (the intake processes, multiprocessing's helper), read from /proc.

- burst (the default): sends --connections mails of about --megabytes MB (a random binary
  attachment, base64-encoded as mail clients send it) concurrently over SMTP, waits until every one is
  processed into a case, and reports the peak resident set beside the target of the performance issue
  (300 MB for a 25 MB mail at 4 connections): the daemon process's own peak (VmHWM) and that of the
  whole process tree, sampled every 20 ms two ways: the sum of their VmRSS, which counts every page
  the processes share (the libraries and other file-backed pages; the intake processes are
  started with spawn, so they share little else) once per process, and the sum of their Pss (/proc/<pid>/smaps_rollup), which
  counts a shared page once in all, split between its sharers: the memory the daemon takes.
- growth (--growth-count N): sends N small support mails (bench/mailgen.py) and, every --sample-every
  mails, waits until processing has caught up and samples the resident set, to show whether memory
  grows over a long run. Bounded by --seconds: when time is up it stops sending, samples once more and
  reports how many mails it got through.

    .venv/bin/python bench/memory_bench.py [--megabytes 24] [--connections 4] [--json]
    .venv/bin/python bench/memory_bench.py --growth-count 20000 --sample-every 1000 --seconds 600
    .venv/bin/python bench/memory_bench.py --intake-processes 0     # processing in the daemon's process

Linux only (it reads /proc). Bounded: the burst waits at most 120 s at each step.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

# The script is run as a file, so its own folder is where mailgen is found.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mailgen  # noqa: E402

TARGET_MB = 300.0
LIMIT_SECONDS = 120.0
SAMPLE_SECONDS = 0.02
# Mails sent on one connection in the growth run: three commands each, well inside the listener's
# smtp.max_commands (1000), after which it would hang up.
PER_CONNECTION = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise LookupError(field_name)


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants that are alive now (read from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    stack.extend(int(child) for child in (task / "children").read_text().split())
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def pss_kb(pid: int) -> int:
    """A process's proportional set size: its own pages, and its share of the pages it shares."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise LookupError("Pss")


def tree_pss_kb(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, LookupError):
            total += pss_kb(member)
    return total


def tree_rss_kb(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, LookupError):
            total += status_kb(member, "VmRSS")
    return total


class TreeSampler:
    """Samples the summed VmRSS and Pss of a process tree in a thread and keeps the highest of each.

    A process's own VmHWM is exact, but the peaks of separate processes need not fall at the same
    moment, so the tree's peak can only be sampled; 20 ms is well below the time a large mail takes.
    The VmHWM of every process seen is kept too, read at each sample so that a process that exits
    early (a restarted intake process) still counts.
    """

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak_kb = 0
        self.peak_pss_kb = 0
        self.hwm_kb: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        total = pss = 0
        for member in process_tree(self._pid):
            with contextlib.suppress(OSError, LookupError):
                total += status_kb(member, "VmRSS")
                self.hwm_kb[member] = (process_name(member), status_kb(member, "VmHWM"))
                pss += pss_kb(member)
        self.peak_kb = max(self.peak_kb, total)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    port: int
    work: Path

    @property
    def db(self) -> Path:
        return self.work / "var" / "casemail.db"

    def processed(self) -> int:
        """How many inbound rows have an outcome (every outcome, duplicates and rejections too)."""
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as c:
                return int(c.execute("select count(*) from inbound where state = 'processed'").fetchone()[0])
        except sqlite3.Error:
            return 0  # Not created yet, or busy for longer than the timeout: asked again shortly.


def daemon_config(port: int, max_message_size: int, intake_processes: int | None) -> str:
    # The size limit is raised to take the test mails; the memory the listener may reserve is raised
    # with it (four messages of the largest size, as the shipped defaults allow), or the fourth mail
    # of the burst would be asked to come back later instead of being measured.
    config = (f'[smtp]\nport = {port}\nmax_message_size = {max_message_size}\n'
              f'max_data_memory = {max(4 * max_message_size, 104_857_600)}\n'
              f'[support]\naddresses = ["{mailgen.SUPPORT_ADDRESS}"]\n'
              '[logging]\nlevel = "WARNING"\n')
    if intake_processes is not None:
        config += f"[intake]\nprocesses = {intake_processes}\n"
    return config


@contextlib.contextmanager
def running_daemon(max_message_size: int, intake_processes: int | None) -> Iterator[Daemon]:
    work = Path(tempfile.mkdtemp(prefix="casemail-mem-"))
    port = free_port()
    (work / "casemail.toml").write_text(daemon_config(port, max_message_size, intake_processes))
    finished = False
    with (work / "daemon.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "casemail", "-c", str(work / "casemail.toml"), "serve"],
                                stdout=log, stderr=log)
    try:
        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"the daemon exited; see {work / 'daemon.log'}") from None
                return False
        wait_until(listening, "the daemon did not start")
        yield Daemon(proc, port, work)
        finished = True
    finally:
        proc.terminate()
        proc.wait(30)
    # A burst leaves a hundred MB of blobs behind, a growth run thousands of files: kept only when the
    # run failed, for its log.
    if finished:
        shutil.rmtree(work, ignore_errors=True)


def wait_until(check: Callable[[], bool], what: str, seconds: float = LIMIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def settle(daemon: Daemon, seconds: float = 3.0) -> None:
    """Wait until the tree's resident set stops moving (the intake processes start after the listener)."""
    deadline = time.monotonic() + LIMIT_SECONDS
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = tree_rss_kb(daemon.proc.pid)
        if abs(now - last) > 1024:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= seconds:
            return
        time.sleep(0.2)


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


# Burst ---------------------------------------------------------------------------------------------


def big_mail(index: int, megabytes: float) -> bytes:
    m = EmailMessage()
    m["From"] = f"big{index}@customer.example"
    m["To"] = mailgen.SUPPORT_ADDRESS
    m["Subject"] = f"Core dump {index}"
    m["Message-ID"] = f"<big{index}.{time.time_ns()}@customer.example>"
    m.set_content("The core dump is attached.\n")
    # base64 grows the attachment by a third; size the payload so the whole mail is about `megabytes`.
    payload = os.urandom(int(megabytes * 1_000_000 * 0.74))
    m.add_attachment(payload, maintype="application", subtype="octet-stream", filename="core.bin")
    return m.as_bytes(policy=SMTP)


def send_at_once(port: int, mails: list[bytes]) -> list[str]:
    errors: list[str] = []

    def send(raw: bytes) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=LIMIT_SECONDS) as s:
                s.sendmail("bench@customer.example", [mailgen.SUPPORT_ADDRESS], raw)
        except Exception as exc:  # noqa: BLE001 - reported below, the run goes on.
            errors.append(repr(exc))

    threads = [threading.Thread(target=send, args=(raw,)) for raw in mails]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LIMIT_SECONDS)
    return errors


def run_burst(args: argparse.Namespace) -> dict[str, Any]:
    mails = [big_mail(i, args.megabytes) for i in range(args.connections)]
    with running_daemon(int(args.megabytes * 1_100_000) + 1_000_000, args.intake_processes) as daemon:
        settle(daemon)
        idle_kb = status_kb(daemon.proc.pid, "VmRSS")
        idle_tree_kb = tree_rss_kb(daemon.proc.pid)
        idle_pss_kb = tree_pss_kb(daemon.proc.pid)
        with TreeSampler(daemon.proc.pid) as sampler:
            started = time.monotonic()
            errors = send_at_once(daemon.port, mails)
            accepted = time.monotonic() - started
            if not errors:
                wait_until(lambda: daemon.processed() >= len(mails), "the mails were not processed in time")
        others = {pid: hwm for pid, hwm in sampler.hwm_kb.items() if pid != daemon.proc.pid}
        return {
            "mode": "burst",
            "megabytes_per_mail": round(len(mails[0]) / 1e6, 1),
            "connections": args.connections,
            "intake_processes": args.intake_processes if args.intake_processes is not None else "default",
            "errors": errors,
            "accept_seconds": round(accepted, 2),
            "idle_rss_mb": mb(idle_kb),
            "peak_rss_mb": mb(status_kb(daemon.proc.pid, "VmHWM")),
            "idle_tree_rss_mb": mb(idle_tree_kb),
            "peak_tree_rss_mb": mb(sampler.peak_kb),
            "idle_tree_pss_mb": mb(idle_pss_kb),
            "peak_tree_pss_mb": mb(sampler.peak_pss_kb),
            "other_processes_peak_mb": {f"{name} {pid}": mb(kb) for pid, (name, kb) in sorted(others.items())},
            "target_mb": TARGET_MB,
        }


def listing(megabytes: dict[str, float]) -> str:
    return ", ".join(f"{name} {size} MB" for name, size in megabytes.items())


def print_burst(result: dict[str, Any]) -> None:
    others = result["other_processes_peak_mb"]
    print(f"{result['connections']} mails of {result['megabytes_per_mail']} MB at once "
          f"(intake processes: {result['intake_processes']}): accepted in {result['accept_seconds']} s")
    print(f"  daemon process: RSS idle {result['idle_rss_mb']} MB, peak {result['peak_rss_mb']} MB")
    if others:
        print(f"  its other processes, peak each: {listing(others)}")
    print(f"  whole daemon (all its processes), summed RSS: idle {result['idle_tree_rss_mb']} MB, "
          f"peak {result['peak_tree_rss_mb']} MB (sampled)")
    print(f"  whole daemon (all its processes), summed PSS: idle {result['idle_tree_pss_mb']} MB, "
          f"peak {result['peak_tree_pss_mb']} MB (sampled; target < {TARGET_MB:g} MB)")
    if result["errors"]:
        print(f"  errors: {result['errors']}")


# Growth --------------------------------------------------------------------------------------------


@dataclass
class GrowthSample:
    sent: int
    processed: int
    seconds: float
    rss_mb: float          # the daemon process
    tree_rss_mb: float     # all its processes


@dataclass
class GrowthRun:
    samples: list[GrowthSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: int = 0
    accepted: int = 0      # answered 250; only these are waited for


def take_sample(daemon: Daemon, sent: int, started: float) -> GrowthSample:
    return GrowthSample(sent, daemon.processed(), round(time.monotonic() - started, 1),
                        mb(status_kb(daemon.proc.pid, "VmRSS")), mb(tree_rss_kb(daemon.proc.pid)))


def send_batch(port: int, mails: Iterator[mailgen.Mail], count: int, deadline: float, run: GrowthRun) -> None:
    """Send up to count mails, on a new connection every PER_CONNECTION, stopping at the deadline."""
    while count > 0 and time.monotonic() < deadline:
        with smtplib.SMTP("127.0.0.1", port, timeout=LIMIT_SECONDS) as s:
            for mail in itertools.islice(mails, min(count, PER_CONNECTION)):
                count -= 1
                run.sent += 1
                try:
                    s.sendmail(mail.mail_from, [mail.rcpt_to], mail.data)
                except smtplib.SMTPServerDisconnected as exc:
                    run.errors.append(repr(exc))
                    break
                except smtplib.SMTPException as exc:
                    run.errors.append(repr(exc))
                    continue
                run.accepted += 1
                if time.monotonic() > deadline:
                    return


def run_growth(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    run = GrowthRun()
    mails = mailgen.iter_mails(args.growth_kind, args.growth_count, seed=args.seed)
    with running_daemon(26_214_400, args.intake_processes) as daemon:
        settle(daemon)
        started = time.monotonic()
        deadline = started + args.seconds
        run.samples.append(take_sample(daemon, 0, started))
        progress(growth_line(run.samples[-1]))
        while run.sent < args.growth_count and time.monotonic() < deadline:
            send_batch(daemon.port, mails, min(args.sample_every, args.growth_count - run.sent), deadline, run)
            caught_up = caught_up_by(daemon, run.accepted, deadline)
            run.samples.append(take_sample(daemon, run.sent, started))
            progress(growth_line(run.samples[-1], "" if caught_up else " (time is up; processing had not caught up)"))
        hwm = {f"{process_name(pid)} {pid}": mb(status_kb(pid, "VmHWM")) for pid in process_tree(daemon.proc.pid)}
    first, last = run.samples[0], run.samples[-1]
    return {
        "mode": "growth",
        "kind": args.growth_kind,
        "intake_processes": args.intake_processes if args.intake_processes is not None else "default",
        "asked": args.growth_count,
        "sent": run.sent,
        "accepted": run.accepted,
        "processed": last.processed,
        "seconds": last.seconds,
        "errors": run.errors[:10],
        "start_rss_mb": first.rss_mb,
        "end_rss_mb": last.rss_mb,
        "start_tree_rss_mb": first.tree_rss_mb,
        "end_tree_rss_mb": last.tree_rss_mb,
        "peak_each_process_mb": hwm,
        "samples": [vars(s) for s in run.samples],
    }


def caught_up_by(daemon: Daemon, count: int, deadline: float) -> bool:
    """Wait until count mails are processed; False if the deadline came first."""
    while daemon.processed() < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def growth_line(s: GrowthSample, note: str = "") -> str:
    return (f"  {s.seconds:7.1f} s  sent {s.sent:6d}  processed {s.processed:6d}  daemon RSS {s.rss_mb:6.1f} MB  "
            f"all processes {s.tree_rss_mb:6.1f} MB{note}")


def print_growth(result: dict[str, Any]) -> None:
    print(f"{result['sent']} of {result['asked']} {result['kind']} mails sent, {result['accepted']} accepted, "
          f"{result['processed']} processed "
          f"in {result['seconds']} s (intake processes: {result['intake_processes']})")
    print(f"  daemon process RSS: start {result['start_rss_mb']} MB, end {result['end_rss_mb']} MB")
    print(f"  all processes RSS: start {result['start_tree_rss_mb']} MB, end {result['end_tree_rss_mb']} MB")
    print(f"  peak (VmHWM) of each: {listing(result['peak_each_process_mb'])}")
    if result["errors"]:
        print(f"  errors (first ten): {result['errors']}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--megabytes", type=float, default=24.0, help="burst: size of each mail (default 24)")
    ap.add_argument("--connections", type=int, default=4, help="burst: mails sent at once (default 4)")
    ap.add_argument("--growth-count", type=int, default=0, metavar="N",
                    help="growth: send N small mails instead of the burst (the target speaks of 100000)")
    ap.add_argument("--sample-every", type=int, default=1000, metavar="N",
                    help="growth: sample the resident set every N mails, once they are processed (default 1000)")
    ap.add_argument("--seconds", type=float, default=600.0,
                    help="growth: stop sending after this long and report what got through (default 600)")
    ap.add_argument("--growth-kind", choices=("small", "mix"), default="small",
                    help="growth: bench/mailgen.py population (default small, about 10 KB each)")
    ap.add_argument("--seed", type=int, default=1, help="growth: mailgen seed (default 1)")
    ap.add_argument("--intake-processes", type=int, default=None, metavar="N",
                    help="set intake.processes (0: processing in the daemon's own process); default: the daemon's")
    ap.add_argument("--json", action="store_true")
    return ap


def main() -> int:
    args = build_parser().parse_args()
    if args.growth_count > 0:
        # Samples are shown as they are taken (a long run should not look hung); on stderr with --json.
        def progress(line: str) -> None:
            print(line, file=sys.stderr if args.json else sys.stdout, flush=True)
        progress(f"growth: up to {args.growth_count} {args.growth_kind} mails, a sample every "
                 f"{args.sample_every}, at most {args.seconds:g} s")
        result = run_growth(args, progress)
        printer = print_growth
    else:
        result = run_burst(args)
        printer = print_burst
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        printer(result)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
