# SPDX-License-Identifier: GPL-3.0-or-later
"""Is this mail from a person, or from a machine we must never answer?

``classify`` looks at one parsed message and its envelope sender and says which kind of
mail it is, with the reasons.  The rules, strongest first:

1. our own loop mark (``X-Casemail-Loop`` carrying one of our instance ids);
2. machine-readable reports: RFC 3464 delivery-status, RFC 5965 feedback-report and
   RFC 8098 disposition-notification parts;
3. non-standard bounces (the layouts flufl.bounce knows, and bounce subjects), but only
   from a machine-looking sender or with a second, independent sign;
4. RFC 3834 Auto-Submitted and the vendor auto-reply headers;
5. RFC 2369/2919 list headers and Precedence.

The asymmetry drives every rule: a person taken for a robot loses their answer, while a
robot taken for a person gets at most one rate-limited acknowledgement.  So no single weak
sign (a subject, a postmaster address, a flufl.bounce match in a quoted address list, a
noreply sender, an Exchange inbox-rule header) is ever enough on its own.
"""

from __future__ import annotations

import email.header
import email.message
import email.utils
import re
from dataclasses import dataclass
from enum import StrEnum

from intake import bounces
from intake.bounces import BounceReport

__all__ = ["BounceReport", "Classification", "MailKind", "classify"]


class MailKind(StrEnum):
    HUMAN = "human"
    AUTO_REPLY = "auto-reply"
    AUTO_GENERATED = "auto-generated"
    BOUNCE = "bounce"
    DELAY = "delay"
    LIST = "list"
    FEEDBACK_REPORT = "feedback-report"
    OWN_LOOP = "own-loop"


@dataclass(frozen=True)
class Classification:
    kind: MailKind
    # Human-readable evidence, e.g. ("Auto-Submitted: auto-replied",).
    reasons: tuple[str, ...]
    bounce: BounceReport | None = None

    @property
    def is_automatic(self) -> bool:
        return self.kind is not MailKind.HUMAN


# Local parts and display names that only delivery software uses.  "postmaster" is not in
# the strong list: RFC 5321 makes it a mailbox read by a person, who may well write to us.
_DAEMON_LOCAL = re.compile(r"^(mailer[-_.]?daemon|mail[-_.]?daemon|mdaemon|mailerdaemon)$", re.I)
_POSTMASTER_LOCAL = re.compile(r"^(postmaster|post[-_.]master)$", re.I)
_DAEMON_NAME = re.compile(
    r"\b(mail(er)?[- ]?daemon|mail deliver(y)? (sub)?system|delivery subsystem|internet mail delivery"
    r"|mail administrator|mail delivery)\b",
    re.I,
)

# A reply or forward prefix: a person answering or passing on a notice, whatever it says.
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|vs|fw|fwd|wg|tr|rv|antw|odp|ynt|enc|pd)\s*(\[\d+\]|\(\d+\))?\s*:", re.I)

# Out-of-office wording; supporting evidence only, never decisive by itself.
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic|matische|matisk|matico|matica)?[ _-]?(reply|response|respons|antwort|answer|svar|risposta|respuesta)"
    r"|out of (the )?office|ooo\b|abwesenheitsnotiz|abwesend|r[ée]ponse automatique|automatisch antwoord"
    r"|respuesta autom[aá]tica|risposta automatica|fuori sede|autosvar|automaattinen vastaus"
    r"|on vacation|vacation|absence)",
    re.I,
)

_SPLIT = re.compile(r"[\s,;]+")
_SURROGATE = re.compile("[\udc80-\udcff]")

# Auto-reply headers from MTAs and clients that predate or ignore RFC 3834.
_AUTOREPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-AutoReply-From", "X-Mail-Autoreply")


