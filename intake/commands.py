# SPDX-License-Identifier: GPL-3.0-or-later
"""Commands on the first lines of a mail, and the short replies that mean "close" or "thanks" (pure).

A staff member runs the desk from their mail client by starting a mail with command lines:

    #severity 1
    #assign bob@staff.example
    The customer's database is down; Bob takes over.

Command lines are read from the top of what the person wrote (quotes and signature already removed);
blank lines between them are allowed, and the first other line starts the comment, which is the rest
of the mail. A line that looks like a command but is not one is refused with the reason, never
silently taken as text: a typo in "#clsoe" must not become a public reply to the customer.

Whether a command may run (is the sender staff, is the case open, is the address a colleague) is not
decided here but in `judge()`, from a snapshot of the case, so that it stays a pure function too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import getaddresses

# The commands and the aliases they may be written as.
NAMES = ("close", "severity", "product", "version", "assign", "cc", "uncc", "note")
ALIASES = {"internal": "note", "private": "note", "sev": "severity", "priority": "severity"}
# What a customer may do by command: close their own case.
CUSTOMER_COMMANDS = frozenset({"close"})
MAX_FIELD = 100

_COMMAND_RE = re.compile(r"^#(?P<name>[A-Za-z][A-Za-z_-]*)(?:[ \t:]+(?P<arg>.*))?$")
_SEVERITY_RE = re.compile(r"^(?:s|sev|p)?\s*(?P<n>[1-4])$", re.I)
_ADDRESS_RE = re.compile(r"^[^@\s<>(),;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")


@dataclass(frozen=True)
class Command:
    name: str                   # one of NAMES
    value: str | int | None     # severity as int, an address or text, or None
    line: str                   # the line as written, for the confirmation


@dataclass(frozen=True)
class Refusal:
    line: str
    reason: str


@dataclass(frozen=True)
class CommandMail:
    commands: tuple[Command, ...] = ()
    refused: tuple[Refusal, ...] = ()
    comment: str = ""

    @property
    def any(self) -> bool:
        return bool(self.commands or self.refused)

    def has(self, name: str) -> bool:
        return any(c.name == name for c in self.commands)


def parse_commands(text: str) -> CommandMail:
    """Split a mail's visible text into its command lines and the comment after them."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands: list[Command] = []
    refused: list[Refusal] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        m = _COMMAND_RE.match(line)
        if m is None:
            break
        i += 1
        raw_name = m.group("name").lower()
        name = ALIASES.get(raw_name, raw_name)
        arg = (m.group("arg") or "").strip()
        if name not in NAMES:
            refused.append(Refusal(line, f"there is no command #{raw_name}"))
            continue
        if name == "note" and arg:
            # "#note the customer called" is a note whose text starts on the command line.
            commands.append(Command("note", None, "#" + raw_name))
            lines.insert(i, arg)
            break
        result = _read(name, arg, line)
        if isinstance(result, Refusal):
            refused.append(result)
        else:
            commands.append(result)
    comment = "\n".join(lines[i:]).strip("\n")
    return CommandMail(tuple(commands), tuple(refused), comment.strip() and comment)


def _read(name: str, arg: str, line: str) -> Command | Refusal:
    if name in ("close", "note"):
        return Command(name, None, line) if not arg else Refusal(line, f"#{name} takes nothing after it")
    if not arg:
        return Refusal(line, f"#{name} needs {_WANTS[name]}")
    if name == "severity":
        m = _SEVERITY_RE.match(arg)
        if m is None:
            return Refusal(line, "severity must be a number from 1 (critical) to 4 (minimal)")
        return Command(name, int(m.group("n")), line)
    if name in ("product", "version"):
        if len(arg) > MAX_FIELD:
            return Refusal(line, f"a {name} is at most {MAX_FIELD} characters")
        if any(unicodedata.category(ch).startswith("C") for ch in arg):
            return Refusal(line, f"the {name} contains control characters")
        return Command(name, arg, line)
    if name == "assign" and arg.lower() == "me":
        return Command(name, "me", line)
    address = parse_address(arg)
    if address is None:
        return Refusal(line, f"{arg!r} is not a mail address")
    return Command(name, address, line)


_WANTS = {"severity": "a number from 1 to 4", "product": "a product name", "version": "a version",
          "assign": "a staff address (or \"me\")", "cc": "a mail address", "uncc": "a mail address"}


def parse_address(text: str) -> str | None:
    """A single mail address from "a@b.c", "<a@b.c>" or "Name <a@b.c>"; None for anything else."""
    found = getaddresses([text])
    if len(found) != 1:
        return None
    address = found[0][1].strip()
    return address if _ADDRESS_RE.match(address) else None


@dataclass(frozen=True)
class CaseState:
    """What judging a command needs to know about a case, updated as each command is carried out."""

    status: str
    severity: int
    product: str | None
    version: str | None
    requester: str                       # address key
    cc: frozenset[str] = frozenset()     # address keys of the people copied on the case
    assignee: str | None = None          # address key
    ours: frozenset[str] = frozenset()   # our own support addresses (keys)
    is_staff_address: Callable[[str], bool] = field(default=lambda a: False, compare=False)


