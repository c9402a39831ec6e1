# SPDX-License-Identifier: GPL-3.0-or-later
"""The intake benchmark: how fast casemail takes mail over SMTP and turns it into cases.

Run from the repository root::

    .venv/bin/python bench/smtp_bench.py [--count N] [--mix-count N] [--concurrency 1,8,32]
                                         [--seconds S] [--process-seconds S] [--seed N] [--json]
                                         [--py-spy DIR]

For each mail population (``small``, about 10 KB, and ``mix``, with attachments, about 250 KB on
average; see bench/mailgen.py) and each concurrency, it sends one batch of generated mails twice:

1. to the "transport ceiling", a bare aiosmtpd server on its own event loop in a separate process
   that answers 250 to every message and keeps nothing, which is the most any aiosmtpd-based
   listener could do on this machine;
2. to a real casemail daemon (``python -m casemail -c CONFIG serve``) started for that batch alone,
   with a fresh temporary directory for its SQLite database, blobs and maildir outbound.

Each concurrent worker keeps one SMTP connection open and sends message after message on it. The
latency is timed by a small SMTP client written here over asyncio streams, from the moment the
final "." line of DATA is written to the moment the reply arrives, which is what a sending MTA waits
for. After the sending, the benchmark polls the daemon's database (read-only) until every accepted
message is processed and every acknowledgement is sent, and reports the end-to-end rates.

Every loop is bounded: by the message count and by a hard time limit per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "bench") not in sys.path:
    # The script is run as a file, so its own folder is where mailgen is found.
    sys.path.insert(0, str(REPO / "bench"))

import mailgen  # noqa: E402

# The targets a later issue sets; shown beside the figures and never checked here.
TARGET_RATIO = 0.7
TARGET_CASES_PER_SECOND = 400.0
TARGET_ACKS_PER_SECOND = 1000.0

# The same listener parameters as intake/transports/smtp.py, so the ceiling differs from casemail
# only in what the handler does.
SMTP_HOSTNAME = "casemail.localhost"
DATA_SIZE_LIMIT = 26_214_400

_READY = re.compile(r"casemail ready: smtp=\('([^']+)', (\d+)\)")
# A line beginning with "." is sent with one more "." (RFC 5321 section 4.5.2).
_DOT_LINE = re.compile(rb"^\.", re.MULTILINE)


# --- the SMTP client -------------------------------------------------------------------------------


class SmtpError(Exception):
    """An unexpected reply from the server."""


class SmtpClient:
    """A minimal SMTP client over asyncio streams: one connection, many messages, no pipelining.

    Hand-written rather than aiosmtplib so that the "end of DATA to reply" interval contains the
    server's work and the socket round trip, and no client-side parsing or formatting.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float) -> SmtpClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 20), timeout)
        client = cls(reader, writer)
        await client._expect(220, timeout)
        client._writer.write(b"EHLO bench.localhost\r\n")
        await client._expect(250, timeout)
        return client

    async def _reply(self, timeout: float) -> tuple[int, str]:
        lines: list[bytes] = []
        # An SMTP reply has at most a few dozen lines; the bound guards against a broken server.
        for _ in range(100):
            line = await asyncio.wait_for(self._reader.readline(), timeout)
            if not line:
                raise SmtpError("connection closed by the server")
            lines.append(line)
            if line[3:4] != b"-":
                break
        return int(lines[-1][:3]), b"".join(lines).decode("utf-8", "replace").strip()

    async def _expect(self, code: int, timeout: float) -> None:
        got, text = await self._reply(timeout)
        if got != code:
            raise SmtpError(f"expected {code}, got {text!r}")

    async def _step(self, command: bytes, want: int, timeout: float) -> int:
        self._writer.write(command)
        code, _text = await self._reply(timeout)
        if code != want:
            # A refused step leaves a half-open transaction; RSET clears it for the next message.
            self._writer.write(b"RSET\r\n")
            await self._reply(timeout)
        return code

    async def send(self, mail_from: str, rcpt_to: str, stuffed: bytes,
                   timeout: float) -> tuple[float | None, int]:
        """Send one message (dot-stuffed, ending in CRLF); return (seconds from end of DATA, reply code).

        The seconds are None when a step before the content was refused (a 4xx "busy" or a 5xx).
        """
        # SIZE (RFC 1870) as MTAs send it: both servers advertise it, and casemail sizes its memory
        # reservation for the message by it.
        for command, want in ((f"MAIL FROM:<{mail_from}> SIZE={len(stuffed)}\r\n".encode(), 250),
                              (f"RCPT TO:<{rcpt_to}>\r\n".encode(), 250), (b"DATA\r\n", 354)):
            code = await self._step(command, want, timeout)
            if code != want:
                return None, code
        self._writer.write(stuffed)
        await self._writer.drain()
        started = time.perf_counter()
        self._writer.write(b".\r\n")
        await self._writer.drain()
        code, _text = await self._reply(timeout)
        return time.perf_counter() - started, code

    async def quit(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self._reply(5.0), 5.0)
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def stuff(data: bytes) -> bytes:
    data = _DOT_LINE.sub(b"..", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


# --- sending ---------------------------------------------------------------------------------------


@dataclass
class SendResult:
    """What one sending phase measured."""

    sent: int = 0
    deferred: int = 0            # 4xx replies (casemail's "busy" limit among them); the mail is retried
    refused: int = 0             # 5xx replies; the mail is given up
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    started_at: float = 0.0      # wall-clock time.time() when the first message was started
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "messages": self.sent,
            "deferred": self.deferred,
            "refused": self.refused,
            "reconnects": self.reconnects,
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
            "seconds": round(self.seconds, 3),
            "messages_per_s": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
            "mb_per_s": round(self.bytes / 1e6 / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": _ms(percentile(lat, 50)),
            "p90_ms": _ms(percentile(lat, 90)),
            "p99_ms": _ms(percentile(lat, 99)),
            "max_ms": _ms(lat[-1] if lat else None),
        }


def percentile(sorted_values: list[float], p: float) -> float | None:
    """The nearest-rank percentile: a value that was actually measured, never an interpolation."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


async def send_batch(host: str, port: int, mails: list[tuple[str, str, bytes]], concurrency: int,
                     seconds: float, per_connection: int) -> SendResult:
    """Send mails over `concurrency` connections; stop when all are taken or at the time limit.

    Each worker reuses its connection for up to `per_connection` messages and then opens a new one,
    as MTAs do (casemail hangs up after smtp.max_commands commands on one connection). A 4xx reply is
    retried after a short pause, as an MTA would retry later; a 5xx gives the message up.
    """
    result = SendResult()
    clients = list(await asyncio.gather(*(SmtpClient.connect(host, port, 30.0) for _ in range(concurrency))))
    queue: collections.deque[int] = collections.deque(range(len(mails)))
    # The time limit is checked before each message, so no message starts after it.
    deadline = time.perf_counter() + seconds

    async def worker(slot: int) -> None:
        client: SmtpClient | None = clients[slot]
        used = 0
        failures = 0
        while queue and time.perf_counter() < deadline:
            if client is None or used >= per_connection:
                if client is not None:
                    await client.quit()
                    result.reconnects += 1
                try:
                    client = await SmtpClient.connect(host, port, 30.0)
                except (SmtpError, OSError, asyncio.TimeoutError) as exc:
                    client = None
                    failures += 1
                    result.errors.append(f"connect: {type(exc).__name__}: {exc}")
                    if failures >= 5:
                        return   # five failed connects in a row: this worker gives up, the others go on.
                    await asyncio.sleep(0.2)
                    continue
                used = 0
            index = queue.popleft()
            mail_from, rcpt_to, stuffed = mails[index]
            try:
                latency, code = await client.send(mail_from, rcpt_to, stuffed, timeout=60.0)
            except (SmtpError, OSError, asyncio.TimeoutError) as exc:
                # A dropped connection: the message goes back for another worker or a new connection.
                queue.appendleft(index)
                result.errors.append(f"{type(exc).__name__}: {exc}")
                client = None
                failures += 1
                if failures >= 5:
                    return
                continue
            failures = 0
            used += 1
            if code == 250 and latency is not None:
                result.sent += 1
                result.bytes += len(stuffed)
                result.latencies.append(latency)
            elif 400 <= code < 500:
                result.deferred += 1
                queue.append(index)
                await asyncio.sleep(0.01 + 0.04 * random.random())
            else:
                result.refused += 1
        if client is not None:
            clients[slot] = client

    result.started_at = time.time()
    began = time.perf_counter()
    try:
        # The outer bound catches a server that stops answering in the middle of a message.
        await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(concurrency))), seconds + 90.0)
    except asyncio.TimeoutError:
        result.errors.append("phase time limit reached with messages in flight")
    result.seconds = time.perf_counter() - began
    await asyncio.gather(*(c.quit() for c in clients))
    return result


# --- the servers -----------------------------------------------------------------------------------


class _Discard:
    """The ceiling's handler: every recipient and every message is accepted and dropped."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Ok: discarded"


async def _serve_ceiling() -> None:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    handler = _Discard()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=SMTP_HOSTNAME, ident="ceiling", data_size_limit=DATA_SIZE_LIMIT,
                     enable_SMTPUTF8=True, decode_data=False, timeout=300),
        host="127.0.0.1", port=0,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


