# SPDX-License-Identifier: GPL-3.0-or-later
"""Processing one accepted message: read it, decide, and carry the decision out.

The reading steps (parse, classify, body text, case fields) are pure and run outside any transaction;
the blobs of attachments are written before it. The deciding and writing happen in one transaction
that also marks the inbound row processed, so a message is processed exactly once: a crash before the
commit leaves the row 'accepted' to be processed again, and a crash after it leaves nothing to redo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message

import sqlalchemy.exc
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from intake.apply import MailFacts, apply_plan
from intake.body import extract_body
from store.audience import NOTE_TEMPLATES
from intake.classify import classify
from intake.commands import is_close_word, is_thanks_only, parse_commands
from intake.fields import extract_fields
from intake.limits import AttachmentLimits, judge_attachments
from intake.parse import ParsedMail, parse
from intake.plan import CaseView, MailView, plan_mail
from intake.requests import parse_request
from intake.resolve import ThreadFacts, resolve_thread
from intake.trust import StaffPolicy, sender_authenticated
from store import cases, inbound, outbox
from store.blobs import BlobStore
from store.cases import NewAttachment
from store.contacts import address_key
from store.db import unit_of_work
from store.mailing import Identity, requests_answered_since
from store.models import Inbound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeConfig:
    identity: Identity
    staff: StaffPolicy
    trusted_transports: frozenset[str] = frozenset()
    max_attempts: int = 3
    attachment_limits: AttachmentLimits = AttachmentLimits()
    new_cases_per_hour: int = 20
    # False for `casemail import` without --notify: old mail is filed, and nobody is mailed about it.
    notify: bool = True


def process_inbound(engine: Engine, blobs: BlobStore, inbound_id: int, cfg: IntakeConfig,
                    clock: Callable[[], datetime]) -> str | None:
    """Process one inbound row; return its outcome (None if it was already processed).

    Raises what processing raised, after recording the failure on the row.
    """
    (result,) = process_batch(engine, blobs, [inbound_id], cfg, clock)
    if isinstance(result, Exception):
        raise result
    return result


def process_batch(engine: Engine, blobs: BlobStore, inbound_ids: Sequence[int], cfg: IntakeConfig,
                  clock: Callable[[], datetime]) -> list[str | None | Exception]:
    """Process inbound rows together; return each one's outcome, None, or the exception it raised.

    A group shares its two transactions, and so their commits (each an fsync), which otherwise cost
    more than the rest of processing a small mail. Each mail is still decided and applied on its own,
    inside a savepoint: a mail that fails rolls back alone, is recorded as failed, and its neighbours
    are kept.
    """
    results: dict[int, str | None | Exception] = {}
    snapshots: dict[int, tuple[str, bytes | None, str | None, tuple[str, ...], str]] = {}
    with unit_of_work(engine) as s:
        rows = inbound.lock_many(s, inbound_ids)
        counted: list[Inbound] = []
        for inbound_id in inbound_ids:
            row = rows.get(inbound_id)
            if row is None or row.state != "accepted":
                results[inbound_id] = None
            elif _finish_if_duplicate(s, row, clock()):
                # Nothing to read: a copy we already processed (an IMAP re-read, a second import).
                results[inbound_id] = "duplicate"
            else:
                counted.append(row)
                snapshots[inbound_id] = (row.sha256, row.raw, row.mail_from, tuple(row.rcpt_tos), row.transport)
        # Counted before reading, in its own commit: a mail that crashes the process itself uses up its
        # attempts and ends in quarantine instead of crashing it forever.
        inbound.count_attempts(s, counted)

    facts: dict[int, MailFacts] = {}
    for inbound_id, (sha, raw, mail_from, rcpt_tos, transport) in snapshots.items():
        try:
            facts[inbound_id] = read_mail(blobs.get_unless_inline(sha, raw), mail_from=mail_from, rcpt_tos=rcpt_tos,
                                          transport=transport, cfg=cfg, blobs=blobs)
        except Exception as exc:  # noqa: BLE001 - recorded below; the others go on.
            results[inbound_id] = exc

    if facts:
        try:
            with unit_of_work(engine) as s:
                for inbound_id, mail in facts.items():
                    results[inbound_id] = _apply_one(s, inbound_id, mail, cfg, clock)
        except Exception as exc:  # noqa: BLE001 - the commit itself failed: nothing of the group holds.
            for inbound_id in facts:
                results[inbound_id] = exc

    for inbound_id, result in results.items():
        if isinstance(result, Exception):
            log.error("processing inbound=%s failed", inbound_id, exc_info=result)
            _record_failure(engine, inbound_id, result, cfg, clock())
    return [results[i] for i in inbound_ids]


def _apply_one(s: Session, inbound_id: int, facts: MailFacts, cfg: IntakeConfig,
               clock: Callable[[], datetime]) -> str | None | Exception:
    try:
        with s.begin_nested():
            # The row lock (PostgreSQL; SQLite's write lock does the same) makes the state check and
            # the writes one step, so two processors of one row (two daemons, or `casemail import`
            # beside a daemon) cannot both apply it.
            row = inbound.lock(s, inbound_id)
            if row is None or row.state != "accepted":
                return None
            # A copy of this message in another processor's hands is waited for, then found.
            inbound.lock_copies(s, row)
            return decide_and_apply(s, row, facts, cfg, clock())
    except Exception as exc:  # noqa: BLE001 - this mail's writes are rolled back; the group goes on.
        # Rolling back the savepoint does not undo what the mail wrote with plain statements to the
        # objects of the session: the contact and case it added are still there (and SQLite hands their
        # ids out again), its inbound row still says processed. The session starts afresh instead; the
        # next mail reads what it needs again.
        s.expunge_all()
        if is_store_outage(exc):
            raise
        return exc


def read_mail(raw: bytes, *, mail_from: str | None, rcpt_tos: tuple[str, ...], transport: str,
              cfg: IntakeConfig, blobs: BlobStore) -> MailFacts:
    """Everything the decision needs from the message itself; writes only attachment blobs."""
    parsed = parse(raw)
    classification = classify(parsed.tree, mail_from=mail_from,
                              loop_ids=frozenset({cfg.identity.instance_id}))
    body = extract_body(parsed.text, parsed.html)
    fields = extract_fields(parsed.subject, body.visible, parsed.headers)
    verdict = judge_attachments(parsed.attachments, cfg.attachment_limits)
    attachments = tuple(
        NewAttachment(filename=a.filename, declared_type=a.declared_type, sniffed_type=a.sniffed_type,
                      size=a.size, sha256=blobs.put(a.content), content_id=a.content_id, inline=a.inline)
        for a in verdict.kept
    )
    sender, sender_name = _sender(parsed, mail_from)
    staff_claimed = bool(sender) and cfg.staff.is_staff_address(sender)
    bounce = classification.bounce
    thread = ThreadFacts(
        # A bounce names the mail that bounced inside its report, not in its own headers.
        header_ids=parsed.in_reply_to + parsed.references + (bounce.original_message_ids if bounce else ()),
        recipients=rcpt_tos + tuple(a.address for a in (*parsed.to, *parsed.cc)),
        text=body.full,
        subject=parsed.subject,
    )
    is_staff = staff_claimed and (
        transport in cfg.trusted_transports
        or sender_authenticated(parsed.headers.get("authentication-results", ()), sender,
                                cfg.staff.trusted_authserv_ids)
    )
    return MailFacts(
        # Without the stdlib tree and the attachments' bytes: nothing after reading looks at them (the
        # attachments are in the blob store by now), and a group of large mails waiting for its
        # transaction would otherwise hold each one several times over.
        parsed=dataclasses.replace(parsed, tree=Message(), attachments=()),
        classification=classification,
        body=body,
        fields=fields,
        attachments=attachments,
        refused_attachments=verdict.refused,
        dangerous_attachments=verdict.dangerous,
        sender=sender,
        sender_name=sender_name,
        is_staff=is_staff,
        staff_claimed=staff_claimed,
        recipients=rcpt_tos,
        # What the text alone decides is decided here, outside the write transaction, where it would
        # hold SQLite's one write lock for nothing.
        thread=resolve_thread(thread, cfg.identity.signer, cfg.identity.support_addresses),
        commands=parse_commands(body.visible),
        close_word=is_close_word(body.visible),
        thanks_only=is_thanks_only(body.visible),
        request=parse_request(parsed.subject),
    )


def _sender(parsed: ParsedMail, mail_from: str | None) -> tuple[str, str]:
    if parsed.from_ is not None and "@" in parsed.from_.address:
        return parsed.from_.address, parsed.from_.name
    if mail_from and "@" in mail_from:
        return mail_from, ""
    return "", ""


def _finish_if_duplicate(s: Session, row: Inbound, now: datetime) -> bool:
    earlier = inbound.find_earlier_copy(s, row)
    if earlier is None:
        return False
    inbound.finish(s, row, outcome="duplicate", reason=f"same message as inbound {earlier.id}",
                   case_id=earlier.case_id, now=now)
    return True


def decide_and_apply(s: Session, row: Inbound, facts: MailFacts, cfg: IntakeConfig, now: datetime) -> str:
    # Checked again under the row lock: another processor may have finished a copy meanwhile.
    if _finish_if_duplicate(s, row, now):
        return "duplicate"
    if not facts.sender:
        inbound.finish(s, row, outcome="rejected", reason="the message has no sender address", case_id=None,
                       now=now)
        return "rejected"

    parsed = facts.parsed
    decision = facts.thread
    case = cases.get_case(s, decision.case_number) if decision.case_number is not None else None
    view = None
    if case is not None:
        people = {case.requester.address_key, *(p.contact.address_key for p in cases.participants(s, case))}
        view = CaseView(case.number, case.status, frozenset(people))
    sender_key = address_key(facts.sender)
    hour_ago = now - timedelta(hours=1)
    recent_new_cases = cases.count_cases_since(s, sender_key, hour_ago)
    recent_requests = requests_answered_since(s, sender_key, hour_ago)
    # The plan reads whether the sender was told of the limit only when they are over it; asking the
    # outbox for every mail would be a query per mail for nothing.
    over_cap = recent_new_cases + recent_requests >= cfg.new_cases_per_hour
    mail = MailView(
        sender=sender_key,
        is_staff=facts.is_staff,
        automatic=facts.classification.is_automatic,
        kind=str(facts.classification.kind),
        recent_new_cases=recent_new_cases,
        rate_notice_sent=over_cap and outbox.sent_to_since(s, template="customer/rate_limited",
                                                           recipient_key=sender_key, since=hour_ago) > 0,
        recent_requests=recent_requests,
        commands=facts.commands,
        close_word=facts.close_word,
        thanks_only=facts.thanks_only,
        request=facts.request,
        replies_to_note=_replies_to_note(s, parsed.in_reply_to),
    )
    plan = plan_mail(mail, decision, view, new_case_cap=cfg.new_cases_per_hour)
    with contextlib.nullcontext() if cfg.notify else outbox.unmailed(s):
        case_id = apply_plan(s, row, plan, decision, facts, case, cfg.identity, cfg.staff, now)
    inbound.finish(s, row, outcome=plan.outcome, reason=plan.reason or "; ".join(plan.notes) or None,
                   case_id=case_id, now=now)
    return plan.outcome


def _replies_to_note(s: Session, in_reply_to: tuple[str, ...]) -> bool:
    # A reply to the notification of an internal note stays internal even when the client sent it to
    # the notification's From rather than its Reply-To (the note address).
    return any(outbox.template_of(s, message_id) in NOTE_TEMPLATES for message_id in in_reply_to)


def _record_failure(engine: Engine, inbound_id: int, exc: Exception, cfg: IntakeConfig, now: datetime) -> None:
    # A message that keeps failing is quarantined with the reason, never dropped: the raw bytes stay in
    # the blob store and the row says what went wrong, for an operator to look at and re-run.
    try:
        with unit_of_work(engine) as s:
            row = s.get(Inbound, inbound_id, with_for_update=True)
            if row is None or row.state != "accepted":
                return
            row.reason = f"{type(exc).__name__}: {exc}"[:2000]
            if is_store_outage(exc):
                # The store failed, not the message (a lock that timed out, a lost connection): the
                # attempt is given back, so an outage cannot use up a message's attempts and put it in
                # quarantine; the worker waits before the next pass.
                row.attempts = max(0, row.attempts - 1)
            elif row.attempts >= cfg.max_attempts:
                inbound.finish(s, row, outcome="quarantined", reason=row.reason, case_id=None, now=now)
    except Exception:  # noqa: BLE001 - the store itself is failing; the row stays accepted for a retry.
        log.exception("could not record the failure of inbound=%s", inbound_id)


def is_store_outage(exc: BaseException) -> bool:
    """Whether a failure came from the database being unavailable rather than from the message."""
    if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and bool(exc.connection_invalidated)