def judge(cmd: Command, state: CaseState, *, sender: str, is_staff: bool) -> str | None:
    """Why a command may not run on a case in this state, or None when it may.

    `sender` is the address key of the mail's author.
    """
    if not is_staff and cmd.name not in CUSTOMER_COMMANDS:
        return f"only staff may use #{cmd.name}"
    if not is_staff and cmd.name == "close" and sender != state.requester:
        return "only the person who opened the case may close it"
    if cmd.name == "close":
        return "the case is already closed" if state.status == "closed" else None
    if cmd.name == "severity":
        return f"the severity already is {cmd.value}" if cmd.value == state.severity else None
    if cmd.name in ("product", "version"):
        return f"the {cmd.name} already is {cmd.value}" if cmd.value == getattr(state, cmd.name) else None
    if cmd.name == "note":
        return None
    target = sender if cmd.value == "me" else str(cmd.value).lower()
    if target in state.ours:
        return "that is the support address itself"
    if cmd.name == "assign":
        if not state.is_staff_address(target):
            return f"{target} is not a staff address"
        return f"the case is already assigned to {target}" if target == state.assignee else None
    if cmd.name == "cc":
        if state.is_staff_address(target):
            return "staff follow cases as staff or as the assignee, not as copied people"
        if target == state.requester:
            return f"{target} opened the case and gets its mail anyway"
        return f"{target} is already copied on the case" if target in state.cc else None
    if cmd.name == "uncc":
        if target == state.requester:
            return "the person who opened the case cannot be removed from it"
        return None if target in state.cc else f"{target} is not copied on the case"
    return f"there is no command #{cmd.name}"


def after(cmd: Command, state: CaseState, *, sender: str) -> CaseState:
    """The case state once a command judged runnable has run (for judging the next one)."""
    from dataclasses import replace

    target = sender if cmd.value == "me" else str(cmd.value).lower() if cmd.value is not None else ""
    if cmd.name == "close":
        return replace(state, status="closed")
    if cmd.name == "severity":
        return replace(state, severity=int(cmd.value or 0))
    if cmd.name in ("product", "version"):
        return replace(state, **{cmd.name: str(cmd.value)})
    if cmd.name == "assign":
        return replace(state, assignee=target)
    if cmd.name == "cc":
        return replace(state, cc=state.cc | {target})
    if cmd.name == "uncc":
        return replace(state, cc=state.cc - {target})
    return state


_PUNCT_RE = re.compile(r"[\s.!,;:)(\-~*_'\"]+")


# Longer than this, a text is not a close word: "please close" with punctuation between and around.
# Looking no further spares lowering and rewriting the whole of every mail's text.
_MAX_CLOSE_CHARS = 200


def is_close_word(text: str) -> bool:
    """Whether a reply's whole text is the word "close" (the customer's short way to close a case)."""
    text = text.strip()
    if len(text) > _MAX_CLOSE_CHARS:
        return False
    return _PUNCT_RE.sub(" ", text.lower()).strip() in ("close", "please close", "close please")


# A reply after a case is closed that only says thanks is kept on the case and answered by nothing.
# It is recognised by its words: every word must be a polite one, at least one must be a thanks, and
# the whole is short and asks nothing. Anything else is a new matter and opens a new case.
THANKS_WORDS = frozenset("""
    thanks thank thx thnx tnx ty tyvm cheers danke dank dankeschön merci gracias grazie obrigado obrigada
    bedankt tack takk tak kiitos dziękuję dzięki спасибо 谢谢 ありがとう ありがとうございます gracies
    """.split())
POLITE_WORDS = THANKS_WORDS | frozenset("""
    you u very much so many lot lots a again all for the your help great ok okay k fine perfect
    awesome super cool nice good excellent wonderful brilliant appreciated appreciate it that's thats
    works worked working now solved fixed resolved kind regards best bye cheers have day weekend nice
    vielen herzlichen schön sehr für ihre deine die hilfe gut alles beaucoup bien à vous pour votre aide
    muchas mil por su tu ayuda perfecto mille molte mille tante and 🙂 😊 👍 🙏 :) :-) much!
    again! mate guys team folks sir madam indeed really truly
    """.split())
MAX_THANKS_CHARS = 80
MAX_THANKS_WORDS = 10


def is_thanks_only(text: str) -> bool:
    """Whether a reply only says thanks: short, asks nothing, and made only of polite words."""
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_THANKS_CHARS or "?" in stripped or "\uff1f" in stripped:
        return False
    words = [w for w in re.split(r"[\s.!,;:()\-~*_\"]+", stripped.lower()) if w]
    if not words or len(words) > MAX_THANKS_WORDS:
        return False
    return all(w in POLITE_WORDS for w in words) and any(w in THANKS_WORDS for w in words)
