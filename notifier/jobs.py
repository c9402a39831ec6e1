# SPDX-License-Identifier: GPL-3.0-or-later
"""Carrying out the scheduled jobs: reminders, automatic closes, escalations and digests.

The daemon's scheduler calls `ScheduleRunner.run(now)` in a worker thread every schedules.check_seconds,
with the daemon's clock; tests call it directly with any `now`. What is due is read from the database
and decided by the pure functions of notifier/schedules.py. Each piece of work then runs in a
transaction of its own that decides again on fresh rows, takes the work's natural key (store/jobs.py)
and queues its mail in the outbox, so the work is done once whatever runs it twice; the outbox worker
sends the mail. A piece that fails is rolled back, key included, and tried again at the next check,
without holding up the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from notifier import schedules
from notifier.schedules import Due, ScheduleConfig
from store import cases, jobs
from store.db import read_only, unit_of_work
from store.jobs import CaseClock
from store.mailing import Identity, queue_case_mail, queue_closed_notices, queue_notice
from store.models import Case, Entry, JobRun

log = logging.getLogger(__name__)

Decide = Callable[[Sequence[CaseClock], datetime, ScheduleConfig], list[Due]]


@dataclass
class RunReport:
    """How many of each job a run did (for logs and tests)."""

    reminders: int = 0
    autocloses: int = 0
    escalations: int = 0
    staff_digests: int = 0
    customer_digests: int = 0

    @property
    def queued(self) -> int:
        return self.reminders + self.autocloses + self.escalations + self.staff_digests + self.customer_digests


class ScheduleRunner:
    def __init__(self, engine: Engine, identity: Identity, config: ScheduleConfig) -> None:
        self._engine = engine
        self._identity = identity
        self._cfg = config

    @property
    def enabled(self) -> bool:
        return self._cfg.enabled

    def run(self, now: datetime) -> RunReport:
        """Do every job that is due at `now`; safe to call as often as one likes, from any daemon."""
        report = RunReport()
        cfg = self._cfg
        if not cfg.enabled:
            return report
        if cfg.reminder_after or cfg.autoclose_after or cfg.escalate_after:
            with read_only(self._engine) as s:
                clocks = jobs.open_case_clocks(s)
            # Closes first: a case due for both a close and anything else only gets the close.
            report.autocloses = self._each(clocks, now, schedules.due_autocloses, self._autoclose)
            report.reminders = self._each(clocks, now, schedules.due_reminders, self._remind)
            report.escalations = self._each(clocks, now, schedules.due_escalations, self._escalate)
        try:
            report.staff_digests = self._staff_digest(now)
        except Exception:  # noqa: BLE001 - it must not hold up the customers' digests.
            log.exception("the staff digest failed; it is tried again at the next check")
        report.customer_digests = self._customer_digests(now)
        if report.queued:
            log.info("scheduled jobs queued: %s", report)
        return report

    def _each(self, clocks: Sequence[CaseClock], now: datetime, decide: Decide,
              act: Callable[[Session, Case, Due, JobRun, datetime], int | None]) -> int:
        due = decide(clocks, now, self._cfg)
        if not due:
            return 0
        with read_only(self._engine) as s:
            done = jobs.keys_taken(s, [d.key for d in due])
        count = 0
        for item in due:
            if item.key in done:
                continue
            try:
                count += self._one(item, now, decide, act)
            except Exception:  # noqa: BLE001 - one failing case must not hold up the others.
                # The transaction rolled back, key included, so the next check tries this one again.
                log.exception("scheduled job %s failed; it is tried again at the next check", item.key)
        return count

    def _one(self, item: Due, now: datetime, decide: Decide,
             act: Callable[[Session, Case, Due, JobRun, datetime], int | None]) -> int:
        with unit_of_work(self._engine) as s:
            # Decide again on fresh rows inside the writing transaction: a customer's reply or a staff
            # answer may have arrived since the rows above were read.
            fresh = jobs.open_case_clocks(s, [item.case_id])
            if item.key not in {d.key for d in decide(fresh, now, self._cfg)}:
                return 0
            job = jobs.take_key(s, item.key, now=now)
            if job is None:
                return 0
            case = s.get(Case, item.case_id)
            assert case is not None
            job.outbox_id = act(s, case, item, job, now)
            return 1

    def _remind(self, s: Session, case: Case, item: Due, job: JobRun, now: datetime) -> int | None:
        reply = s.get(Entry, item.entry_id)
        assert reply is not None and self._cfg.reminder_after is not None
        extra = {"reminder": {
            "days": schedules.format_days(self._cfg.reminder_after),
            "autoclose_days": (schedules.format_days(self._cfg.autoclose_after)
                               if self._cfg.autoclose_after else None),
            "reply_author": reply.author.display_name if reply.author and reply.author.display_name else "",
            "reply_text": reply.text,
            "reply_at": reply.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        }}
        row = queue_case_mail(s, case, identity=self._identity, template="customer/reminder",
                              recipients=[case.requester.address], now=now, extra=extra)
        return row.id if row else None

    def _autoclose(self, s: Session, case: Case, item: Due, job: JobRun, now: datetime) -> int | None:
        assert self._cfg.autoclose_after is not None
        days = schedules.format_days(self._cfg.autoclose_after)
        cases.close_case(s, case, now=now)
        cases.add_entry(s, case, kind="status_change", now=now, subject="closed",
                        text=f"Closed automatically: no answer from the customer {days} days after the "
                             f"staff reply.",
                        details={"status": "closed", "by": "schedule", "job": job.key})
        # Everyone a close by mail would tell: the requester, the people copied, the assignee.
        rows = queue_closed_notices(s, case, identity=self._identity, closed_by=self._identity.support_name,
                                    what=f"closed automatically after {days} days without an answer",
                                    now=now, extra={"autoclose": {"days": days}})
        return next((row.id for row in rows if row.template == "customer/closed"), rows[0].id if rows else None)

    def _escalate(self, s: Session, case: Case, item: Due, job: JobRun, now: datetime) -> int | None:
        extra = {"escalation": {
            "round": item.round,
            "waited": schedules.format_age(now - case.created_at),
            "reason": "production down" if case.production_down else f"severity {case.severity}",
            "description": case.description,
        }}
        row = queue_case_mail(s, case, identity=self._identity, template="staff/escalation",
                              recipients=list(self._cfg.oncall), now=now, extra=extra)
        return row.id if row else None

    def _staff_digest(self, now: datetime) -> int:
        moment = schedules.digest_moment(now, self._cfg.staff_digest_hour)
        if moment is None or not self._cfg.staff:
            return 0
        key = schedules.staff_digest_key(moment)
        with read_only(self._engine) as s:
            if jobs.keys_taken(s, [key]):
                return 0
        with unit_of_work(self._engine) as s:
            job = jobs.take_key(s, key, now=now)
            if job is None:
                return 0
            digest = schedules.staff_digest(jobs.open_case_clocks(s), now)
            row = queue_notice(s, identity=self._identity, template="staff/digest",
                               recipients=list(self._cfg.staff), now=now, extra={"digest": digest})
            job.outbox_id = row.id if row else None
        return 1

    def _customer_digests(self, now: datetime) -> int:
        until = schedules.digest_moment(now, self._cfg.customer_digest_hour)
        if until is None:
            return 0
        since = until - timedelta(hours=24)
        with read_only(self._engine) as s:
            contacts = jobs.digest_contacts(s)
            done = jobs.keys_taken(s, [schedules.customer_digest_key(c.contact_id, until) for c in contacts])
        count = 0
        for contact in contacts:
            key = schedules.customer_digest_key(contact.contact_id, until)
            if key in done:
                continue
            try:
                count += self._customer_digest(contact, key, since, until, now)
            except Exception:  # noqa: BLE001 - one failing contact must not hold up the others.
                log.exception("scheduled job %s failed; it is tried again at the next check", key)
        return count

    def _customer_digest(self, contact: jobs.DigestContact, key: str, since: datetime, until: datetime,
                         now: datetime) -> int:
        with unit_of_work(self._engine) as s:
            # The key is taken even when there was no activity, so that the rest of the day's checks
            # skip this contact without reading its cases again.
            job = jobs.take_key(s, key, now=now)
            if job is None:
                return 0
            activity = jobs.activity_for(s, contact.contact_id, since=since, until=until)
            if not activity:
                return 0
            digest = schedules.customer_digest(activity, name=contact.display_name, since=since, until=until)
            row = queue_notice(s, identity=self._identity, template="customer/digest",
                               recipients=[contact.address], now=now, extra={"digest": digest})
            if row is None:
                return 0
            job.outbox_id = row.id
            return 1