@dataclass(frozen=True)
class _Facts:
    """The signs read once from the message, shared by the rules below."""

    subject: str
    null_sender: bool
    daemon_sender: bool
    postmaster_sender: bool
    failure_comment: bool
    auto_reply: tuple[str, ...]
    auto_generated: tuple[str, ...]
    list_headers: tuple[str, ...]
    returned_part: bool
    # A delivery-status part or report-type was present but said nothing decisive.
    delivery_report: bool


def classify(
    msg: email.message.Message,
    *,
    mail_from: str | None,
    loop_header: str = "X-Casemail-Loop",
    loop_ids: frozenset[str] = frozenset(),
) -> Classification:
    """Classify one inbound message.

    ``mail_from`` is the SMTP envelope sender: "" for the null sender <>, None when unknown.

    >>> import email
    >>> m = email.message_from_string("From: a@example.com\\nAuto-Submitted: auto-replied\\n\\nAway")
    >>> classify(m, mail_from="a@example.com").kind
    <MailKind.AUTO_REPLY: 'auto-reply'>
    """
    try:
        return _classify(msg, mail_from, loop_header, loop_ids)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raise".
        # An unforeseen parser state must not lose a customer's mail: answering a robot
        # once is bounded by the per-sender rate limit, losing a person is not.
        return Classification(MailKind.HUMAN, (f"classification failed ({type(exc).__name__}); treated as human",))


def _classify(
    msg: email.message.Message, mail_from: str | None, loop_header: str, loop_ids: frozenset[str]
) -> Classification:
    loop_values = {token for value in _headers(msg, loop_header) for token in _SPLIT.split(value) if token}
    if loop_values & loop_ids:
        return Classification(MailKind.OWN_LOOP, (f"{loop_header} carries our instance id",))

    report = _from_reports(msg)
    if report is not None:
        return report

    facts = _facts(msg, mail_from)
    bounce = _non_standard_bounce(msg, facts)
    if bounce is not None:
        return bounce
    # A mailer-daemon never sends vacation notices, so its wording outranks the
    # auto-reply headers that several MTAs put on their bounces.
    if facts.daemon_sender or facts.delivery_report:
        delay, why = _body_bounce(msg)
        if why:
            return _bounce_result(msg, delay=delay, reasons=(*_machine_reasons(facts), why), flufl=((), ()))
    if facts.auto_reply:
        return Classification(MailKind.AUTO_REPLY, facts.auto_reply)
    if facts.null_sender:
        delay, why = _body_bounce(msg)
        if why:
            return _bounce_result(msg, delay=delay, reasons=(*_machine_reasons(facts), why), flufl=((), ()))
    if facts.auto_generated:
        return Classification(MailKind.AUTO_GENERATED, facts.auto_generated)
    if facts.list_headers:
        return Classification(MailKind.LIST, facts.list_headers)
    if facts.null_sender or facts.daemon_sender or facts.delivery_report:
        return Classification(MailKind.AUTO_GENERATED, _machine_reasons(facts))
    reasons = ("Auto-Submitted: no",) if _header(msg, "Auto-Submitted").strip().lower() == "no" else ()
    return Classification(MailKind.HUMAN, reasons)