@dataclass
class Server:
    """A server process this benchmark started, and where it listens."""

    process: asyncio.subprocess.Process
    port: int
    workdir: Path | None = None
    profiler: asyncio.subprocess.Process | None = None

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                # The figures are taken by now and the folder is thrown away, so a daemon still working
                # through a backlog (it finishes its current batch before stopping) is not waited for long.
                await asyncio.wait_for(self.process.wait(), 10.0)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.profiler is not None and self.profiler.returncode is None:
            # py-spy writes its output and exits once the process it watches has gone.
            try:
                await asyncio.wait_for(self.profiler.wait(), 30.0)
            except asyncio.TimeoutError:
                self.profiler.send_signal(signal.SIGINT)
                await self.profiler.wait()


async def start_ceiling() -> Server:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--serve-ceiling",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30.0)
    if not line.strip().isdigit():
        proc.kill()
        await proc.wait()
        raise RuntimeError("the ceiling server did not start")
    return Server(proc, int(line))


def daemon_config(log_level: str, overrides: list[str] | None = None) -> str:
    # Relative paths are resolved against the config file's folder, the phase's temporary folder.
    return _with_overrides(f"""\
[database]
url = "sqlite:///casemail.db"

[storage]
blobs = "blobs"

[support]
addresses = ["{mailgen.SUPPORT_ADDRESS}"]
name = "Bench Support"
secret_key = "bench-secret-key-0123456789abcdef"

[smtp]
host = "127.0.0.1"
port = 0
hostname = "{SMTP_HOSTNAME}"

[outbound]
transport = "maildir"
maildir = "sent"

[logging]
level = "{log_level}"
""", overrides or [])


