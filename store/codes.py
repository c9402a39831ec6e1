# SPDX-License-Identifier: GPL-3.0-or-later
"""Every code casemail writes into mail and later reads back: one module, both directions.

The notifier writes case numbers, subject tags, Message-IDs, reply addresses and footer
tokens; intake reads them. Keeping both directions here means a format can never drift
between the writer and the reader. Everything is pure: no I/O, no clock, no randomness (the
caller supplies the random ``unique`` part of a Message-ID).

Case numbers
    Positive integers below ``10 ** CASE_NUMBER_WIDTH``, written zero-padded to
    ``CASE_NUMBER_WIDTH`` digits (``1 -> "00000001"``).

Subject tags (decisions)
    * We write ``[Case #00000001]``. We read any spelling of "case" followed by a number of
      one to ``CASE_NUMBER_WIDTH`` digits (ASCII or full-width), provided the tag is either
      enclosed in brackets (``[]``, ``()``, ``【】``, ``［］``, ``（）``, ``〔〕``, ``〖〗``)
      or carries a ``#`` (``Case#123``, ``case #123:``). Running prose such as "case 123"
      or "Invoice 123" is therefore not a tag: with neither brackets nor ``#`` the number is
      too likely to be something else.
    * A run of more than ``CASE_NUMBER_WIDTH`` digits is never a case number, even if it
      starts with zeros; we never write one, so it is somebody else's number. Leading zeros
      are otherwise ignored, and the number 0 is never a case.
    * A subject may name several cases; ``find_case_numbers`` returns each distinct number
      once, in order of appearance, and the caller refuses to guess.
    * The tag is a hint for threading and a display, never proof (see ``Signer``).

Subject cleaning (decisions)
    * Reply/forward prefixes are stripped only from the start of the subject, where they
      may be stacked and interleaved with our tags: ``"Re: RE: AW: Sv: [Case #12] Fwd:
      printer"`` becomes ``"printer"``. A prefix word later in the subject is text and stays.
    * A bracketed tag anywhere is removed. A bare ``Case #12`` at the start is removed with
      a following colon or dash; later in the subject it is rewritten to ``Case 12``, which
      keeps the sentence readable but is no longer a tag. So the cleaned subject never
      contains a tag, and a title reused in an outgoing subject never makes replies
      ambiguous between two cases. Removing text can bring new tags or prefixes together,
      so cleaning repeats until nothing changes.
    * A colon or a lone dash left at the start separates nothing and is removed too.
    * The old Mozilla forward wrapper ``[Fwd: subject]`` is unwrapped.
    * Whitespace (including ideographic space) is collapsed to single spaces.

Signed tokens
    See ``Signer``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CASE_NUMBER_WIDTH",
    "Signer",
    "TokenCheck",
    "clean_subject",
    "find_case_numbers",
    "format_case_number",
    "format_tag",
    "tag_subject",
]

CASE_NUMBER_WIDTH: int = 8

_MAX_CASE = 10**CASE_NUMBER_WIDTH - 1
_NO_SUBJECT = "(no subject)"

# Full-width digits are accepted because CJK input methods produce them; int() reads them.
_DIGIT = "[0-9\uff10-\uff19]"


def _number(group: str) -> str:
    return rf"(?P<{group}>{_DIGIT}{{1,{CASE_NUMBER_WIDTH}}})(?!{_DIGIT})"


_OPEN = "[\\[(\u3010\uff3b\uff08\u3014\u3016]"
_CLOSE = "[\\])\u3011\uff3d\uff09\u3015\u3017]"
_HASH = "[#\uff03]"


def _bracketed(group: str) -> str:
    # The brackets make it a tag, so "#" (or a colon) is optional inside them.
    return rf"{_OPEN}\s*case\s*(?:{_HASH}|[:\uff1a])?\s*{_number(group)}\s*{_CLOSE}"


def _bare(word: str, group: str) -> str:
    # A bare tag needs "#". The look-behind is ASCII-only so that "Showcase #1" is not a
    # tag while CJK text running straight into "Case #1" still is; the look-ahead keeps
    # "Case #12abc" (somebody's reference code) from being read as case 12.
    return rf"(?<![A-Za-z0-9_])(?P<{word}>case)\s*{_HASH}\s*{_number(group)}(?![A-Za-z_])"


_TAG_RE = re.compile(rf"(?P<bracketed>{_bracketed('num')})|{_bare('word', 'bnum')}", re.I)
_LEADING_TAG_RE = re.compile(
    rf"(?:{_bracketed('num')}|{_bare('word', 'bnum')})"
    r"(?:\s*[:\uff1a]|\s+[-\u2013\u2014](?=\s|$))?",
    re.I,
)

# Reply and forward prefixes seen in the wild, by language. Matching is case-insensitive,
# so "RE", "Re" and "re" are one entry. A prefix counts only when a colon follows it (after
# an optional counter), so "Reference: x" and "Re printer" are left alone.
_PREFIX_WORDS = (
    # English, and the universal "Fwd"/"Fw".
    "re", "fwd", "fw",
    # German (Antwort, Weitergeleitet), Dutch (Antwoord, Doorsturen).
    "aw", "wg", "antw", "doorst",
    # Scandinavian and Finnish (Svar, Videresendt, Vidarebefordrat, Vastaus, Välitetty).
    "sv", "vs", "vb", "vl",
    # French (Transféré, Réf), Italian (R, Rif, I for Inoltrato), Spanish and Portuguese
    # (RV for Reenviado, Res for Resposta, Enc for Encaminhado).
    "tr", "réf", "ref", "rif", "r", "i", "rv", "res", "enc", "ant",
    # Polish (Odpowiedź, Przekaż dalej), Czech (Odpověď), Hungarian (Válasz, Továbbítás).
    "odp", "pd", "vá", "továbbítás",
    # Turkish (Yanıt, İlet), Greek, Russian, Hebrew, Arabic.
    "ynt", "ilt", "απ", "σχετ", "πρθ", "отв", "ответ", "пересл", "הועבר", "השב", "رد",
    # Chinese (simplified and traditional), Japanese, Korean.
    "回复", "答复", "回覆", "转发", "轉寄", "轉發", "返信", "転送", "답장", "전달",
)
_PREFIX_ALTERNATION = "|".join(
    re.escape(word) for word in sorted(_PREFIX_WORDS, key=len, reverse=True)
)
# The counters "Re[2]:", "Re(2):" and "Re^2:" and the French "RE :" with a space.
_PREFIX_RE = re.compile(
    rf"(?:{_PREFIX_ALTERNATION})\s*(?:[\[(]\s*\d+\s*[\])]|\^\d+)?\s*[:\uff1a]", re.I
)
# A colon or a lone dash left at the start, as in "Re: : x" or a subject of just ":",
# separates nothing. Stripping it keeps tag_subject idempotent: "[Case #1] : x" would
# otherwise lose its colon only on the second pass.
_LEADING_SEPARATOR_RE = re.compile(r"[:\uff1a]|[-\u2013\u2014](?=\s|$)")
_MOZILLA_FORWARD_RE = re.compile(r"^\[\s*fwd?\s*:\s*(?P<inner>.*)\]$", re.I | re.S)


def _check_case_number(number: int) -> None:
    if isinstance(number, bool) or not isinstance(number, int):
        raise TypeError(f"a case number must be an int, not {type(number).__name__}")
    if not 1 <= number <= _MAX_CASE:
        raise ValueError(f"case number {number} is outside 1..{_MAX_CASE}")


def format_case_number(number: int) -> str:
    """Write a case number zero-padded to CASE_NUMBER_WIDTH digits.

    >>> format_case_number(1)
    '00000001'
    """
    _check_case_number(number)
    return f"{number:0{CASE_NUMBER_WIDTH}d}"


def format_tag(number: int) -> str:
    """Write the subject tag for a case.

    >>> format_tag(1)
    '[Case #00000001]'
    """
    return f"[Case #{format_case_number(number)}]"


def _match_number(match: re.Match[str]) -> int:
    digits = match.group("num") if match.group("bracketed") else match.group("bnum")
    return int(digits)


def find_case_numbers(subject: str) -> tuple[int, ...]:
    """Return every distinct case number tagged in a subject, in order of appearance.

    >>> find_case_numbers("Re: AW: [Case #00000012] printer, see also case#7")
    (12, 7)
    >>> find_case_numbers("Invoice 123")
    ()
    """
    found: dict[int, None] = {}
    for match in _TAG_RE.finditer(subject):
        number = _match_number(match)
        if number:
            found.setdefault(number, None)
    return tuple(found)


def _strip_leading(subject: str) -> str:
    # Prefixes and our tags are removed together, in any order, only while they stay at
    # the start: "Re: [Case #1] Fwd: x" is one stack, "x Re: y" keeps its "Re:".
    while True:
        subject = subject.lstrip()
        match = (
            _PREFIX_RE.match(subject)
            or _LEADING_SEPARATOR_RE.match(subject)
            or _LEADING_TAG_RE.match(subject)
        )
        if match is None:
            return subject
        if match.re is _LEADING_TAG_RE and not _valid_tag_at_start(match.group(0)):
            return subject
        subject = subject[match.end():]


def _valid_tag_at_start(text: str) -> bool:
    # "[Case #0]" is not one of ours, so it stays in the subject like any other text.
    return any(find_case_numbers(text))


def _scrub_tag(match: re.Match[str]) -> str:
    if not _match_number(match):
        return match.group(0)
    if match.group("bracketed"):
        return " "
    # A bare tag inside the sentence loses its "#": still readable, no longer a tag.
    return f"{match.group('word')} {match.group('bnum')}"


def _clean_once(subject: str) -> str:
    subject = _strip_leading(subject)
    wrapped = _MOZILLA_FORWARD_RE.match(subject)
    if wrapped is not None:
        subject = wrapped.group("inner")
    subject = _TAG_RE.sub(_scrub_tag, subject)
    return " ".join(subject.split())


def clean_subject(subject: str) -> str:
    """Return the subject without reply/forward prefixes and without our case tags.

    The result is used as a case's title and for display. See the module docstring for
    what is stripped where.

    >>> clean_subject("Re: RE: AW: Sv: [Case #12] Fwd:  printer")
    'printer'
    """
    # Every change shortens the text or removes a "#", so this loop ends; it runs until a
    # pass changes nothing, which is what guarantees that no tag is left.
    current = " ".join(subject.split())
    while True:
        cleaned = _clean_once(current)
        if cleaned == current:
            return cleaned
        current = cleaned


def tag_subject(number: int, subject: str) -> str:
    """Return the subject we send for a case: our tag, then the cleaned subject.

    >>> tag_subject(1, "Re: [Case #00000001] printer")
    '[Case #00000001] printer'
    >>> tag_subject(1, "")
    '[Case #00000001] (no subject)'
    """
    return f"{format_tag(number)} {clean_subject(subject) or _NO_SUBJECT}"


@dataclass(frozen=True)
class TokenCheck:
    """What a signed token said: which case, whether the signature verified, which address."""

    case_number: int
    # False when the shape is ours but the signature does not verify: a forgery, a damaged
    # token, or one signed with a key we no longer hold.
    valid: bool
    # True for the internal-note reply address.
    note: bool = False


# Base32 of the first ten HMAC bytes, cut to ten characters: 50 bits. A forger cannot test
# guesses offline (the key never leaves us), so each guess costs a mail we receive and
# rate-limit; a million guesses succeed with probability 1e6 / 2**50, about one in a
# billion. Ten characters also keep "support+00000001.<sig>.note" far below the 64-octet
# limit RFC 5321 places on a local part.
_SIG_CHARS = 10
_SIG_BYTES = 10
_MID_RE = re.compile(
    rf"^cm\.(?P<num>[0-9]{{{CASE_NUMBER_WIDTH}}})\.(?P<unique>[a-z0-9]+)\.(?P<sig>[a-z0-9]+)@(?P<domain>[^@<>\s]+)$"
)
_REPLY_TOKEN_RE = re.compile(
    rf"^(?P<num>[0-9]{{{CASE_NUMBER_WIDTH}}})\.(?P<sig>[a-z0-9]+)(?P<note>\.note)?$"
)
# Tolerant of what happens to a footer on its way back: quoting ("> "), a line wrapped
# inside the token by the replier's client, and typographic dashes.
_FOOTER_RE = re.compile(
    rf"\[[\s>]*ref[\s>]*:[\s>]*(?P<num>[0-9]{{{CASE_NUMBER_WIDTH}}})[\s>]*"
    r"[-\u2010\u2011\u2013][\s>]*(?P<sig>[a-z0-9]+)[\s>]*\]",
    re.I,
)
_UNIQUE_RE = re.compile(r"^[A-Za-z0-9]+$")
_DOMAIN_RE = re.compile(r"^[^@<>\s]+$")


class Signer:
    """Mints and reads the HMAC-signed tokens that prove a mail answers one of ours.

    Each kind of token is signed over a purpose label (``message-id``, ``reply``,
    ``note``, ``footer``), so a signature taken from one place cannot be pasted into
    another; in particular a public reply address cannot be turned into a note address.
    Mail servers and clients sometimes change the case of local parts and Message-IDs, so
    the signed text and the signature are both lower case and reading lower-cases its
    input first: ``CM.00000001...`` still verifies.
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or not key:
            raise ValueError("the signing key must be non-empty bytes")
        self._key = key

    def __repr__(self) -> str:
        # Never show the key in logs or tracebacks.
        return "Signer(<key hidden>)"

    def _sign(self, purpose: str, payload: str) -> str:
        message = f"casemail/v1/{purpose}/{payload}".lower().encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.b32encode(digest[:_SIG_BYTES]).decode("ascii").lower()[:_SIG_CHARS]

    def _verify(self, purpose: str, payload: str, signature: str) -> bool:
        expected = self._sign(purpose, payload)
        return hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii"))

    def mint_message_id(self, case_number: int, unique: str, domain: str) -> str:
        """Return a signed Message-ID for a mail about a case, angle brackets included.

        ``unique`` is a caller-supplied random string of ASCII letters and digits.
        """
        number = format_case_number(case_number)
        if not _UNIQUE_RE.match(unique):
            raise ValueError("unique must be ASCII letters and digits")
        if not _DOMAIN_RE.match(domain):
            raise ValueError(f"not a usable Message-ID domain: {domain!r}")
        sig = self._sign("message-id", f"{number}.{unique}")
        return f"<cm.{number}.{unique}.{sig}@{domain}>"

    def read_message_id(self, message_id: str) -> TokenCheck | None:
        """Read a Message-ID; None unless it has the shape of one we mint.

        Angle brackets are optional and case is ignored. The domain is not checked: the
        signature is what proves the Message-ID is ours.
        """
        text = message_id.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1].strip()
        match = _MID_RE.match(text.lower())
        if match is None or not _ascii_only(text):
            return None
        number = int(match.group("num"))
        if not number:
            return None
        payload = f"{match.group('num')}.{match.group('unique')}"
        return TokenCheck(number, self._verify("message-id", payload, match.group("sig")))

    def reply_address(self, case_number: int, support_address: str, *, note: bool = False) -> str:
        """Return the signed plus-address for replies to a case (or its internal notes).

        >>> Signer(b"k").reply_address(1, "support@example.com").startswith("support+00000001.")
        True
        """
        number = format_case_number(case_number)
        local, domain = _split_address(support_address)
        if not local or not domain:
            raise ValueError(f"not a usable support address: {support_address!r}")
        purpose = "note" if note else "reply"
        suffix = ".note" if note else ""
        return f"{local}+{number}.{self._sign(purpose, number)}{suffix}@{domain}"

    def read_reply_address(self, address: str, support_addresses: Iterable[str]) -> TokenCheck | None:
        """Read a recipient address; None unless it is a plus-address token of one of ours.

        The local part and domain of the support address match case-insensitively.
        """
        text = address.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1].strip()
        local, domain = _split_address(text.lower())
        for support in support_addresses:
            s_local, s_domain = _split_address(support.strip().lower())
            if not s_local or domain != s_domain or not local.startswith(s_local + "+"):
                continue
            match = _REPLY_TOKEN_RE.match(local[len(s_local) + 1:])
            if match is None or not _ascii_only(local):
                continue
            number = int(match.group("num"))
            if not number:
                continue
            note = match.group("note") is not None
            purpose = "note" if note else "reply"
            valid = self._verify(purpose, match.group("num"), match.group("sig"))
            return TokenCheck(number, valid, note=note)
        return None

    def footer_token(self, case_number: int) -> str:
        """Return the token we print in the footer of our mails, e.g. ``[ref:00000001-<sig>]``.

        Square brackets, a colon, digits and lower-case letters pass through HTML-to-text
        conversion and quoting unchanged, and Exchange cannot rewrite a body the way it
        rewrites Message-IDs.
        """
        number = format_case_number(case_number)
        return f"[ref:{number}-{self._sign('footer', number)}]"

    def find_footer_tokens(self, text: str) -> tuple[TokenCheck, ...]:
        """Return each distinct footer token found in a text, in order of appearance.

        Quoted history repeats the same token, so duplicates are dropped.
        """
        found: dict[TokenCheck, None] = {}
        for match in _FOOTER_RE.finditer(text):
            sig = match.group("sig")
            if not _ascii_only(sig):
                continue
            number = int(match.group("num"))
            if not number:
                continue
            check = TokenCheck(number, self._verify("footer", match.group("num"), sig))
            found.setdefault(check, None)
        return tuple(found)


def _split_address(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    if not at:
        return "", ""
    return local, domain


def _ascii_only(text: str) -> bool:
    # re.I lets "K" (Kelvin sign) and similar match ASCII letters; a signature is ASCII.
    return text.isascii()
