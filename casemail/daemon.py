# SPDX-License-Identifier: GPL-3.0-or-later
"""The daemon: intake and notifier in one asyncio process, started and stopped in a fixed order.

This is the composition root: every part is built here from the settings and handed what it needs.
Shutdown (SIGTERM, SIGINT or the stop event) stops accepting first, lets the message being processed
and the mail being sent finish, then stops the timers and closes the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from casemail.app import make_identity, make_intake_config, make_renderer, open_store, sqlite_lock_path, utcnow
from casemail.mailin import lmtp_address, make_imap_pollers, start_lmtp
from casemail.settings import ConfigError, Settings
from casemail.workers import IntakeProcesses
from intake.accept import Acceptor
from intake.spoolmover import SpoolMover
from intake.transports.smtp import (IntakeHandler, ListenerSetupError, Mailboxes, SmtpLimits, SmtpSecurity,
                                     start_smtp_server)
from intake.worker import IntakeWorker
from notifier.jobs import ScheduleRunner
from notifier.loop import OutboxWorker, RetryPolicy
from notifier.schedules import ScheduleConfig
from notifier.send import MaildirSender, MailSender, SmtpSender
from store import outbox
from store.db import is_sqlite, unit_of_work
from store.spool import Spool

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long in-flight work may take to finish after a stop was asked for.
GRACEFUL_SECONDS = 20.0


def make_sender(settings: Settings) -> MailSender:
    o = settings.outbound
    if o.transport == "maildir":
        return MaildirSender(settings.path(o.maildir))
    return SmtpSender(host=o.host, port=o.port, timeout=o.timeout, starttls=o.starttls, tls=o.tls,
                      username=o.username, password=o.password)


def schedule_config(settings: Settings) -> ScheduleConfig:
    """The [schedules] section as the job runner reads it: 0 (or -1 for an hour) switches a job off."""
    sc = settings.schedules

    def after(value: float, unit: str) -> timedelta | None:
        return timedelta(**{unit: value}) if value > 0 else None

    return ScheduleConfig(
        reminder_after=after(sc.reminder_days, "days"), autoclose_after=after(sc.autoclose_days, "days"),
        escalate_after=after(sc.escalation_minutes, "minutes"),
        escalate_every=after(sc.escalation_repeat_minutes, "minutes"),
        oncall=tuple(sc.oncall), staff=tuple(settings.staff.addresses),
        staff_digest_hour=sc.staff_digest_hour if sc.staff_digest_hour >= 0 else None,
        customer_digest_hour=sc.customer_digest_hour if sc.customer_digest_hour >= 0 else None,
    )


def smtp_limits(settings: Settings) -> SmtpLimits:
    s = settings.smtp
    return SmtpLimits(max_message_size=s.max_message_size, max_recipients=s.max_recipients,
                      max_connections=s.max_connections, max_concurrent_data=s.max_concurrent_data,
                      max_data_memory=s.max_data_memory,
                      idle_timeout=s.idle_timeout, max_commands=s.max_commands,
                      max_bad_commands=s.max_bad_commands)


def smtp_security(settings: Settings) -> SmtpSecurity:
    s = settings.smtp
    return SmtpSecurity(tls_cert=settings.path(s.tls_cert) if s.tls_cert else None,
                        tls_key=settings.path(s.tls_key) if s.tls_key else None,
                        require_starttls=s.require_starttls,
                        auth_users=settings.path(s.auth_users) if s.auth_users else None,
                        auth_required=s.auth_required)


@contextlib.contextmanager
def exclusive_lock(path: Path | None, refusal: str) -> Iterator[None]:
    """Hold path's lock for the daemon's lifetime; refusal (naming the key) if another daemon holds it."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(refusal)
        yield
    finally:
        os.close(fd)


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[dict[str, Any]], None] | None = None,
    sender: MailSender | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Run the daemon until stop is set (or SIGTERM/SIGINT arrives)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    _install_signal_handlers(loop, stop)

    store = open_store(settings)
    engine, blobs = store.engine, store.blobs
    # These threads run the writes that answer senders: a group of accepted mails into the blob store
    # and the spool (the accept writer is one task, so one thread at a time), and the IMAP pollers'
    # positions. SQLite allows one writer at a time, so one thread is all it can use there.
    db_pool = ThreadPoolExecutor(max_workers=1 if is_sqlite(engine) else 4, thread_name_prefix="casemail-db")

    async def run_db(fn: Callable[[], T]) -> T:
        return await loop.run_in_executor(db_pool, fn)

    # Processing a mail in the daemon's own process (intake.processes = 0) and rendering outgoing mail
    # take milliseconds of CPU each. They get threads of their own so that the writes behind each 250
    # never queue behind them; SQLite's busy timeout orders the few writes that meet.
    intake_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="casemail-intake")
    outbox_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="casemail-outbox")

    # Moving spooled mail into the database waits for its write lock; it has a thread of its own so
    # that the wait holds up nothing else.
    mover_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="casemail-mover")

    async def run_mover(fn: Callable[[], T]) -> T:
        return await loop.run_in_executor(mover_pool, fn)

    async def run_intake(fn: Callable[[], T]) -> T:
        return await loop.run_in_executor(intake_pool, fn)

    async def run_outbox(fn: Callable[[], T]) -> T:
        return await loop.run_in_executor(outbox_pool, fn)

    spool_path = settings.path(settings.storage.spool)
    db_lock = sqlite_lock_path(settings, engine)
    # One daemon per SQLite file: a second one would fight the first for the write lock. One daemon
    # per spool: two would record the same spooled mail twice.
    with exclusive_lock(db_lock, f"database.url: another casemail daemon already uses this database ({db_lock})"), \
            exclusive_lock(spool_path.with_name(spool_path.name + ".lock"),
                           f"storage.spool: another casemail daemon already uses this spool ({spool_path})"):
        if is_sqlite(engine):
            with unit_of_work(engine) as s:
                released = outbox.release_claims(s)
            if released:
                log.info("requeued %d mails a previous run had not finished sending", released)
        identity = make_identity(settings)
        renderer = make_renderer(settings, identity)
        sender = sender or make_sender(settings)
        o = settings.outbound
        outbox_worker = OutboxWorker(
            engine, blobs, renderer, sender, envelope_from=identity.support_address, clock=clock, run=run_outbox,
            retry=RetryPolicy(base_seconds=o.retry_base_seconds, max_seconds=o.retry_max_seconds,
                              give_up_after=timedelta(hours=o.give_up_after_hours)),
            connections=o.connections,
        )
        # Accepted mail is processed by processes of its own (intake.processes), or by a thread here.
        processes: IntakeProcesses | None = None
        intake_worker: IntakeWorker | None = None
        if settings.intake.processes:
            processes = IntakeProcesses(settings, on_outbox=outbox_worker.wake)
            wake_intake = processes.wake
        else:
            intake_worker = IntakeWorker(engine, blobs, make_intake_config(settings, identity), clock=clock,
                                         run=run_intake, on_outbox=outbox_worker.wake)
            wake_intake = intake_worker.wake
        spool = Spool(spool_path)
        mover = SpoolMover(spool, engine, blobs, run=run_mover, on_moved=wake_intake)
        acceptor = Acceptor(engine, blobs, spool=spool, run_db=run_db, clock=clock, on_accepted=mover.wake)

        server = None
        if settings.smtp.enabled:
            try:
                server = await start_smtp_server(
                    IntakeHandler(acceptor, Mailboxes(settings.support.addresses)),
                    host=settings.smtp.host, port=settings.smtp.port, hostname=settings.smtp.hostname,
                    limits=smtp_limits(settings), security=smtp_security(settings),
                )
            except ListenerSetupError as exc:
                engine.dispose()
                raise ConfigError(f"smtp.{exc.key}: {exc}") from exc
            except OSError as exc:
                # A listener that cannot bind is fatal at start: fail fast, naming the key to change.
                engine.dispose()
                raise ConfigError(f"smtp.port: cannot listen on {settings.smtp.host}:{settings.smtp.port}: "
                                  f"{exc.strerror}") from exc

        # LMTP and IMAP feed the same acceptor; they start after the SMTP listener and stop before it.
        try:
            lmtp_server = await start_lmtp(settings, acceptor, smtp_limits(settings))
        except ConfigError:
            if server is not None:
                server.close()
                await server.wait_closed()
            engine.dispose()
            raise
        pollers_stop = asyncio.Event()
        pollers = [asyncio.create_task(p.run(pollers_stop), name="imap")
                   for p in make_imap_pollers(settings, acceptor, engine, run_db=run_db, clock=clock)]

        # The scheduler only says when to look; the database decides what is due.
        scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1,
                                                                   "misfire_grace_time": 30})
        scheduler.add_job(outbox_worker.wake, "interval", seconds=o.poll_seconds, id="outbox-sweep")
        scheduler.add_job(wake_intake, "interval", seconds=5, id="intake-sweep")
        schedules = ScheduleRunner(engine, identity, schedule_config(settings))
        if schedules.enabled:
            async def run_schedules() -> None:
                # Every check decides afresh from the database with the daemon's clock, so a missed or
                # repeated check, a restart or a second daemon neither loses nor doubles a job. It runs
                # beside the outbox work it feeds, never in front of a transaction that answers a sender.
                try:
                    report = await run_outbox(lambda: schedules.run(clock()))
                except Exception:  # noqa: BLE001 - the next check tries again; the timer must not die.
                    log.exception("scheduled jobs failed; they are tried again at the next check")
                    return
                if report.queued:
                    outbox_worker.wake()

            scheduler.add_job(run_schedules, "interval", seconds=settings.schedules.check_seconds, id="schedules",
                              next_run_time=utcnow())
        scheduler.start()

        workers_stop = asyncio.Event()
        if processes is not None:
            # Started once the listeners are up, so a listener that fails to start leaves none behind.
            processes.start()
        mover_stop = asyncio.Event()
        moving = asyncio.create_task(mover.run(mover_stop), name="spool-mover")
        tasks = [asyncio.create_task(outbox_worker.run(workers_stop), name="outbox")]
        if intake_worker is not None:
            tasks.append(asyncio.create_task(intake_worker.run(workers_stop), name="intake"))
        watcher = asyncio.create_task(processes.watch(), name="intake-watch") if processes else None
        info: dict[str, Any] = {"smtp": server.sockets[0].getsockname()[:2] if server else None,
                                "lmtp": lmtp_address(lmtp_server),
                                "intake_pids": processes.pids if processes else []}
        log.info("casemail ready: smtp=%s outbound=%s", info["smtp"], settings.outbound.transport)
        if ready is not None:
            ready(info)
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            if server is not None:
                server.close()
                await server.wait_closed()
            if lmtp_server is not None:
                lmtp_server.close()
                await lmtp_server.wait_closed()
            # A poller finishes the message in hand (accept, then move) and leaves IDLE on the stop event.
            pollers_stop.set()
            if pollers:
                _done, late = await asyncio.wait(pollers, timeout=GRACEFUL_SECONDS)
                for task in late:
                    task.cancel()
                await asyncio.gather(*pollers, return_exceptions=True)
            scheduler.shutdown(wait=False)
            # Nothing is accepted any more: what is spooled is recorded, for processing now or at the
            # next start.
            mover_stop.set()
            try:
                await asyncio.wait_for(moving, GRACEFUL_SECONDS)
            except asyncio.TimeoutError:
                log.warning("spooled mail is recorded at the next start")
            if processes is not None:
                # The processes finish the mail in hand; what they queue is still sent below.
                await processes.stop(GRACEFUL_SECONDS)
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            workers_stop.set()
            _done, pending = await asyncio.wait(tasks, timeout=GRACEFUL_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await sender.close()
            db_pool.shutdown(wait=True)
            mover_pool.shutdown(wait=True)
            spool.close()
            intake_pool.shutdown(wait=True)
            outbox_pool.shutdown(wait=True)
            # After every thread that writes blobs has finished.
            blobs.close()
            engine.dispose()
            if intake_worker is not None:
                log.info("shutdown: %d processed, %d sent", intake_worker.processed, outbox_worker.sent)
            else:
                log.info("shutdown: %d sent", outbox_worker.sent)


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            # Not the main thread (tests run the daemon in one): the caller's stop event is used instead.
            return