def _with_overrides(config: str, overrides: list[str]) -> str:
    """The config with each "section.key=value" (value in TOML) set, for comparing settings."""
    sections: dict[str, list[str]] = {}
    for item in overrides:
        name, _, value = item.partition("=")
        section, _, key = name.strip().partition(".")
        sections.setdefault(section, []).append(f"{key} = {value.strip()}")
    for section, lines in sections.items():
        header = f"[{section}]\n"
        if header in config:
            config = config.replace(header, header + "\n".join(lines) + "\n")
        else:
            config += f"\n{header}" + "\n".join(lines) + "\n"
    return config


async def start_daemon(workdir: Path, log_level: str, py_spy: Path | None, label: str,
                       overrides: list[str] | None = None) -> Server:
    config = workdir / "casemail.toml"
    config.write_text(daemon_config(log_level, overrides))
    log_path = workdir / "daemon.log"
    with log_path.open("wb") as log_file:
        # The log goes to a file, not a pipe: a pipe nobody reads would stall the daemon once full.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "casemail", "-c", str(config), "serve",
            cwd=str(REPO), stdout=asyncio.subprocess.DEVNULL, stderr=log_file,
        )
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        match = _READY.search(log_path.read_text(errors="replace"))
        if match:
            server = Server(proc, int(match.group(2)), workdir)
            if py_spy is not None:
                server.profiler = await start_profiler(proc.pid, py_spy / f"{label}.txt")
            return server
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the casemail daemon did not start:\n{tail}")


