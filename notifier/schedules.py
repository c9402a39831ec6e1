# SPDX-License-Identifier: GPL-3.0-or-later
"""What is due, decided from plain rows and a moment: the pure half of the scheduled jobs.

Nothing here reads a clock or a database. Each due item carries its natural key (see docs/schedules.md),
which the job runner records in the same transaction as the mail it queues; the keys are built so
that deciding twice, or in two daemons, yields the same key for the same piece of work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any

from store.codes import format_case_number, tag_subject
from store.jobs import Activity, CaseClock

# How much of an entry's text a customer's digest quotes; the full text is in the case's history.
EXCERPT_CHARS = 500


@dataclass(frozen=True)
class ScheduleConfig:
    """The [schedules] settings as the runner uses them; None switches a schedule off."""

    reminder_after: timedelta | None = None
    autoclose_after: timedelta | None = None
    escalate_after: timedelta | None = None
    escalate_every: timedelta | None = None
    oncall: tuple[str, ...] = ()
    staff: tuple[str, ...] = ()
    staff_digest_hour: int | None = None
    customer_digest_hour: int | None = None

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.reminder_after, self.autoclose_after, self.escalate_after,
                                           self.staff_digest_hour, self.customer_digest_hour))


@dataclass(frozen=True)
class Due:
    """One piece of work that is due: its natural key, and the case and entry (or round) it is about."""

    key: str
    case_id: int
    entry_id: int | None = None
    round: int | None = None


def asks_for_information(text: str | None) -> bool:
    """Whether a staff reply asks the customer something: its own text (quotes are already stripped)
    carries a question mark. A reply that only informs ("Fixed in 2.1.") must not start the clock that
    ends in closing the customer's case. None (text not read) counts as asking.
    """
    return text is None or any(mark in text for mark in ("?", "？", "¿"))


def waiting_on_customer(c: CaseClock) -> bool:
    """A case waits on its customer while its newest public human entry is a staff reply asking something."""
    return (c.last_human_kind == "staff_reply" and c.last_human_entry_id is not None
            and asks_for_information(c.last_human_text))


def _waiting_for(c: CaseClock, now: datetime) -> timedelta | None:
    if not waiting_on_customer(c) or c.last_human_at is None:
        return None
    return now - c.last_human_at


def due_autocloses(cases: Iterable[CaseClock], now: datetime, cfg: ScheduleConfig) -> list[Due]:
    """Open cases whose staff reply has gone unanswered for autoclose_after."""
    if cfg.autoclose_after is None:
        return []
    out = []
    for c in cases:
        waited = _waiting_for(c, now)
        if waited is not None and waited >= cfg.autoclose_after:
            out.append(Due(f"autoclose:{c.case_id}:{c.last_human_entry_id}", c.case_id, c.last_human_entry_id))
    return out


def due_reminders(cases: Iterable[CaseClock], now: datetime, cfg: ScheduleConfig) -> list[Due]:
    """Open cases whose staff reply has gone unanswered for reminder_after, and that are not closing now.

    When both are due at once (the daemon was down for longer than the gap between them) only the close
    goes out: a reminder and a closing notice in the same minute would contradict each other.
    """
    if cfg.reminder_after is None:
        return []
    out = []
    for c in cases:
        waited = _waiting_for(c, now)
        if waited is None or waited < cfg.reminder_after:
            continue
        if cfg.autoclose_after is not None and waited >= cfg.autoclose_after:
            continue
        out.append(Due(f"reminder:{c.case_id}:{c.last_human_entry_id}", c.case_id, c.last_human_entry_id))
    return out


def needs_escalation(c: CaseClock) -> bool:
    """Severity 1 or production down, and not yet answered by staff."""
    return (c.severity == 1 or c.production_down) and not c.staff_replied


def escalation_round(c: CaseClock, now: datetime, cfg: ScheduleConfig) -> int | None:
    """Which escalation is due now (1 for the first), or None.

    Only the current round is returned: after a long outage the on-call list gets one mail saying how
    long the case has waited, not every round that was missed.
    """
    if cfg.escalate_after is None or not needs_escalation(c):
        return None
    waited = now - c.created_at
    if waited < cfg.escalate_after:
        return None
    if cfg.escalate_every is None:
        return 1
    return 1 + int((waited - cfg.escalate_after) / cfg.escalate_every)


def due_escalations(cases: Iterable[CaseClock], now: datetime, cfg: ScheduleConfig) -> list[Due]:
    out = []
    for c in cases:
        n = escalation_round(c, now, cfg)
        if n is not None:
            out.append(Due(f"escalation:{c.case_id}:{n}", c.case_id, round=n))
    return out


def digest_moment(now: datetime, hour: int | None) -> datetime | None:
    """Today's digest moment (UTC) once it has come, else None.

    A daemon that was down at the hour sends the day's digest when it comes back; the key names the day,
    so it is still sent once.
    """
    if hour is None:
        return None
    moment = datetime.combine(now.astimezone(timezone.utc).date(), time(hour), tzinfo=timezone.utc)
    return moment if now >= moment else None


def staff_digest_key(moment: datetime) -> str:
    return f"digest:staff:{moment.date().isoformat()}"


def customer_digest_key(contact_id: int, moment: datetime) -> str:
    return f"digest:{contact_id}:{moment.date().isoformat()}"


def format_age(delta: timedelta) -> str:
    """A case's age as staff read it at a glance: "3 d 4 h", "5 h 12 min", "7 min"."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


def format_days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:g}"


def staff_digest(cases: Sequence[CaseClock], now: datetime) -> dict[str, Any]:
    """The staff digest's context: open cases grouped by severity (most severe first), oldest first."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for c in sorted(cases, key=lambda c: (c.severity, c.created_at, c.number)):
        groups.setdefault(c.severity, []).append({
            "number": format_case_number(c.number),
            "subject": c.subject,
            "requester": c.requester_address,
            "age": format_age(now - c.created_at),
            "production_down": c.production_down,
            "waiting_on_customer": waiting_on_customer(c),
            "staff_replied": c.staff_replied,
        })
    return {
        "date": now.date().isoformat(),
        "total": len(cases),
        "unanswered": sum(1 for c in cases if not c.staff_replied),
        "waiting_on_customer": sum(1 for c in cases if waiting_on_customer(c)),
        "groups": [{"severity": sev, "cases": rows} for sev, rows in sorted(groups.items())],
    }


KIND_LABELS = {
    "customer_message": "Message",
    "staff_reply": "Reply from support",
    "status_change": "Status change",
}


def customer_digest(activity: Sequence[Activity], *, name: str, since: datetime, until: datetime) -> dict[str, Any]:
    """A customer's digest context: the day's public activity grouped by case, in case-number order."""
    by_case: dict[int, dict[str, Any]] = {}
    for a in activity:
        case = by_case.setdefault(a.case_number, {
            "number": format_case_number(a.case_number),
            "subject": a.case_subject,
            "tagged_subject": tag_subject(a.case_number, a.case_subject),
            "status": a.case_status,
            "entries": [],
        })
        text = a.text.strip()
        case["entries"].append({
            "at": a.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "kind": KIND_LABELS.get(a.kind, a.kind.replace("_", " ").capitalize()),
            "author": a.author_name,
            "text": text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS].rstrip() + " [...]",
        })
    return {
        "name": name,
        "date": until.date().isoformat(),
        "since": since.strftime("%Y-%m-%d %H:%M UTC"),
        "until": until.strftime("%Y-%m-%d %H:%M UTC"),
        "cases": [by_case[n] for n in sorted(by_case)],
    }
