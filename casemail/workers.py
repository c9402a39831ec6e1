# SPDX-License-Identifier: GPL-3.0-or-later
"""Intake processes: accepted mail is turned into cases by processes of its own.

Reading a mail (parsing, quote stripping, classification) is CPU work. In the daemon's own process it
would share one core and one GIL with the listener that answers senders; in processes of its own it
uses the other cores and never delays a 250. Each process takes one shard of the inbound table (the
ids equal to its index modulo the count), so no two read the same mail, and runs the same
IntakeWorker the in-process mode runs. Processing was already safe for more than one processor (the
row lock, the duplicate check under it), so a crash at any point leaves nothing half done.

The daemon wakes the processes through a pipe each when it has accepted mail, and they wake its
outbox through a pipe back when they have queued some. Reading a very large mail takes a few times
its size in memory, so the processes take turns at those (a file lock next to the spool): several
large mails arriving at once are read one after the other, not side by side. A process that dies is started again; at a
stop each finishes the mail in hand and exits. The processes run at a lower priority (intake.nice),
so under a burst the CPU goes to answering senders first and the processing follows right behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TypeVar

from casemail.settings import Settings
from store.inbound import Shard

log = logging.getLogger(__name__)

T = TypeVar("T")

# A process that dies sooner than this after its start is started again only after this long, so a
# process that cannot start (the database is gone) does not spin.
RESTART_PAUSE_SECONDS = 5.0
# How often the daemon looks for a process that died, and a process looks whether its daemon did.
WATCH_SECONDS = 1.0


@dataclass
class _Child:
    shard: Shard
    process: BaseProcess
    wake_w: multiprocessing.connection.Connection   # daemon -> process: "mail was accepted"
    notify_r: multiprocessing.connection.Connection  # process -> daemon: "mail was queued"
    started: float


class IntakeProcesses:
    """The daemon's side: starts, wakes, watches and stops the intake processes."""

    def __init__(self, settings: Settings, *, on_outbox: Callable[[], None]) -> None:
        self._settings = settings
        self._count = settings.intake.processes
        self._on_outbox = on_outbox
        # spawn, not fork: the daemon has threads by now, and a forked copy of a threaded process may
        # inherit a lock some other thread held.
        self._ctx = multiprocessing.get_context("spawn")
        self._children: dict[int, _Child] = {}
        self._stopping = False

    def start(self) -> None:
        for index in range(self._count):
            self._spawn(index)

    def wake(self) -> None:
        for child in self._children.values():
            _poke(child.wake_w)

    async def watch(self) -> None:
        """Start again any process that died, until stop() is called."""
        while not self._stopping:
            await asyncio.sleep(WATCH_SECONDS)
            for index, child in list(self._children.items()):
                if self._stopping or child.process.is_alive():
                    continue
                log.error("intake process %d exited with code %s; starting it again", index,
                          child.process.exitcode)
                self._close(child)
                if time.monotonic() - child.started < RESTART_PAUSE_SECONDS:
                    await asyncio.sleep(RESTART_PAUSE_SECONDS)
                if not self._stopping:
                    self._spawn(index)

    async def stop(self, grace: float) -> None:
        """Ask every process to finish the mail in hand and exit; kill those that take longer than grace."""
        self._stopping = True
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError):
                if child.process.pid is not None:
                    os.kill(child.process.pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + grace
        for child in self._children.values():
            await loop.run_in_executor(None, child.process.join, max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                log.warning("intake process %d did not stop within %.0f s; killing it", child.shard.index, grace)
                child.process.kill()
                await loop.run_in_executor(None, child.process.join, 5.0)
            self._close(child)
        self._children.clear()

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self._children.values() if c.process.pid is not None]

    def _spawn(self, index: int) -> None:
        shard = Shard(index, self._count)
        wake_r, wake_w = self._ctx.Pipe(duplex=False)
        notify_r, notify_w = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=run_intake_process, args=(self._settings, shard, wake_r, notify_w),
                                    name=f"casemail-intake-{index}", daemon=True)
        process.start()
        # The process has its own copies now; the daemon keeps only its ends.
        wake_r.close()
        notify_w.close()
        os.set_blocking(wake_w.fileno(), False)
        os.set_blocking(notify_r.fileno(), False)
        asyncio.get_running_loop().add_reader(notify_r.fileno(), self._notified, notify_r)
        self._children[index] = _Child(shard, process, wake_w, notify_r, time.monotonic())
        log.info("intake process %d started (pid %s)", index, process.pid)

    def _notified(self, notify_r: multiprocessing.connection.Connection) -> None:
        if _drain(notify_r):
            self._on_outbox()
        else:
            # The process's end is closed (it exited); stop watching the pipe until it is started again.
            asyncio.get_running_loop().remove_reader(notify_r.fileno())

    def _close(self, child: _Child) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(child.notify_r.fileno())
        child.wake_w.close()
        child.notify_r.close()


