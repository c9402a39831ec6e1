# SPDX-License-Identifier: GPL-3.0-or-later
"""The peer benchmark: casemail, Roundup and django-helpdesk turning the same mails into tickets.

Run from the repository root with casemail's environment::

    .venv/bin/python bench/peers/peer_bench.py [--mails 60] [--repeat 1] [--timeout 300] [--json]
                                               [--peers-venv DIR] [--no-slow]

In one run on one machine it:

1. makes the peers' virtual environment if it is missing (setup_peers.sh: Roundup and
   django-helpdesk at the versions pinned in requirements.txt, outside the repository, by default
   in ~/.cache/casemail-bench/peers-venv, or --peers-venv / CASEMAIL_PEERS_VENV), from the same
   Python interpreter casemail runs on;
2. writes the same N small mails for each system (mails.py: half new tickets, half follow-ups
   carrying the system's own subject tag);
3. runs each feeder as a process of its own, one after the other, each on a fresh database, and
   reads the time it measured around its processing loop alone (imports and setup excluded):
   casemail in-process (casemail_feed.py, the `casemail import --notify` path), Roundup in-process
   and one process per mail (roundup_feed.py), django-helpdesk in-process and through its
   get_email command (helpdesk_feed.py); --no-slow leaves out the two process-per-run modes;
4. prints the rates, and casemail's rate over each peer's beside the targets: at least 10 times
   Roundup's in-process mail gateway and 4 times django-helpdesk. Beside the wall-clock rates it
   prints the CPU seconds of each loop (its child processes included) and the rates and ratios by
   CPU time, which other work on a shared machine disturbs far less than the wall clock.

Every feeder run is bounded by --timeout seconds (its whole process group is killed then), and each
counts what it made afterwards: a run whose mails did not become the expected tickets and entries is
reported as failed, and its time is not used. With --repeat R every mode runs R times, each on a
fresh database, and the table shows the median time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import mails  # noqa: E402

DEFAULT_VENV = Path("~/.cache/casemail-bench/peers-venv")
SETUP_TIMEOUT = 900.0
PEER_PACKAGES = ("roundup", "django-helpdesk", "Django")

# casemail's rate must be at least this many times the peer's (the target); only these two are set.
TARGET_RATIOS = {("roundup", "in-process"): 10.0, ("django-helpdesk", "in-process"): 4.0}
TARGET_CASES_PER_SECOND = 400.0
# The figures measured elsewhere on a similar 2-core machine, for comparison with this run's.
REFERENCE_PER_S = {
    ("roundup", "per-mail"): 4.0, ("roundup", "in-process"): 12.0,
    ("django-helpdesk", "get-email"): 24.0, ("django-helpdesk", "in-process"): 33.0,
}


@dataclass(frozen=True)
class Feeder:
    """One system in one mode: which mail folder it reads and the command that runs it."""

    system: str          # the key of mails.TAGS, naming the mail folder
    peer: str            # the name in the report
    mode: str
    script: str
    extra: tuple[str, ...] = ()
    slow: bool = False   # a process per mail or per run: left out by --no-slow


FEEDERS = (
    Feeder("casemail", "casemail", "in-process", "casemail_feed.py"),
    Feeder("roundup", "roundup", "in-process", "roundup_feed.py", ("--mode", "in-process")),
    Feeder("roundup", "roundup", "per-mail", "roundup_feed.py", ("--mode", "per-mail"), slow=True),
    Feeder("helpdesk", "django-helpdesk", "in-process", "helpdesk_feed.py",
           ("--mode", "in-process", "--queue-slug", mails.HELPDESK_QUEUE)),
    Feeder("helpdesk", "django-helpdesk", "get-email", "helpdesk_feed.py",
           ("--mode", "get-email", "--queue-slug", mails.HELPDESK_QUEUE), slow=True),
)


def peers_venv(args: argparse.Namespace) -> Path:
    return Path(args.peers_venv or os.environ.get("CASEMAIL_PEERS_VENV") or DEFAULT_VENV).expanduser()


def setup_peers(venv: Path) -> None:
    # The interpreter behind casemail's venv, so that both environments run the same Python.
    base = getattr(sys, "_base_executable", sys.executable)
    env = {**os.environ, "CASEMAIL_PEERS_VENV": str(venv), "PYTHON": base}
    subprocess.run(["sh", str(HERE / "setup_peers.sh")], check=True, env=env, timeout=SETUP_TIMEOUT,
                   stdout=sys.stderr)


def peer_versions(python: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json; "
            f"print(json.dumps({{p: m.version(p) for p in {list(PEER_PACKAGES)!r}}}))")
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def casemail_commit() -> str | None:
    # Only read: the commit the working tree is based on (it may hold uncommitted changes too).
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=30)
    except OSError:
        return None
    return out.stdout.strip() or None


def run_feeder(python: Path, feeder: Feeder, folder: Path, timeout: float, scratch: Path) -> dict[str, Any]:
    """Run one feeder in a session of its own; its JSON line, or a failure with the reason."""
    command = [str(python), str(HERE / feeder.script), str(folder), *feeder.extra]
    # The feeders find their sibling modules beside their script; nothing of casemail's environment
    # may leak into the peers' interpreter. Their temporary folders go into scratch, which this
    # script removes, so a feeder killed at its time limit leaves nothing behind.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["TMPDIR"] = str(scratch)
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Roundup's per-mail mode and get_email start processes of their own: end the whole group.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return _failed(feeder, f"timed out after {timeout:.0f} s")
    wall = time.monotonic() - started
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        tail = " | ".join(err.strip().splitlines()[-3:])
        return _failed(feeder, f"exit {proc.returncode}, no result: {tail}")
    # Named by the feeder that ran, so the summary finds every run under the name it looks for.
    result = {**json.loads(lines[-1]), "peer": feeder.peer, "mode": feeder.mode}
    result["wall_seconds"] = round(wall, 2)
    if proc.returncode != 0 and result.get("ok"):
        result["ok"] = False
    if not result.get("ok"):
        result["error"] = " | ".join(err.strip().splitlines()[-3:]) or "wrong ticket counts"
    return result


def _failed(feeder: Feeder, reason: str) -> dict[str, Any]:
    return {"peer": feeder.peer, "mode": feeder.mode, "ok": False, "error": reason}


def summarise(runs: list[dict[str, Any]], feeders: list[Feeder]) -> list[dict[str, Any]]:
    """One row per system and mode: the median time of its good runs, its rate, and the ratios."""
    rows = []
    for f in feeders:
        mine = [r for r in runs if r["peer"] == f.peer and r["mode"] == f.mode]
        good = [r for r in mine if r.get("ok")]
        row: dict[str, Any] = {"peer": f.peer, "mode": f.mode, "runs": len(mine), "good_runs": len(good),
                               "reference_per_s": REFERENCE_PER_S.get((f.peer, f.mode))}
        if good:
            seconds = statistics.median(r["seconds"] for r in good)
            cpu = statistics.median(r["cpu_seconds"] for r in good)
            last = good[-1]
            row.update(mails=last["mails"], tickets=last["tickets"], entries=last["entries"],
                       mail_out=last.get("mail_queued", last.get("mail_sent")), seconds=round(seconds, 3),
                       per_s=round(last["mails"] / seconds, 1), cpu_seconds=round(cpu, 3),
                       per_cpu_s=round(last["mails"] / cpu, 1) if cpu > 0 else None)
        else:
            row["error"] = mine[-1].get("error") if mine else "not run"
        rows.append(row)
    casemail = next((r for r in rows if r["peer"] == "casemail"), {})
    for row in rows:
        if row["peer"] == "casemail":
            row["target_per_s"] = TARGET_CASES_PER_SECOND
            continue
        for key, rate in (("casemail_ratio", "per_s"), ("casemail_cpu_ratio", "per_cpu_s")):
            ours, theirs = casemail.get(rate), row.get(rate)
            row[key] = round(ours / theirs, 2) if ours and theirs else None
        row["target_ratio"] = TARGET_RATIOS.get((row["peer"], row["mode"]))
    return rows


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}",
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.1f}"
    return str(value)


def _met(value: float | None, target: float) -> str:
    return "" if value is None else (" met" if value >= target else " not met")


def _times(ratio: float | None) -> str:
    return f"{ratio:.2f}×" if ratio else "–"


def print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    print(f"peer benchmark: {report['mails']} small mails ({report['mails'] // 2} new, "
          f"{report['mails'] // 2} follow-ups by subject tag), repeat {report['repeat']}")
    print(f"machine: {m['cpus']} cpus, {m['cpu']}, Python {m['python']}, load {m['load_average']} at start, "
          f"{report['load_average_end']} at end")
    print(f"casemail {report['casemail_commit'] or '(unknown commit)'}; peers: {versions}")
    head = ("system", "mode", "mails", "tickets", "entries", "mail out", "seconds", "mails/s",
            "ref. elsewhere", "casemail ×", "target", "CPU s", "mails/CPU-s", "casemail × (CPU)")
    table = [head]
    for r in report["summary"]:
        if r["peer"] == "casemail":
            target = f">= {TARGET_CASES_PER_SECOND:.0f}/s{_met(r.get('per_s'), TARGET_CASES_PER_SECOND)}"
        elif r.get("target_ratio"):
            target = f">= {r['target_ratio']:.0f}×{_met(r.get('casemail_ratio'), r['target_ratio'])}"
        else:
            target = "–"
        table.append((r["peer"], r["mode"], _fmt(r.get("mails")), _fmt(r.get("tickets")), _fmt(r.get("entries")),
                      _fmt(r.get("mail_out")), _fmt(r.get("seconds")), _fmt(r.get("per_s")),
                      _fmt(r.get("reference_per_s")), _times(r.get("casemail_ratio")), target,
                      _fmt(r.get("cpu_seconds")), _fmt(r.get("per_cpu_s")), _times(r.get("casemail_cpu_ratio"))))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    for n, row in enumerate(table):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for r in report["summary"]:
        if r.get("error"):
            print(f"FAILED {r['peer']} {r['mode']}: {r['error']}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mails", type=int, default=60, help="mails per system, half new and half follow-ups "
                                                         "(even, at least 2; default 60)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each mode, each on a fresh database")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one feeder run may take")
    p.add_argument("--peers-venv", help="the peers' virtual environment (default: $CASEMAIL_PEERS_VENV or "
                                        f"{DEFAULT_VENV})")
    p.add_argument("--no-slow", action="store_true", help="leave out Roundup per mail and get_email")
    p.add_argument("--seed", type=int, default=1, help="mailgen seed (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mails < 2 or not 1 <= args.repeat <= 20:
        raise SystemExit("--mails must be at least 2 and --repeat between 1 and 20")
    venv = peers_venv(args)
    setup_peers(venv)
    python = venv / "bin" / "python"
    feeders = [f for f in FEEDERS if not (args.no_slow and f.slow)]
    start_machine = machine()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="casemail-peer-mails-") as tmp:
        built = mails.build(args.mails, seed=args.seed)
        folders = {system: mails.write(Path(tmp) / system, system, ms) for system, ms in built.items()}
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        for n in range(args.repeat):
            for f in feeders:
                # casemail runs in its own environment, the peers in theirs.
                interpreter = Path(sys.executable) if f.system == "casemail" else python
                print(f"[{n + 1}/{args.repeat}] {f.peer} {f.mode} ...", file=sys.stderr, flush=True)
                result = run_feeder(interpreter, f, folders[f.system], args.timeout, scratch)
                result["repeat"] = n + 1
                runs.append(result)
    report = {
        "mails": 2 * (args.mails // 2),
        "repeat": args.repeat,
        "seed": args.seed,
        "machine": start_machine,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "versions": peer_versions(python),
        "casemail_commit": casemail_commit(),
        "targets": {"casemail_per_s": TARGET_CASES_PER_SECOND,
                    "ratio_over": {f"{p} {m}": r for (p, m), r in TARGET_RATIOS.items()}},
        "summary": summarise(runs, feeders),
        "runs": runs,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0 if all(r.get("ok") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
