# SPDX-License-Identifier: GPL-3.0-or-later
"""Large mails are read in turn: the intake processes never read two of them side by side.

Reading a mail takes a few times its size in memory. With two intake processes, four very large
mails arriving at once would otherwise be read two at a time; the worker takes a turn (a file lock
that all processes of one daemon share) around every group larger than its byte bound, and only
around those, so small mail never waits for it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from casemail.app import make_identity, make_intake_config, open_store
from casemail.settings import settings_from_dict
from casemail.workers import FileTurn
from intake.accept import Acceptor, Envelope
from intake.worker import IntakeWorker
from store.db import read_only
from store.models import Inbound

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _mail(n: int, body: str) -> bytes:
    return (f"From: c{n}@customer.example\r\nTo: support@example.com\r\nSubject: Printer {n}\r\n"
            f"Message-ID: <t{n}@customer.example>\r\n\r\n{body}\r\n").encode()


async def _inline(fn: Callable[[], T]) -> T:
    return fn()


async def test_only_a_group_above_the_byte_bound_takes_the_turn(tmp_path: Path, database_url: str) -> None:
    settings = settings_from_dict({"database": {"url": database_url},
                                   "support": {"addresses": ["support@example.com"]}}, base_dir=tmp_path)
    store = open_store(settings)
    try:
        acceptor = Acceptor(store.engine, store.blobs, run_db=_inline, clock=_now, on_accepted=lambda: None)
        sizes = {1: "small", 2: "large " * 2000, 3: "small"}
        ids = {n: acceptor.accept_sync(_mail(n, body), Envelope("smtp", f"c{n}@customer.example",
                                                                ("support@example.com",)))
               for n, body in sizes.items()}
        read_in_turn: list[list[str]] = []

        left_after_turn: list[list[str]] = []

        def waiting() -> list[str]:
            with read_only(store.engine) as s:
                return sorted(r.message_id for r in s.query(Inbound).filter_by(state="accepted"))

        @contextlib.contextmanager
        def turn() -> Iterator[None]:
            # What is still waiting when the turn is taken is what the turn was taken for; what is
            # still waiting when it is given back shows that the large mail was processed in it.
            read_in_turn.append(waiting())
            yield
            left_after_turn.append(waiting())

        worker = IntakeWorker(store.engine, store.blobs, make_intake_config(settings, make_identity(settings)),
                              clock=_now, run=_inline, on_outbox=lambda: None, group_bytes=4096,
                              large_mail_turn=turn)
        assert await worker.drain() == 3
        # The first small mail went alone before it, the large one in its turn, the last one after it.
        assert read_in_turn == [["t2@customer.example", "t3@customer.example"]]
        assert left_after_turn == [["t3@customer.example"]]
        with read_only(store.engine) as s:
            assert {r.id: r.state for r in s.query(Inbound)} == {i: "processed" for i in ids.values()}
    finally:
        store.blobs.close()
        store.engine.dispose()


def _note(log: Path, line: str) -> None:
    with log.open("a") as f:
        f.write(line + "\n")


def _hold_turn(path: Path, log: Path) -> None:
    turn = FileTurn(path)
    with turn.held():
        _note(log, "first in")
        time.sleep(0.5)
        _note(log, "first out")
    turn.close()


def test_a_second_process_waits_for_the_turn(tmp_path: Path) -> None:
    lock, log = tmp_path / "large-mail-lock", tmp_path / "log"
    log.touch()
    other = multiprocessing.get_context("spawn").Process(target=_hold_turn, args=(lock, log))
    other.start()
    try:
        deadline = time.monotonic() + 30
        while "first in" not in log.read_text():
            assert time.monotonic() < deadline, "the other process never took its turn"
            time.sleep(0.01)
        turn = FileTurn(lock)
        with turn.held():
            _note(log, "second in")
        turn.close()
    finally:
        other.join(30)
    assert log.read_text().splitlines() == ["first in", "first out", "second in"]