def run_intake_process(settings: Settings, shard: Shard, wake_r: multiprocessing.connection.Connection,
                       notify_w: multiprocessing.connection.Connection) -> None:
    """The entry point of one intake process."""
    # Ctrl-C in a terminal reaches the whole process group; the daemon decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from casemail.app import configure_logging, release_large_blocks

    configure_logging(settings.logging.level)
    release_large_blocks()
    if settings.intake.nice:
        os.nice(settings.intake.nice)
    asyncio.run(_serve_shard(settings, shard, wake_r, notify_w))


async def _serve_shard(settings: Settings, shard: Shard, wake_r: multiprocessing.connection.Connection,
                       notify_w: multiprocessing.connection.Connection) -> None:
    from casemail.app import make_identity, make_intake_config, open_store, utcnow
    from intake.worker import IntakeWorker

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    daemon_pid = os.getppid()
    # The daemon has migrated the schema before starting this process.
    store = open_store(settings, upgrade=False)
    os.set_blocking(wake_r.fileno(), False)
    os.set_blocking(notify_w.fileno(), False)

    async def inline(fn: Callable[[], T]) -> T:
        # This process does nothing else, so processing runs on its own loop's thread.
        return fn()

    turn = FileTurn(large_mail_lock_path(settings))
    worker = IntakeWorker(store.engine, store.blobs, make_intake_config(settings, make_identity(settings)),
                          clock=utcnow, run=inline, on_outbox=lambda: _poke(notify_w), shard=shard,
                          large_mail_turn=turn.held)

    def woken() -> None:
        if not _drain(wake_r):
            stop.set()  # the daemon's end is closed: it is gone
        worker.wake()

    loop.add_reader(wake_r.fileno(), woken)

    async def orphaned() -> None:
        # A daemon killed outright cannot ask this process to stop.
        while not stop.is_set():
            await asyncio.sleep(WATCH_SECONDS)
            if os.getppid() != daemon_pid:
                log.warning("the daemon is gone; intake process %d stops", shard.index)
                stop.set()

    watcher = asyncio.create_task(orphaned())
    log.info("intake process %d of %d ready", shard.index, shard.count)
    try:
        await worker.run(stop, idle_seconds=5.0)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        turn.close()
        store.blobs.close()
        store.engine.dispose()
        log.info("intake process %d stopped: %d processed", shard.index, worker.processed)


def large_mail_lock_path(settings: Settings) -> Path:
    """The lock the intake processes of one daemon take turns at to read a very large mail."""
    spool = settings.path(settings.storage.spool)
    return spool.with_name(spool.name + ".large-mail-lock")


class FileTurn:
    """Processes take turns through an exclusive flock on one file; each opens it for itself, since
    flock locks belong to the open file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


def _poke(conn: multiprocessing.connection.Connection) -> None:
    # One byte says "look again". A full pipe already says it, and a closed one has nobody to tell.
    with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
        os.write(conn.fileno(), b"\0")


def _drain(conn: multiprocessing.connection.Connection) -> bool:
    """Read every pending byte; False when the other end is closed."""
    while True:
        try:
            data = os.read(conn.fileno(), 4096)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False