async def start_profiler(pid: int, output: Path) -> asyncio.subprocess.Process:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    # Raw (collapsed stack) output can be read with grep and fed to any flame graph tool; --idle keeps
    # the threads waiting on the database visible, which is where a single-writer store spends time.
    # --subprocesses takes in the intake processes, where the mail is read.
    proc = await asyncio.create_subprocess_exec(
        exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--idle", "--threads",
        "--subprocesses",
        "--output", str(output), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)   # py-spy needs a moment to attach before the load starts.
    return proc


# --- processing ------------------------------------------------------------------------------------


def _db_counts(db: Path) -> dict[str, Any]:
    # Opened read-only for every poll, so the benchmark never holds a lock or a snapshot the daemon
    # would have to wait for.
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
    try:
        q = con.execute
        return {
            "accepted": q("SELECT count(*) FROM inbound").fetchone()[0],
            "processed": q("SELECT count(*) FROM inbound WHERE state = 'processed'").fetchone()[0],
            "sent": q("SELECT count(*) FROM outbox WHERE state = 'sent'").fetchone()[0],
            "outbox_pending": q("SELECT count(*) FROM outbox WHERE state IN ('queued', 'sending')").fetchone()[0],
            "outbox_failed": q("SELECT count(*) FROM outbox WHERE state = 'failed'").fetchone()[0],
            "last_processed_at": q("SELECT max(processed_at) FROM inbound").fetchone()[0],
            "last_sent_at": q("SELECT max(sent_at) FROM outbox").fetchone()[0],
            "cases": q("SELECT count(*) FROM cases").fetchone()[0],
            "outcomes": dict(q("SELECT outcome, count(*) FROM inbound WHERE state = 'processed' "
                               "GROUP BY outcome").fetchall()),
        }
    finally:
        con.close()


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    stamp = datetime.fromisoformat(str(value))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)   # casemail stores UTC without an offset in SQLite
    return stamp.timestamp()


async def wait_processed(db: Path, accepted: int, started_at: float, send_seconds: float,
                         seconds: float) -> dict[str, Any]:
    """Poll until every accepted message is processed and no acknowledgement is waiting; time it."""
    deadline = time.monotonic() + seconds
    counts: dict[str, Any] = {}
    complete = False
    while time.monotonic() < deadline:
        counts = await asyncio.to_thread(_db_counts, db)
        if counts["processed"] >= accepted and counts["outbox_pending"] == 0:
            complete = True
            break
        await asyncio.sleep(0.1)
    done_at = time.time()
    # The daemon's own timestamps of the last processed message and the last sent mail measure the
    # end more precisely than the polling interval would.
    last_processed = _epoch(counts.get("last_processed_at")) or done_at
    last_sent = _epoch(counts.get("last_sent_at")) or done_at
    processed, sent = counts.get("processed", 0), counts.get("sent", 0)
    case_seconds = max(1e-6, last_processed - started_at)
    ack_seconds = max(1e-6, last_sent - started_at)
    return {
        "complete": complete,
        "processed": processed,
        "cases": counts.get("cases", 0),
        "acks_sent": sent,
        "outbox_failed": counts.get("outbox_failed", 0),
        "outcomes": counts.get("outcomes", {}),
        "seconds_to_last_case": round(case_seconds, 3),
        "seconds_to_last_ack": round(ack_seconds, 3),
        "backlog_seconds_after_sending": round(max(0.0, last_processed - started_at - send_seconds), 3),
        "cases_per_s": round(processed / case_seconds, 1),
        "acks_per_s": round(sent / ack_seconds, 1),
    }


# --- phases ----------------------------------------------------------------------------------------