def _from_reports(msg: email.message.Message) -> Classification | None:
    """RFC 3464 / 5965 / 8098 reports: structured, so they decide on their own."""
    dsn = bounces.read_dsn(msg)
    if dsn is not None and (dsn.any_failed or dsn.any_delayed):
        permanent = dsn.any_failed
        recipients = dsn.failed if permanent else dsn.delayed
        flufl = bounces.flufl_failures(msg) if not recipients else ((), ())
        if not recipients:
            recipients = flufl[1] if permanent else (flufl[0] or flufl[1])
        report = BounceReport(
            permanent=permanent,
            recipients=recipients,
            original_message_ids=_unique(dsn.original_message_ids + bounces.original_message_ids(msg)),
            diagnostic=dsn.diagnostic,
        )
        action = "failed" if permanent else "delayed"
        kind = MailKind.BOUNCE if permanent else MailKind.DELAY
        return Classification(kind, (f"delivery-status report: Action {action}",), report)
    if _has_part(msg, "message/feedback-report") or _report_type(msg) == "feedback-report":
        return Classification(MailKind.FEEDBACK_REPORT, ("feedback-report (RFC 5965)",))
    mdn = bounces.mdn_disposition(msg)
    if mdn is not None:
        disposition, recipient, ids = mdn
        if re.search(r"\b(deleted|failed|error)\b", disposition):
            report = BounceReport(True, (recipient,) if recipient else (), ids, disposition[:500] or None)
            return Classification(MailKind.BOUNCE, (f"disposition-notification: {disposition}",), report)
        return Classification(MailKind.AUTO_GENERATED, ("disposition-notification (read receipt)",))
    if dsn is not None and dsn.any_success:
        # A DSN that reports only delivered/relayed/expanded: a success notice.
        return Classification(MailKind.AUTO_GENERATED, ("delivery-status report: delivered",))
    # A delivery-status part without readable recipient blocks (truncated, mangled) is
    # still a machine's report; the non-standard rules below decide what it says.
    return None


def _non_standard_bounce(msg: email.message.Message, facts: _Facts) -> Classification | None:
    """Bounces without a DSN part: needs a machine sender plus content, or two signs."""
    bounce_subject = bool(facts.subject) and not _REPLY_PREFIX.match(facts.subject) and bool(
        bounces.BOUNCE_SUBJECT.search(facts.subject) or bounces.DELAY_SUBJECT.search(facts.subject)
    )
    # A null sender that also says "I am an auto-reply" is an RFC 3834 response, whose
    # quoted text flufl.bounce may misread; a mailer-daemon never sends vacation notices.
    machine = facts.daemon_sender or facts.delivery_report or facts.failure_comment or (facts.null_sender and not facts.auto_reply)
    if not (machine or bounce_subject):
        return None
    flufl = bounces.flufl_failures(msg)
    found = bool(flufl[0] or flufl[1])
    seconded = facts.null_sender or facts.postmaster_sender or facts.returned_part or found
    if machine and (found or bounce_subject):
        pass
    elif bounce_subject and seconded:
        pass
    else:
        return None
    reasons = list(_machine_reasons(facts))
    if bounce_subject:
        reasons.append(f"bounce subject: {facts.subject[:80]}")
    if found:
        reasons.append("flufl.bounce found failed recipients")
    if flufl[1]:
        delay = False
    elif flufl[0]:
        delay = True
    else:
        delay = bool(bounces.DELAY_SUBJECT.search(facts.subject)) or (
            not bounces.BOUNCE_SUBJECT.search(facts.subject) and bool(bounces.DELAY_BODY.search(bounces.text_body(msg)[:8192]))
        )
    return _bounce_result(msg, delay=delay, reasons=tuple(reasons), flufl=flufl)


def _body_bounce(msg: email.message.Message) -> tuple[bool, str | None]:
    text = bounces.text_body(msg)[:8192]
    if bounces.DELAY_BODY.search(text):
        return True, "delay wording in the notice"
    if bounces.BOUNCE_BODY.search(text):
        return False, "failure wording in the notice"
    return False, None


def _bounce_result(
    msg: email.message.Message,
    *,
    delay: bool,
    reasons: tuple[str, ...],
    flufl: tuple[tuple[str, ...], tuple[str, ...]],
) -> Classification:
    temporary, permanent = flufl
    if delay:
        recipients = temporary or permanent
    else:
        recipients = permanent or temporary
    if not recipients:
        # Exim names the failed addresses in a header of the notice itself.
        recipients = _unique(tuple(a.lower() for _, a in _addresses(msg, "X-Failed-Recipients") if "@" in a))
    match = bounces.SMTP_REPLY.search(bounces.text_body(msg)[:8192])
    report = BounceReport(
        permanent=not delay,
        recipients=recipients,
        original_message_ids=bounces.original_message_ids(msg),
        diagnostic=" ".join(match.group(0).split())[:500] if match else None,
    )
    return Classification(MailKind.DELAY if delay else MailKind.BOUNCE, reasons, report)


