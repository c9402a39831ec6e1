# SPDX-License-Identifier: GPL-3.0-or-later
"""Peak memory of the daemon while large mails arrive at once.

Starts `casemail serve` on a temporary store, sends --connections mails of about --megabytes MB
(a random binary attachment, base64-encoded as mail clients send it) concurrently over SMTP, waits
until every one is processed into a case, and reports the daemon's peak resident set (VmHWM from
/proc) beside the target of the performance issue (300 MB for a 25 MB mail at 4 connections).

    .venv/bin/python bench/memory_bench.py [--megabytes 24] [--connections 4] [--json]

Linux only (it reads /proc). Bounded: one round of mails and a 120 s limit on each wait.
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

TARGET_MB = 300.0
LIMIT_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def big_mail(index: int, megabytes: float) -> bytes:
    m = EmailMessage()
    m["From"] = f"big{index}@customer.example"
    m["To"] = "support@example.com"
    m["Subject"] = f"Core dump {index}"
    m["Message-ID"] = f"<big{index}.{time.time_ns()}@customer.example>"
    m.set_content("The core dump is attached.\n")
    # base64 grows the attachment by a third; size the payload so the whole mail is about `megabytes`.
    payload = os.urandom(int(megabytes * 1_000_000 * 0.74))
    m.add_attachment(payload, maintype="application", subtype="octet-stream", filename="core.bin")
    return m.as_bytes(policy=SMTP)


def wait_until(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + LIMIT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--megabytes", type=float, default=24.0)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="casemail-mem-"))
    port = free_port()
    (work / "casemail.toml").write_text(
        f'[smtp]\nport = {port}\nmax_message_size = {int(args.megabytes * 1_100_000) + 1_000_000}\n'
        '[logging]\nlevel = "WARNING"\n'
    )
    mails = [big_mail(i, args.megabytes) for i in range(args.connections)]
    with (work / "daemon.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "casemail", "-c", str(work / "casemail.toml"), "serve"],
                                stdout=log, stderr=log)
    try:
        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                return proc.poll() is not None
        wait_until(listening, "the daemon did not start")
        idle_kb = status_kb(proc.pid, "VmRSS")
        errors: list[str] = []

        def send(raw: bytes) -> None:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=LIMIT_SECONDS) as s:
                    s.sendmail("bench@customer.example", ["support@example.com"], raw)
            except Exception as exc:  # noqa: BLE001 - reported below, the run goes on.
                errors.append(repr(exc))

        started = time.monotonic()
        threads = [threading.Thread(target=send, args=(raw,)) for raw in mails]
        for t in threads:
            t.start()
        for t in threads:
            t.join(LIMIT_SECONDS)
        accepted = time.monotonic() - started
        db = work / "var" / "casemail.db"

        def processed() -> bool:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                return c.execute("select count(*) from inbound where state='processed'").fetchone()[0] >= len(mails)
        if not errors:
            wait_until(processed, "the mails were not processed in time")
        result = {
            "megabytes_per_mail": round(len(mails[0]) / 1e6, 1),
            "connections": args.connections,
            "errors": errors,
            "accept_seconds": round(accepted, 2),
            "idle_rss_mb": round(idle_kb / 1024, 1),
            "peak_rss_mb": round(status_kb(proc.pid, "VmHWM") / 1024, 1),
            "target_mb": TARGET_MB,
        }
    finally:
        proc.terminate()
        proc.wait(30)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['connections']} mails of {result['megabytes_per_mail']} MB at once: accepted in "
              f"{result['accept_seconds']} s; daemon RSS idle {result['idle_rss_mb']} MB, peak "
              f"{result['peak_rss_mb']} MB (target < {TARGET_MB:g} MB)" + (f"; errors: {errors}" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
