# SPDX-License-Identifier: GPL-3.0-or-later
"""Turning an outbox intent into the bytes of a mail.

Templates come in threes per key: <key>.subject.j2, <key>.txt.j2 and <key>.html.j2, sharing one layout.
A folder named in the config is searched first, so an operator can override any of them. The
environment is sandboxed (templates may be edited by operators), undefined names are errors rather than
empty strings, and only the HTML templates are autoescaped, so customer-controlled text (subjects,
names, file names) can never become markup. The mail itself is assembled by notifier/mailbytes.py,
which refuses line breaks in header values and encodes text that could pass for an encoded word, so
that text can never become a header either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, Template, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from notifier import mailbytes

DEFAULT_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

# RFC 3834: an acknowledgement is a reply generated automatically; notifications are generated
# automatically but answer nothing. A staff member's reply relayed to the customer is a person's mail
# and is not marked, so the customer's own tools treat it as the human message it is.
AUTO_SUBMITTED = {"customer/ack": "auto-replied", "customer/reply": None, "customer/my_cases": "auto-replied",
                  "customer/help": "auto-replied", "customer/settings": "auto-replied"}
AUTO_SUBMITTED_DEFAULT = "auto-generated"


@dataclass(frozen=True)
class Sender:
    address: str
    name: str
    instance_id: str


@dataclass(frozen=True)
class Rendered:
    data: bytes
    subject: str
    text: str


def make_environment(override_dir: Path | None = None) -> ImmutableSandboxedEnvironment:
    loaders = [FileSystemLoader(str(override_dir))] if override_dir else []
    loaders.append(FileSystemLoader(str(DEFAULT_TEMPLATES)))
    return ImmutableSandboxedEnvironment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # The Renderer looks at the files itself, every TEMPLATE_RECHECK_SECONDS (see there).
        auto_reload=False,
    )


# How long the loaded templates are used before their files are looked at again. Jinja's auto_reload
# looks at a template's file on every use, and at the shared layout's on every `extends`: five stat
# calls a mail, about a tenth of the outbox's rendering time in a burst. An operator's edit of any
# template, layout and parts included, still shows within seconds, without a restart.
TEMPLATE_RECHECK_SECONDS = 2.0


class Renderer:
    """Renders intents; `read_blob` fetches the bytes of files a context names under "attachments"."""

    def __init__(self, env: ImmutableSandboxedEnvironment, sender: Sender,
                 read_blob: Callable[[str], bytes] | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._env = env
        self._sender = sender
        self._read_blob = read_blob
        self._clock = clock
        self._checked = clock()

    def render(self, *, template: str, context: dict[str, Any], recipients: list[str], message_id: str,
               now: datetime) -> Rendered:
        ctx = {**context, "support": {"address": self._sender.address, "name": self._sender.name}}
        subject = " ".join(self._template(f"{template}.subject.j2").render(ctx).split())
        text = self._template(f"{template}.txt.j2").render(ctx)
        html = self._template(f"{template}.html.j2").render(ctx)

        # Our own Message-ID is minted at queueing time and always usable; a mail without it would not
        # match the case entry that records it. A customer's id that cannot be written (not printable
        # ASCII, or longer than a line) is left out of In-Reply-To and References: it threads nothing.
        if not mailbytes.usable_msg_id(message_id):
            raise ValueError(f"cannot write Message-ID {message_id!r}")
        # A relayed staff reply shows the staff member's name ("Alice via Support"), but the address is
        # always ours: replies must come back to the desk, and staff addresses stay private.
        lines = [mailbytes.mailbox("From", context.get("from_name") or self._sender.name, self._sender.address),
                 mailbytes.addresses("To", recipients),
                 mailbytes.unstructured("Subject", subject),
                 mailbytes.unstructured("Date", format_datetime(now)),
                 mailbytes.msg_ids("Message-ID", [message_id])]
        headers = context.get("headers", {})
        if headers.get("in_reply_to"):
            lines.append(mailbytes.msg_ids("In-Reply-To", [headers["in_reply_to"]]))
        if headers.get("references"):
            lines.append(mailbytes.msg_ids("References", headers["references"]))
        if headers.get("reply_to"):
            lines.append(mailbytes.mailbox("Reply-To", self._sender.name, headers["reply_to"]))
        auto = AUTO_SUBMITTED.get(template, AUTO_SUBMITTED_DEFAULT)
        if auto:
            lines.append(mailbytes.unstructured("Auto-Submitted", auto))
        lines.append(mailbytes.unstructured("X-Auto-Response-Suppress", "All"))
        lines.append(mailbytes.unstructured("X-Casemail-Loop", self._sender.instance_id))
        files = [self._attachment(a) for a in context.get("attachments") or ()]
        return Rendered(data=mailbytes.message(lines, text, html, files), subject=subject, text=text)

    def _template(self, name: str) -> Template:
        now = self._clock()
        if now - self._checked >= TEMPLATE_RECHECK_SECONDS:
            self._checked = now
            cache = self._env.cache
            if cache is not None and not all(t.is_up_to_date for t in list(cache.values())):
                # Everything is loaded again: a part or the layout may have changed under a template
                # that did not.
                cache.clear()
        return self._env.get_template(name)

    def _attachment(self, a: dict[str, Any]) -> bytes:
        if self._read_blob is None:
            raise RuntimeError("this mail carries attachments but the renderer has no blob store")
        maintype, _, subtype = (a.get("type") or "").partition("/")
        if not maintype or not subtype or maintype in ("multipart", "message"):
            maintype, subtype = "application", "octet-stream"
        return mailbytes.attachment_part(self._read_blob(a["sha256"]), maintype, subtype, a["filename"])
