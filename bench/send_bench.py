# SPDX-License-Identifier: GPL-3.0-or-later
"""The sending benchmark: how fast the outbox turns queued acknowledgements into mail at a smarthost.

Run from the repository root::

    .venv/bin/python bench/send_bench.py [--count N] [--connections 1,4] [--seconds S] [--json]
                                         [--py-spy DIR] [--stub-render]

1. A store (temporary SQLite database and blob store) is filled once with N real acknowledgement
   intents: a contact and a case per mail, and `queue_case_mail(template="customer/ack")`, as intake
   queues them. The filled database is copied for each run, so every run starts from the same queue.
2. A sink stands in for the smarthost: an aiosmtpd server in a separate process that answers 250 to
   every mail, counts it and keeps nothing.
3. For each connection count, the real OutboxWorker (renderer, blob store, SmtpSender pool, retry
   policy, its own one-thread executor as in the daemon) runs until every row is sent or the time
   limit passes. The rate is rows marked sent per second, from the worker's start to the last mark;
   the sink's count is checked against it at the end.

Nothing here is run by the test suite; the targets are printed beside the figures, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_ACKS_PER_SECOND = 1000.0


# --- the sink (runs in its own process) ------------------------------------------------------------


def run_sink() -> None:
    """Answer 250 to every mail and count; print the port, then the count when stdin closes."""
    from aiosmtpd.smtp import SMTP

    count = 0

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            nonlocal count
            count += 1
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Handler(), hostname="sink.bench"), "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        # The bench closes our stdin when it is done; reading it in a thread keeps the loop serving.
        await asyncio.to_thread(sys.stdin.read)
        print(count, flush=True)
        server.close()

    asyncio.run(main())


class SinkProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--sink"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=str(REPO))
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def finish(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        count = int(self.proc.stdout.readline() or -1)
        self.proc.wait(10)
        return count


# --- the store ---------------------------------------------------------------------------------------


def settings_for(base: Path, port: int = 25, connections: int = 1) -> Any:
    from casemail.settings import settings_from_dict

    outbound: dict[str, Any] = {"transport": "smtp", "host": "127.0.0.1", "port": port, "timeout": 10.0}
    if connections != 1:
        outbound["connections"] = connections
    return settings_from_dict({
        "database": {"url": f"sqlite:///{base / 'casemail.db'}"},
        "support": {"addresses": ["support@example.com"], "name": "Example Support",
                    "secret_key": "send-bench-key-0123456789abcdef"},
        "outbound": outbound,
    }, base_dir=base)


def fill(base: Path, count: int) -> float:
    """Queue `count` acknowledgements on `count` real cases; return the seconds it took."""
    from casemail.app import make_identity, open_store
    from store import cases, contacts
    from store.db import unit_of_work
    from store.mailing import queue_case_mail

    settings = settings_for(base)
    store = open_store(settings)
    identity = make_identity(settings)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    done = 0
    while done < count:
        with unit_of_work(store.engine) as s:
            for i in range(done, min(count, done + 500)):
                who = contacts.ensure_contact(s, f"customer{i}@customer.example", display_name=f"Customer {i}",
                                              now=now)
                case = cases.create_case(s, subject=f"Printer {i} does not print", requester=who,
                                         description="It stopped printing this morning.", product="Printer",
                                         version="2.1", severity=3, severity_source="default",
                                         production_down=False, follow_up_of=None, now=now)
                cases.add_entry(s, case, kind="customer_mail", author=who, subject=case.subject,
                                text="It stopped printing this morning.", message_id=f"q{i}@customer.example",
                                now=now)
                queue_case_mail(s, case, identity=identity, template="customer/ack", recipients=[who.address],
                                now=now, in_reply_to=f"q{i}@customer.example",
                                extra={"notes": [], "related_to": None, "not_kept": [], "dangerous": [],
                                       "changes": [], "done": [], "refused": [],
                                       "entry": {"id": 0, "author_name": who.display_name,
                                                 "text": "It stopped printing this morning.", "attachments": []}})
        done = min(count, done + 500)
    store.engine.dispose()
    return time.perf_counter() - started


# --- one run -------------------------------------------------------------------------------------------


class StubRenderer:
    """For --stub-render only: renders the first mail of a template for real, then reuses its bytes with
    each row's Message-ID and recipients swapped in. It measures what the outbox itself (claim, store,
    send, record) can do once rendering is cheap; it is not what the daemon does."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._first: dict[str, tuple[Any, bytes, bytes]] = {}

    def render(self, *, template: str, context: dict[str, Any], recipients: list[str], message_id: str,
               now: datetime) -> Any:
        from notifier.render import Rendered

        if template not in self._first:
            r = self._real.render(template=template, context=context, recipients=recipients,
                                  message_id=message_id, now=now)
            self._first[template] = (r, message_id.encode(), ", ".join(recipients).encode())
            return r
        r, mid, to = self._first[template]
        data = r.data.replace(mid, message_id.encode()).replace(b"To: " + to, b"To: " + ", ".join(recipients).encode())
        return Rendered(data=data, subject=r.subject, text=r.text)