async def run_phase(kind: str, concurrency: int, count: int, args: argparse.Namespace,
                    start: int) -> dict[str, Any]:
    generated = mailgen.generate(kind, count, seed=args.seed, start=start)
    mails = [(m.mail_from, m.rcpt_to, stuff(m.data)) for m in generated]
    del generated
    label = f"{kind}-c{concurrency}"
    mean_kb = sum(len(m[2]) for m in mails) / len(mails) / 1000
    _progress(args, f"{label}: {len(mails)} mails, mean {mean_kb:.1f} kB")

    ceiling = await start_ceiling()
    try:
        ceiling_result = await send_batch("127.0.0.1", ceiling.port, mails, concurrency, args.seconds,
                                            args.per_connection)
    finally:
        await ceiling.stop()
    c = ceiling_result.summary()
    _progress(args, f"  ceiling:  {c['messages_per_s']} msg/s, p50 {c['p50_ms']} ms")

    workdir = Path(tempfile.mkdtemp(prefix="casemail-bench-"))
    try:
        daemon = await start_daemon(workdir, args.log_level, args.py_spy, label, args.set)
        try:
            casemail_result = await send_batch("127.0.0.1", daemon.port, mails, concurrency, args.seconds,
                                             args.per_connection)
            m = casemail_result.summary()
            _progress(args, f"  casemail: {m['messages_per_s']} msg/s, p50 {m['p50_ms']} ms; waiting for processing")
            processing = await wait_processed(workdir / "casemail.db", casemail_result.sent,
                                              casemail_result.started_at, casemail_result.seconds,
                                              args.process_seconds)
            _progress(args, f"  processed: {processing['cases_per_s']} cases/s, {processing['acks_per_s']} acks/s")
        finally:
            await daemon.stop()
    finally:
        if args.keep:
            _progress(args, f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    ratio = (m["messages_per_s"] / c["messages_per_s"]) if c["messages_per_s"] else None
    return {
        "kind": kind,
        "concurrency": concurrency,
        "mails": len(mails),
        "mean_message_kb": round(mean_kb, 1),
        "casemail": m,
        "ceiling": c,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "processing": processing,
    }


def _progress(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _fmt(value: Any, width: int) -> str:
    text = "-" if value is None else (f"{value:.2f}" if isinstance(value, float) and value < 10 else str(value))
    return text.rjust(width)


def print_tables(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}, {m['system']}")
    print()
    print("Acceptance (end of DATA to 250; casemail vs. the bare aiosmtpd ceiling)")
    head = ("mails", "conc", "n", "451s", "msg/s", "MB/s", "p50ms", "p90ms", "p99ms", "maxms", "ceil msg/s",
            "ceil MB/s", "ceil p50", "ceil p99", "ratio", "target")
    widths = (5, 4, 5, 5, 7, 6, 7, 7, 7, 7, 10, 9, 8, 8, 6, 7)
    print(" ".join(h.rjust(w) for h, w in zip(head, widths)))
    for p in report["phases"]:
        cm, ce = p["casemail"], p["ceiling"]
        row = (p["kind"], p["concurrency"], cm["messages"], cm["deferred"], cm["messages_per_s"], cm["mb_per_s"], cm["p50_ms"],
               cm["p90_ms"], cm["p99_ms"], cm["max_ms"], ce["messages_per_s"], ce["mb_per_s"], ce["p50_ms"],
               ce["p99_ms"], p["ratio"], f">={TARGET_RATIO}x")
        print(" ".join(_fmt(v, w) for v, w in zip(row, widths)))
    print()
    print("Processing (from the first message sent to the last case / last acknowledgement)")
    head = ("mails", "conc", "processed", "cases", "acks", "cases/s", "target", "acks/s", "target", "backlog s",
            "complete")
    widths = (5, 4, 9, 6, 6, 8, 7, 7, 7, 9, 8)
    print(" ".join(h.rjust(w) for h, w in zip(head, widths)))
    for p in report["phases"]:
        pr = p["processing"]
        small = p["kind"] == "small"
        row = (p["kind"], p["concurrency"], pr["processed"], pr["cases"], pr["acks_sent"], pr["cases_per_s"],
               f">={TARGET_CASES_PER_SECOND:.0f}" if small else "-", pr["acks_per_s"],
               f">={TARGET_ACKS_PER_SECOND:.0f}", pr["backlog_seconds_after_sending"], str(pr["complete"]).lower())
        print(" ".join(_fmt(v, w) for v, w in zip(row, widths)))
    print()
    print("451s: temporary refusals (retried); n: messages accepted within the time limit; complete: every")
    print("accepted message processed and acknowledged within --process-seconds (rates count what was done).")
    for p in report["phases"]:
        cm, ce, pr = p["casemail"], p["ceiling"], p["processing"]
        if cm["errors"] or cm["refused"] or ce["errors"] or ce["refused"] or pr["outbox_failed"]:
            print(f"note: {p['kind']} c={p['concurrency']}: casemail errors {cm['errors']} refused {cm['refused']} "
                  f"{cm['first_errors']}; ceiling errors {ce['errors']}; acknowledgements failed "
                  f"{pr['outbox_failed']}")


def _concurrencies(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 1 or v > 256 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of connection counts between 1 and 256")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark casemail's SMTP intake against a bare aiosmtpd server.")
    p.add_argument("--count", type=int, default=2000, help="small mails per phase (default 2000)")
    p.add_argument("--mix-count", type=int, default=200, help="mix mails per phase (default 200; 0 skips the mix)")
    p.add_argument("--concurrency", type=_concurrencies, default=[1, 8, 32],
                   help="comma-separated connection counts (default 1,8,32)")
    p.add_argument("--seconds", type=float, default=20.0,
                   help="hard time limit of each sending phase, in seconds (default 20)")
    p.add_argument("--process-seconds", type=float, default=30.0,
                   help="hard time limit for waiting on processing after each casemail phase (default 30)")
    p.add_argument("--per-connection", type=int, default=100,
                   help="messages sent on one connection before a new one is opened (default 100)")
    p.add_argument("--seed", type=int, default=1, help="seed of the mail generator (default 1)")
    p.add_argument("--log-level", default="INFO", help="the daemon's logging.level (default INFO, as shipped)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="set a daemon setting (value in TOML, e.g. intake.processes=0); repeatable")
    p.add_argument("--py-spy", type=Path, metavar="DIR",
                   help="profile each daemon with py-spy (raw collapsed stacks into DIR/<phase>.txt)")
    p.add_argument("--keep", action="store_true", help="keep each daemon's temporary folder (database, log)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--serve-ceiling", action="store_true", help=argparse.SUPPRESS)
    return p


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    phases: list[dict[str, Any]] = []
    plan = [("small", args.count), ("mix", args.mix_count)]
    # Every concurrency gets the same mails, so rows differ only in the concurrency: each casemail
    # phase has a daemon and database of its own, where the mails are new, never duplicates.
    for kind, count in plan:
        if count <= 0:
            continue
        for concurrency in args.concurrency:
            phases.append(await run_phase(kind, concurrency, count, args, start=0))
    return {
        "machine": machine(),
        "command": " ".join(["bench/smtp_bench.py", *sys.argv[1:]]),
        "settings": {"count": args.count, "mix_count": args.mix_count, "concurrency": args.concurrency,
                     "seconds": args.seconds, "process_seconds": args.process_seconds, "seed": args.seed,
                     "log_level": args.log_level, "set": args.set},
        "targets_later_issue": {"ratio": TARGET_RATIO, "cases_per_s_small": TARGET_CASES_PER_SECOND,
                                "acks_per_s": TARGET_ACKS_PER_SECOND},
        "phases": phases,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_ceiling:
        asyncio.run(_serve_ceiling())
        return 0
    if (args.count < 0 or args.mix_count < 0 or args.per_connection < 1 or args.seconds <= 0
            or args.process_seconds <= 0):
        print("smtp_bench: counts must be >= 0, --per-connection >= 1 and time limits > 0", file=sys.stderr)
        return 2
    report = asyncio.run(run_all(args))
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_tables(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