def _facts(msg: email.message.Message, mail_from: str | None) -> _Facts:
    return_path = _header(msg, "Return-Path").strip()
    # The envelope decides when we have it; a Return-Path header (written by the final
    # delivery agent from the envelope) stands in for a mail imported from a file.
    null_sender = mail_from == "" or (msg.get("Return-Path") is not None and return_path.replace(" ", "") in ("<>", ""))
    senders = _addresses(msg, "From") + _addresses(msg, "Sender")
    rp_local = return_path.strip("<>").partition("@")[0]
    daemon = bool(_DAEMON_LOCAL.match(rp_local)) or any(
        _DAEMON_LOCAL.match(addr.partition("@")[0]) or _DAEMON_NAME.search(name) for name, addr in senders
    )
    if mail_from and _DAEMON_LOCAL.match(mail_from.strip("<>").partition("@")[0]):
        daemon = True
    if _header(msg, "X-MS-Exchange-Message-Is-Ndr"):
        daemon = True
    postmaster = any(_POSTMASTER_LOCAL.match(addr.partition("@")[0]) for _, addr in senders)
    auto_submitted = _header(msg, "Auto-Submitted").strip().lower()
    return _Facts(
        subject=" ".join(_header(msg, "Subject").split()),
        null_sender=null_sender,
        daemon_sender=daemon,
        postmaster_sender=postmaster,
        failure_comment=bool(re.search(r"\((failure|rejected|warning-timeout)\)", auto_submitted)),
        auto_reply=_auto_reply_reasons(msg, null_sender),
        auto_generated=_auto_generated_reasons(msg),
        list_headers=_list_reasons(msg),
        returned_part=_has_part(msg, "message/rfc822") or _has_part(msg, "text/rfc822-headers"),
        delivery_report=_has_part(msg, "message/delivery-status") or _report_type(msg) == "delivery-status",
    )


def _auto_reply_reasons(msg: email.message.Message, null_sender: bool) -> tuple[str, ...]:
    reasons: list[str] = []
    submitted = _keyword(_header(msg, "Auto-Submitted"))
    if submitted == "auto-replied":
        reasons.append("Auto-Submitted: auto-replied")
    for name in _AUTOREPLY_HEADERS:
        value = _header(msg, name).strip().lower()
        if msg.get(name) is not None and value not in ("no", "false", "0", "off"):
            reasons.append(f"{name} present")
    if _header(msg, "X-Autogenerated").strip().lower() == "reply":
        reasons.append("X-Autogenerated: Reply")
    if _keyword(_header(msg, "Precedence")) == "auto_reply":
        reasons.append("Precedence: auto_reply")
    if _header(msg, "X-Apple-Action").strip().lower() == "vacation":
        reasons.append("X-Apple-Action: VACATION")
    subject = " ".join(_header(msg, "Subject").split())
    if subject and _AUTO_REPLY_SUBJECT.match(subject):
        # The subject only counts with a second, machine-side sign next to it.
        support = [
            s
            for s, present in (
                ("null envelope sender", null_sender),
                ("X-MS-Exchange-Inbox-Rules-Loop", bool(_header(msg, "X-MS-Exchange-Inbox-Rules-Loop"))),
                ("X-Auto-Response-Suppress", bool(_header(msg, "X-Auto-Response-Suppress"))),
                ("Auto-Submitted", submitted not in ("", "no")),
                ("Precedence", _keyword(_header(msg, "Precedence")) in ("bulk", "junk", "auto_reply")),
            )
            if present
        ]
        if support:
            reasons.append(f"auto-reply subject with {', '.join(support)}")
    return tuple(reasons)