async def run_worker(base: Path, port: int, connections: int, count: int, seconds: float,
                     stub_render: bool = False) -> dict[str, Any]:
    from casemail.app import make_identity, make_renderer, open_store, utcnow
    from casemail.daemon import make_sender
    from notifier.loop import OutboxWorker, RetryPolicy
    from sqlalchemy import func, select
    from store.db import read_only
    from store.models import Outbox

    settings = settings_for(base, port, connections)
    store = open_store(settings)
    identity = make_identity(settings)
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="casemail-outbox")

    async def run_outbox(fn: Any) -> Any:
        return await loop.run_in_executor(pool, fn)

    kwargs: dict[str, Any] = {}
    if "connections" in inspect.signature(OutboxWorker).parameters:
        kwargs["connections"] = connections
    elif connections != 1:
        raise SystemExit("this OutboxWorker sends on one connection only")
    sender = make_sender(settings)
    renderer: Any = make_renderer(settings, identity)
    if stub_render:
        renderer = StubRenderer(renderer)
    worker = OutboxWorker(store.engine, store.blobs, renderer, sender,
                          envelope_from=identity.support_address, clock=utcnow, run=run_outbox,
                          retry=RetryPolicy(base_seconds=0.5, max_seconds=2.0), **kwargs)
    stop = asyncio.Event()
    started = time.perf_counter()
    first = last = None
    task = asyncio.create_task(worker.run(stop))
    deadline = started + seconds
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
        if worker.sent and first is None:
            first = time.perf_counter() - started
        if worker.sent >= count:
            last = time.perf_counter() - started
            break
    elapsed = last if last is not None else time.perf_counter() - started
    stop.set()
    await asyncio.wait_for(task, 30)
    await sender.close()
    pool.shutdown(wait=True)
    with read_only(store.engine) as s:
        states = dict(s.execute(select(Outbox.state, func.count()).group_by(Outbox.state)).all())
    store.engine.dispose()
    return {"connections": connections, "count": count, "sent": worker.sent, "seconds": round(elapsed, 3),
            "acks_per_second": round(worker.sent / elapsed, 1) if elapsed else None,
            "first_sent_after_s": round(first, 3) if first is not None else None,
            "states": states, "all_sent": worker.sent >= count}


def one_run(template: Path, connections: int, count: int, seconds: float, spy: Path | None,
            stub_render: bool = False) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="send-bench-run-"))
    try:
        for name in os.listdir(template):
            src = template / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, base / name)
        sink = SinkProcess()
        profiler = None
        if spy is not None:
            spy.mkdir(parents=True, exist_ok=True)
            name = f"send-c{connections}{'-stub' if stub_render else ''}.txt"
            profiler = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                                         str(os.getpid()), "--threads", "--format", "raw", "--rate", "200",
                                         "--output", str(spy / name)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        try:
            result = asyncio.run(run_worker(base, sink.port, connections, count, seconds, stub_render))
        finally:
            if profiler is not None:
                profiler.send_signal(2)
                profiler.wait(30)
            result_sink = sink.finish()
        result["sink_received"] = result_sink
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=10_000, help="acknowledgements queued (default 10,000)")
    p.add_argument("--connections", default="1,4", help="comma-separated connection counts (default 1,4)")
    p.add_argument("--seconds", type=float, default=120.0, help="time limit per run (default 120)")
    p.add_argument("--py-spy", type=Path, default=None, help="record each run with py-spy into this folder")
    p.add_argument("--stub-render", action="store_true",
                   help="also run each connection count with rendering stubbed out (the outbox's own ceiling)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.sink:
        run_sink()
        return

    import logging
    logging.basicConfig(level=logging.WARNING)
    template = Path(tempfile.mkdtemp(prefix="send-bench-store-"))
    try:
        fill_seconds = fill(template, args.count)
        runs = [one_run(template, int(c), args.count, args.seconds, args.py_spy)
                for c in args.connections.split(",")]
        for r in runs:
            r["render"] = "real"
        if args.stub_render:
            for c in args.connections.split(","):
                runs.append({**one_run(template, int(c), args.count, args.seconds, args.py_spy, stub_render=True),
                             "render": "stubbed"})
    finally:
        shutil.rmtree(template, ignore_errors=True)
    report = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                          "system": f"{platform.system()} {platform.release()}"},
              "fill_seconds": round(fill_seconds, 1), "target_acks_per_second": TARGET_ACKS_PER_SECOND,
              "runs": runs}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"queued {args.count} acknowledgements in {fill_seconds:.1f} s "
          f"({report['machine']['cores']} cores, Python {report['machine']['python']})")
    print("| render | connections | sent | sink got | seconds | acks/s | target | ratio | first sent after s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        rate = r["acks_per_second"] or 0.0
        print(f"| {r['render']} | {r['connections']} | {r['sent']} | {r['sink_received']} | {r['seconds']} | "
              f"{rate:,.0f} | ≥ {TARGET_ACKS_PER_SECOND:,.0f} | {rate / TARGET_ACKS_PER_SECOND:.2f} | "
              f"{r['first_sent_after_s']} |")


if __name__ == "__main__":
    main()
