# SPDX-License-Identifier: GPL-3.0-or-later
"""Finding the signature block at the end of a reply.

The heuristic is deliberately conservative: cutting a signature that was not
one loses what the customer wrote, while leaving a signature in place only
costs a few lines on the case.  A block is cut when one of these holds:

* a ``-- `` delimiter line (RFC 3676 section 4.3) or a bare ``--``, followed
  by a short block;
* a line of dashes or underscores followed by a short block that carries
  contact details (a phone number, a URL, an address), as corporate
  signatures do;
* a line of underscores followed by at most four lines;
* a trailing run of mobile or webmail sign-offs ("Sent from my iPhone", "Von
  meinem iPhone gesendet", "Get Outlook for Android", "Sent with Sparrow"),
  together with a name line directly above it ("Jane Doe / via mobile").

Closing formulas ("Thanks, Alex", "Mit freundlichen Grüßen") are not cut:
they are part of what the person wrote, and a reader expects to see them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["is_mobile_signoff", "is_signature_delimiter", "signature_start", "split_signature"]

# How many non-blank lines a signature may have.  Longer tails are more likely
# to be text the person wrote after a stray "--".
_MAX_SIGNATURE_LINES = 15
_MAX_SIGNATURE_LINE_LENGTH = 100

_DELIMITER = re.compile(r"^--\s*$")
_RULE = re.compile(r"^\s*(?:-{2,}|_{2,}|={4,}|\*{4,})\s*$")
_CONTACT = re.compile(
    r"(?:https?://|www\.|\b[\w.+-]+@[\w-]+\.[\w.]+\b|\+?\d[\d ()./-]{6,}\d|\b(?:tel|phone|fax|mobile|mob|cell|skype|"
    r"t|f|m|p)\s*[.:])",
    re.IGNORECASE,
)

# Sign-offs that mail clients on phones and webmail services append by
# themselves, in the languages those clients ship.
_MOBILE = re.compile(
    r"^\s*[(<\[]*\s*(?:"
    r"sent (?:from|with|via|using|on|by) (?:my |a |the |our )?(?:mobile|phone|cell|tablet|handheld|iphone|ipad|ipod|"
    r"android|blackberry|samsung|galaxy|htc|nokia|motorola|xiaomi|huawei|pixel|windows|outlook|\[?mail\b|mailbox|"
    r"yahoo|gmail|aol|proton|airmail|spark|sparrow|newton|bluemail|edison|superhuman|hey|icloud|k-9|"
    r"samsung|ti-\d+|alcatel|\S+ (?:phone|mobile|device))\S*.{0,100}|"
    r"sent from my \S.{0,100}|get (?:\[)?outlook for \S.{0,60}|"
    r"sent on the go.{0,40}|(?:\w+ )?from (?:my )?(?:mobile|iphone|ipad|phone|android)\b.{0,20}|"
    r"(?:sent )?via mobile|von meinem \S.{0,40} gesendet|gesendet von meinem \S.{0,40}|"
    r"gesendet (?:mit|von) \S.{0,40}|diese nachricht wurde von meinem \S.{0,60} gesendet\.?|"
    r"envoyé (?:de|depuis) (?:mon |ma )?\S.{0,40}|enviado (?:desde|de|do) (?:mi |meu |o )?\S.{0,40}|"
    r"inviato da(?:l mio)? \S.{0,40}|verzonden (?:vanaf|met|van) (?:mijn )?\S.{0,40}|"
    r"verstuurd (?:vanaf|met|van) (?:mijn )?\S.{0,40}|wysłane z (?:mojego )?\S.{0,40}|"
    r"skickat från (?:min )?\S.{0,40}|sendt fra (?:min )?\S.{0,40}|lähetetty \S.{0,40}(?:sta|stä|lla|llä)|"
    r"отправлено (?:с|из) \S.{0,40}|надіслано (?:з|із) \S.{0,40}|odesláno z \S.{0,40}|"
    r"iPhoneから送信|从我的\s?\S{0,20}\s?发送|從我的\s?\S{0,20}\s?傳送|發自我的\s?\S{0,20}"
    r")\s*[)>\]]*\s*$",
    re.IGNORECASE,
)

_NAME = re.compile(r"^\s*[^\W\d_][\w.'’-]*(?:\s+[^\W\d_][\w.'’-]*){0,3}\s*$")
_UNDERSCORES = re.compile(r"^\s*_{5,}\s*$")
# A rule followed by a signature without contact details stays short.
_MAX_BARE_RULE_SIGNATURE_LINES = 4


def is_signature_delimiter(line: str) -> bool:
    """Whether the line is the conventional ``-- `` signature delimiter."""
    return bool(_DELIMITER.match(line))


def is_mobile_signoff(line: str) -> bool:
    """Whether the line is a sign-off a phone or webmail client appends."""
    return bool(_MOBILE.match(line))


def split_signature(text: str) -> tuple[str, str | None]:
    """Split a reply into (body, signature); the signature is None when none was recognised.

    >>> split_signature("Works now.\\n\\n-- \\nJane Doe\\nACME Support")
    ('Works now.', 'Jane Doe\\nACME Support')
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = signature_start(lines)
    if start is None:
        return text, None
    # The "-- " delimiter only announces the signature; it is part of neither half.
    skip = 1 if is_signature_delimiter(lines[start]) else 0
    body = "\n".join(lines[:start]).rstrip()
    signature = "\n".join(lines[start + skip :]).strip("\n")
    if not signature.strip():
        return body, None
    return body, signature


def signature_start(lines: Sequence[str]) -> int | None:
    """Index of the line where the signature block starts, delimiter included; None when none.

    A block is only taken when something was written above it: a message
    that is nothing but a signature is still a message.
    """
    content = [index for index, line in enumerate(lines) if line.strip()]
    if len(content) < 2:
        return None
    for index in content[1:]:
        line = lines[index]
        if is_signature_delimiter(line) and _short_tail(lines, index + 1):
            return index
        if _RULE.match(line) and _short_tail(lines, index + 1):
            if _has_contact(lines, index + 1) or (
                _UNDERSCORES.match(line) and _tail_size(lines, index + 1) <= _MAX_BARE_RULE_SIGNATURE_LINES
            ):
                return index
    return _mobile_start(lines, content)


def _mobile_start(lines: Sequence[str], content: Sequence[int]) -> int | None:
    """Start of a trailing run of mobile sign-offs, with a name line directly above it."""
    position = len(content)
    while position > 1 and is_mobile_signoff(lines[content[position - 1]]):
        position -= 1
    if position == len(content):
        return None
    start = content[position]
    above = content[position - 1]
    # "Jane Doe\nvia mobile": the name directly above belongs to the sign-off.
    if above == start - 1 and position > 1 and _NAME.match(lines[above]) and len(lines[above].strip()) <= 40:
        return above
    return start


def _tail_size(lines: Sequence[str], start: int) -> int:
    return sum(1 for line in lines[start:] if line.strip())


def _short_tail(lines: Sequence[str], start: int) -> bool:
    tail = [line for line in lines[start:] if line.strip()]
    return 0 < len(tail) <= _MAX_SIGNATURE_LINES and all(len(line) <= _MAX_SIGNATURE_LINE_LENGTH for line in tail)


def _has_contact(lines: Sequence[str], start: int) -> bool:
    return any(_CONTACT.search(line) for line in lines[start:])
