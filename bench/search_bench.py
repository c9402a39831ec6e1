# SPDX-License-Identifier: GPL-3.0-or-later
"""The case search benchmark: `casemail cases --search WORDS` and My Cases over 100,000 cases.

Run from the repository root::

    .venv/bin/python bench/search_bench.py [--cases N] [--requesters N] [--repeat N] [--seconds S]
                                           [--database-url URL] [--no-cli] [--no-freeze] [--json]

It builds a database of generated cases (subjects from a support vocabulary, words drawn with a
Zipf-like spread so some are everywhere and some rare; requesters drawn Zipf-like too, so the
biggest have thousands of cases) through the real migrations, on a temporary SQLite file and, when
a PostgreSQL URL is given (--database-url, else CASEMAIL_BENCH_DATABASE_URL, else
CASEMAIL_TEST_DATABASE_URL), in a temporary schema there that is dropped afterwards. Then it times:

- each search as `casemail cases --search` runs it: casemail.cli.case_rows (store.cases.listing
  and the rows the CLI prints) in a read-only transaction on a warm connection, with what exists
  before the timing frozen out of the garbage collector's way as the command freezes its start-up
  (casemail.cli.start_up_frozen; --no-freeze times without it);
- My Cases as the "my cases" mail asks for it (intake.actions: store.cases.listing with requester=,
  limit MAX_LISTED + 1, nothing frozen, as in the daemon), for the biggest requester and for the one
  whose count is nearest 1,000, and the same requesters through the CLI's `--requester` (limit 1,000);
- once, the real CLI command as a subprocess (SQLite only), with a bare `import casemail.cli`
  process timed beside it, because Python start-up and imports are most of that figure.

Each query runs --repeat times (after one warm-up run) or until --seconds is spent, whichever is
first, and p50 / p95 / max are printed beside the target of issue 7.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, create_engine, event, insert, text  # noqa: E402

from casemail import views  # noqa: E402
from casemail.cli import case_rows, start_up_frozen  # noqa: E402
from intake.actions import MAX_LISTED  # noqa: E402
from store import cases  # noqa: E402
from store.db import make_engine, migrate, read_only, unit_of_work  # noqa: E402
from store.models import Case, Contact, Counter  # noqa: E402

SEARCH_TARGET_MS = 50.0
MY_CASES_TARGET_MS = 20.0

PRODUCTS = ["Printer", "Scanner", "Router", "Mailserver", "Backup", "Firewall", "Webshop", "Portal",
            "Drucker", "Laptop", "VPN", "Database", "Invoice", "Payroll", "Storage", "Camera"]
PROBLEMS = ["error", "crash", "timeout", "fails", "slow", "broken", "not working", "cannot connect",
            "offline", "hangs", "freezes", "jammed", "rejected", "missing", "wrong", "Störung",
            "keeps restarting", "unreachable", "denied", "corrupted"]
CONTEXT = ["after update", "since Monday", "on startup", "in office", "for all users", "at login",
           "during backup", "with new cable", "on second floor", "after reboot", "in Berlin",
           "with firmware", "via web", "in production", "on the test system", "again", "urgent"]
EXTRA = ["please help", "ticket from portal", "customer waiting", "invoice attached", "re: previous case",
         "see log", "screenshot", "high priority", "question", "request", "licence", "password reset"]

# (label, words): common, rarer, prefix, several words, punctuation, unicode, nothing found.
SEARCHES = [
    ("common word", "error"),
    ("prefix", "print"),
    ("two words", "printer jammed"),
    ("three words", "vpn timeout login"),
    ("code with punctuation", "E-1234"),
    ("version", "2.4"),
    ("unicode", "Drucker-Störung"),
    ("rare word", "Kernelpanik"),
    ("not found", "zzzyxx"),
]


def subject(rng: random.Random, n: int) -> str:
    product = PRODUCTS[min(int(rng.paretovariate(1.2)) - 1, len(PRODUCTS) - 1)]
    problem = PROBLEMS[min(int(rng.paretovariate(1.0)) - 1, len(PROBLEMS) - 1)]
    parts = [product, problem]
    if rng.random() < 0.6:
        parts.append(rng.choice(CONTEXT))
    if rng.random() < 0.3:
        parts.insert(0, rng.choice(EXTRA) + ":")
    if rng.random() < 0.15:
        parts.append(f"E-{rng.randrange(1000, 10000)}")
    if rng.random() < 0.1:
        parts.append(f"v{rng.randrange(1, 6)}.{rng.randrange(0, 10)}.{rng.randrange(0, 20)}")
    if rng.random() < 0.05:
        parts.append(f"{rng.randrange(1, 6)}.{rng.randrange(0, 10)}")
    if product == "Drucker" and rng.random() < 0.3:
        parts = ["Drucker-Störung", rng.choice(CONTEXT)]
    if n % 20_000 == 7:
        parts.append("Kernelpanik")  # a handful of cases with a rare word
    return " ".join(parts)


def zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (rank ** s) for rank in range(1, n + 1)]


def build(engine: Engine, n_cases: int, n_requesters: int, seed: int) -> dict[str, Any]:
    """Fill a migrated, empty database; return facts about what was made."""
    rng = random.Random(seed)
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    t0 = time.perf_counter()
    with unit_of_work(engine) as s:
        s.execute(insert(Contact), [
            {"address": f"customer{i}@example{i % 97}.com", "address_key": f"customer{i}@example{i % 97}.com",
             "display_name": f"Customer {i}", "role": "customer", "notify": "every", "bouncing": False,
             "created_at": now - timedelta(days=800)}
            for i in range(n_requesters)
        ])
        ids = [row[0] for row in s.execute(text("SELECT id FROM contact ORDER BY id"))]
    weights = zipf_weights(n_requesters, 1.0)
    requester_ids = rng.choices(ids, weights=weights, k=n_cases)
    batch = 5_000
    for start in range(0, n_cases, batch):
        rows = []
        for n in range(start, min(start + batch, n_cases)):
            created = now - timedelta(days=730) + timedelta(seconds=n * 730 * 86400 // n_cases)
            updated = created + timedelta(minutes=rng.randrange(0, 60 * 24 * 30))
            closed = rng.random() < (0.9 if n < n_cases * 0.9 else 0.3)
            rows.append({
                "number": n + 1, "subject": subject(rng, n), "product": None, "version": None,
                "description": "", "severity": rng.choice((1, 2, 3, 3, 3, 4)), "severity_source": "default",
                "production_down": False, "status": "closed" if closed else "open",
                "requester_id": requester_ids[n], "follow_up_of_id": None, "created_at": created,
                "updated_at": updated, "closed_at": updated if closed else None,
            })
        with unit_of_work(engine) as s:
            s.execute(insert(Case), rows)
    with unit_of_work(engine) as s:
        s.execute(insert(Counter).values(name="case", value=n_cases))
    build_s = time.perf_counter() - t0
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    counts: dict[int, int] = {}
    for rid in requester_ids:
        counts[rid] = counts.get(rid, 0) + 1
    address = {cid: f"customer{i}@example{i % 97}.com" for i, cid in enumerate(ids)}
    biggest = max(counts, key=lambda c: counts[c])
    near_1000 = min(counts, key=lambda c: abs(counts[c] - 1000))
    return {
        "build_seconds": round(build_s, 1),
        "requesters_with_1000_or_more": sum(1 for c in counts.values() if c >= 1000),
        "biggest": (address[biggest], counts[biggest]),
        "near_1000": (address[near_1000], counts[near_1000]),
    }


def timed(fn: Callable[[], int], repeat: int, seconds: float) -> dict[str, Any]:
    fn()  # warm-up: caches, the statement cache, the connection
    samples: list[float] = []
    found = 0
    deadline = time.perf_counter() + seconds
    while len(samples) < repeat and time.perf_counter() < deadline:
        t = time.perf_counter()
        found = fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return {"runs": len(samples), "found": found, "p50": statistics.median(samples), "p95": p95,
            "max": samples[-1]}


def cli_query(engine: Engine, **kwargs: Any) -> Callable[[], int]:
    def run() -> int:
        with read_only(engine) as s:
            return len(case_rows(s, **kwargs))
    return run


def mail_query(engine: Engine, **kwargs: Any) -> Callable[[], int]:
    def run() -> int:
        with read_only(engine) as s:
            return len([views.case_row(c) for c in cases.listing(s, **kwargs)])
    return run


def timed_as_cli(fn: Callable[[], int], args: argparse.Namespace) -> dict[str, Any]:
    """Time a query of `casemail cases`, frozen as the command freezes what start-up made."""
    if args.no_freeze:
        return timed(fn, args.repeat, args.seconds)
    with start_up_frozen():
        return timed(fn, args.repeat, args.seconds)


def sql_only(engine: Engine, **kwargs: Any) -> Callable[[], int]:
    """The statements store.cases.listing sends, run bare (fetch only, no objects made from the rows):
    how much of the time is the database's."""
    statements: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):  # not the BEGIN of read_only()
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        cli_query(engine, **kwargs)()
    finally:
        event.remove(engine, "before_cursor_execute", grab)

    def run() -> int:
        n = 0
        with engine.connect() as conn:
            for statement, parameters in statements:
                n = len(conn.exec_driver_sql(statement, parameters).all())
        return n
    return run


