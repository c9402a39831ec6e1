# SPDX-License-Identifier: GPL-3.0-or-later
"""Mail that asks the desk something rather than opening a case (pure).

The old support portal's pages become subjects: "my cases" (optionally followed by open, closed or
all, and/or "search WORDS") lists the sender's cases, "help" says what can be done by mail, and
"settings" changes the sender's display name and notification preference from lines in the body.

The grammar is strict on purpose: a subject such as "My cases are not shown" is a problem report and
must open a case, so only the exact forms below are requests. Reply prefixes ("Re:", "AW:") are
ignored, as is letter case.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from intake.commands import Refusal
from store.codes import clean_subject

STATUSES = ("open", "closed", "all")
NOTIFY = ("every", "digest", "replies")
MAX_NAME = 200


@dataclass(frozen=True)
class Request:
    kind: str                   # "my-cases" | "help" | "settings"
    status: str = "open"        # for my-cases: which cases
    search: str = ""            # for my-cases: words that must all appear in the subject


def parse_request(subject: str) -> Request | None:
    """The request a subject makes, or None when the mail is not a request."""
    text = " ".join(clean_subject(subject).lower().split()).strip(" .!")
    if text in ("help", "hilfe", "aide", "ayuda", "?"):
        return Request("help")
    if text in ("settings", "setting", "my settings", "profile", "my profile"):
        return Request("settings")
    if not text.startswith("my cases"):
        return None
    words = text[len("my cases"):].strip(" :-,").split()
    status = "open"
    if words and words[0].strip(",;:") in STATUSES:
        status = words.pop(0).strip(",;:")
    if not words:
        return Request("my-cases", status)
    if words[0] not in ("search", "search:"):
        return None
    return Request("my-cases", status, " ".join(words[1:]))


@dataclass(frozen=True)
class SettingsChange:
    name: str | None = None
    notify: str | None = None
    done: tuple[str, ...] = ()
    refused: tuple[Refusal, ...] = ()


_SETTING_RE = re.compile(r"^(?P<key>[A-Za-z][A-Za-z _-]*?)\s*[:=]\s*(?P<value>.*)$")
_KEYS = {"name": "name", "display name": "name", "display-name": "name", "notify": "notify",
         "notifications": "notify", "notification": "notify"}


def parse_settings(text: str) -> SettingsChange:
    """Read "name: New Name" and "notify: every|digest|replies" lines from a settings mail's body.

    Lines without a colon are taken as greetings and skipped; a line with an unknown key or a bad value
    is refused with the reason, so the confirmation can say what was not changed.
    """
    name: str | None = None
    notify: str | None = None
    done: list[str] = []
    refused: list[Refusal] = []
    for raw in text.replace("\r", "\n").split("\n"):
        line = raw.strip()
        m = _SETTING_RE.match(line)
        if m is None:
            continue
        key = _KEYS.get(" ".join(m.group("key").lower().split()))
        value = " ".join(m.group("value").split())
        if key is None:
            refused.append(Refusal(line, f"there is no setting {m.group('key').strip()!r} (name, notify)"))
        elif key == "name":
            if not value:
                refused.append(Refusal(line, "the name is empty"))
            elif len(value) > MAX_NAME:
                refused.append(Refusal(line, f"a name is at most {MAX_NAME} characters"))
            elif any(unicodedata.category(ch).startswith("C") for ch in value):
                refused.append(Refusal(line, "the name contains control characters"))
            else:
                name = value
                done.append(line)
        else:
            choice = value.lower()
            if choice not in NOTIFY:
                refused.append(Refusal(line, "notify must be every, digest or replies"))
            else:
                notify = choice
                done.append(line)
    return SettingsChange(name, notify, tuple(done), tuple(refused))