def _auto_generated_reasons(msg: email.message.Message) -> tuple[str, ...]:
    reasons: list[str] = []
    submitted = _keyword(_header(msg, "Auto-Submitted"))
    # RFC 3834 5.1: every value but "no" marks automatic mail; unknown extensions included.
    if submitted and submitted not in ("no", "auto-replied"):
        reasons.append(f"Auto-Submitted: {submitted}")
    suppress = {t.lower() for t in _SPLIT.split(_header(msg, "X-Auto-Response-Suppress")) if t}
    if suppress & {"all", "oof", "autoreply"}:
        reasons.append("X-Auto-Response-Suppress: " + ", ".join(sorted(suppress)))
    if not _list_reasons(msg) and _keyword(_header(msg, "Precedence")) in ("bulk", "junk"):
        reasons.append(f"Precedence: {_keyword(_header(msg, 'Precedence'))}")
    return tuple(reasons)


def _list_reasons(msg: email.message.Message) -> tuple[str, ...]:
    reasons = [f"{name} present" for name in ("List-Id", "List-Unsubscribe", "List-Post") if msg.get(name) is not None]
    if _keyword(_header(msg, "Precedence")) == "list":
        reasons.append("Precedence: list")
    return tuple(reasons)


def _machine_reasons(facts: _Facts) -> tuple[str, ...]:
    reasons = []
    if facts.null_sender:
        reasons.append("null envelope sender")
    if facts.daemon_sender:
        reasons.append("mailer-daemon sender")
    if facts.failure_comment:
        reasons.append("Auto-Submitted failure comment")
    if facts.delivery_report:
        reasons.append("delivery-status report without recipient outcome")
    return tuple(reasons)


def _keyword(value: str) -> str:
    # "auto-replied (vacation); owner-email=x" -> "auto-replied"
    token = re.split(r"[\s;(]", value.strip(), maxsplit=1)[0] if value.strip() else ""
    return token.lower()


def _report_type(msg: email.message.Message) -> str:
    try:
        value = msg.get_param("report-type")
    except Exception:
        return ""
    return str(value).lower() if isinstance(value, str) else ""


def _has_part(msg: email.message.Message, kind: str) -> bool:
    return any(bounces.content_type(p) == kind for p in bounces.walk(msg))


def _headers(msg: email.message.Message, name: str) -> list[str]:
    try:
        raw = msg.get_all(name) or []
    except Exception:
        return []
    return [_decode(v) for v in raw]


def _header(msg: email.message.Message, name: str) -> str:
    values = _headers(msg, name)
    return values[0] if values else ""


def _decode(value: object) -> str:
    """A header value as text: RFC 2047 words decoded, bad charsets replaced, never raising."""
    if isinstance(value, str) and _SURROGATE.search(value):
        # compat32 keeps raw 8-bit header bytes as surrogate escapes; most such headers
        # are UTF-8 written by clients that ignore RFC 2047.
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        parts = email.header.decode_header(value if isinstance(value, email.header.Header) else str(value))
        out = []
        for chunk, charset in parts:
            if isinstance(chunk, bytes):
                out.append(_bytes_text(chunk, charset))
            else:
                out.append(chunk)
        return "".join(out)
    except Exception:
        try:
            return str(value)
        except Exception:
            return ""


def _bytes_text(chunk: bytes, charset: str | None) -> str:
    # Undeclared 8-bit bytes are most often UTF-8; Latin-1 is the lossless last resort.
    if charset in (None, "unknown-8bit"):
        try:
            return chunk.decode("utf-8")
        except UnicodeDecodeError:
            return chunk.decode("latin-1")
    try:
        return chunk.decode(charset, "replace")
    except LookupError:
        return chunk.decode("latin-1")


def _addresses(msg: email.message.Message, name: str) -> list[tuple[str, str]]:
    try:
        return [(n, a) for n, a in email.utils.getaddresses(_headers(msg, name)) if n or a]
    except Exception:
        return []


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