@contextmanager
def sqlite_database() -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="casemail-search-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'casemail.db'}", Path(tmp)


@contextmanager
def postgres_database(base: str) -> Iterator[str]:
    schema = f"cm_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def time_process(argv: list[str], cwd: Path, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        best = min(best, (time.perf_counter() - t) * 1000)
    return best


def cli_end_to_end(url: str, tmp: Path, words: str) -> dict[str, float]:
    config = tmp / "casemail.toml"
    config.write_text(f"""\
[database]
url = "{url}"

[storage]
blobs = "blobs"

[support]
addresses = ["support@example.com"]
secret_key = "bench-secret-key-0123456789abcdef"
""")
    py = sys.executable
    startup = time_process([py, "-c", "import casemail.cli"], REPO)
    command = time_process([py, "-m", "casemail", "-c", str(config), "cases", "--status", "all",
                            "--search", words], REPO)
    return {"startup_ms": startup, "command_ms": command}


def run_database(label: str, url: str, args: argparse.Namespace, tmp: Path | None) -> dict[str, Any]:
    engine = make_engine(url)
    migrate(engine)
    facts = build(engine, args.cases, args.requesters, args.seed)
    version = ".".join(str(v) for v in engine.dialect.server_version_info or ())
    results: dict[str, Any] = {"database": f"{label} {version}", **facts, "searches": [], "my_cases": []}
    for name, words in SEARCHES:
        for status in ("all", "open"):
            r = timed_as_cli(cli_query(engine, status=status, search=words), args)
            sql = timed(sql_only(engine, status=status, search=words), args.repeat, args.seconds)
            results["searches"].append({"search": words, "kind": name, "status": status, **r,
                                        "sql_p50": sql["p50"]})
    for who in ("biggest", "near_1000"):
        address, count = facts[who]
        for status in ("all", "open"):
            for limit, how in ((MAX_LISTED + 1, "mail"), (1000, "cli")):
                if how == "mail":
                    r = timed(mail_query(engine, status=status, requester=address, limit=limit),
                              args.repeat, args.seconds)
                else:
                    r = timed_as_cli(cli_query(engine, status=status, requester=address, limit=limit), args)
                sql = timed(sql_only(engine, status=status, requester=address, limit=limit),
                            args.repeat, args.seconds)
                results["my_cases"].append({"requester": who, "cases": count, "status": status,
                                            "limit": limit, "via": how, **r, "sql_p50": sql["p50"]})
    engine.dispose()
    if tmp is not None and not args.no_cli:
        results["cli"] = {"search": "printer jammed", **cli_end_to_end(url, tmp, "printer jammed")}
    return results


def report(r: dict[str, Any]) -> None:
    print(f"\n== {r['database']}: built in {r['build_seconds']} s; requesters with >= 1,000 cases: "
          f"{r['requesters_with_1000_or_more']}; biggest {r['biggest'][1]}, nearest 1,000: {r['near_1000'][1]}")
    head = (f"{'status':<6} {'found':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'SQL p50':>8} "
            f"{'target':>7}  p50 ok")
    print(f"{'search':<22} {head}")
    for s in r["searches"]:
        ok = "yes" if s["p50"] < SEARCH_TARGET_MS else "NO"
        print(f"{s['search']:<22} {s['status']:<6} {s['found']:>6} {s['p50']:>8.2f} {s['p95']:>8.2f} "
              f"{s['max']:>8.2f} {s['sql_p50']:>8.2f} {SEARCH_TARGET_MS:>7.0f}  {ok}")
    print(f"{'my cases':<22} {head}")
    for m in r["my_cases"]:
        label = f"{m['requester']} ({m['cases']}) {m['via']}"
        target = MY_CASES_TARGET_MS if m["via"] == "mail" else SEARCH_TARGET_MS
        ok = "yes" if m["p50"] < target else "NO"
        print(f"{label:<22} {m['status']:<6} {m['found']:>6} {m['p50']:>8.2f} {m['p95']:>8.2f} "
              f"{m['max']:>8.2f} {m['sql_p50']:>8.2f} {target:>7.0f}  {ok}")
    if "cli" in r:
        c = r["cli"]
        print(f"CLI `casemail cases --search \"{c['search']}\"` as a process: {c['command_ms']:.0f} ms "
              f"(best of 3), of which Python start-up and `import casemail.cli` {c['startup_ms']:.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--requesters", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=50, help="timed runs per query (after one warm-up)")
    ap.add_argument("--seconds", type=float, default=5.0, help="time limit per query")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--database-url", default=os.environ.get("CASEMAIL_BENCH_DATABASE_URL")
                    or os.environ.get("CASEMAIL_TEST_DATABASE_URL"),
                    help="a PostgreSQL server to use as well (a temporary schema is made and dropped)")
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI subprocess timing")
    ap.add_argument("--no-freeze", action="store_true",
                    help="time the CLI's queries without freezing what exists, to see what freezing does")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    results = []
    with sqlite_database() as (url, tmp):
        results.append(run_database("SQLite", url, args, tmp))
    if args.database_url:
        with postgres_database(args.database_url) as url:
            results.append(run_database("PostgreSQL", url, args, None))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            report(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
