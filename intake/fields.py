# SPDX-License-Identifier: GPL-3.0-or-later
"""Case fields from the first mail of a case: product, version, severity, production down.

Pure: the caller passes the subject, the visible text and the decoded headers.

Decisions
    * Severity runs from 1 (critical) to 4 (minimal). Any other number (0, 5, 99) is
      ignored as if nothing had been said, and the search goes on.
    * Precedence, highest first: "Production Down" in the subject (severity 1, source
      ``production-down``), then a severity line in the body (``body``), then a severity
      token in the subject (``subject``), then the priority headers (``header``). A body
      line such as "Severity: 2" is usually a deliberate answer to a form or template, so
      it outranks the looser subject tokens; the headers are only a hint.
    * "Production Down" counts only in the subject (any case; also "production-down",
      "prod down", "ProdDown"). In the body it appears too often in prose such as "this is
      not production down" to be trusted.
    * Body lines: "Product: X", "Version: X" (also "Product version:", "Software
      version:"), and "Severity: 2", "Sev 2", "Sev: 2", "Sev2", "Severity 1 - critical",
      "Severity: high", "Severity level: 2", and "Priority: 1" / "Prio: P1" on the same
      1..4 scale. A line starting "S2" counts only when nothing or a colon or dash
      follows ("S2", "S2: ..."), for the same reason as in the subject (below). The first usable line of each kind wins. Words map as
      critical/urgent/blocker -> 1, high/major -> 2, medium/moderate/normal -> 3,
      low/minor/minimal -> 4. Values are trimmed, whitespace collapsed, and product and
      version are cut to 100 characters.
    * Only the customer's own words count: lines starting with ">" are skipped, the scan
      stops at a quoted-history or forwarded-message separator, and only the first
      ``_MAX_LINES`` lines are read (fields sit at the top of a first mail).
    * Subject tokens: "Sev1", "Sev 2", "Sev: 2", "Severity 3", "Severity: high",
      "[Sev 2]" anywhere; a bare "S1".."S4" only in brackets ("[S1]", "(S2)") or followed
      by a colon or dash ("S1: ...", "S1 - ..."), because "S3 bucket" or "Galaxy S4" in a
      subject is a product name, not a severity.
    * Headers give at most severity 2: a priority flag is one click in a mail client and
      says "important to me", while severity 1 pages people and needs words. X-Priority
      1-2, Importance high, Priority urgent and X-MSMail-Priority high -> 2; X-Priority
      4-5, Importance low, Priority non-urgent and X-MSMail-Priority low -> 4; the normal
      values say nothing, since many clients send them on every mail. The headers are
      consulted in the order X-Priority, Importance, Priority, X-MSMail-Priority and the
      first one that gives a hint wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["CaseFields", "extract_fields"]

_MAX_VALUE = 100
_MAX_LINES = 200
_SEVERITIES = range(1, 5)

_WORDS = {
    "critical": 1,
    "urgent": 1,
    "blocker": 1,
    "high": 2,
    "major": 2,
    "medium": 3,
    "moderate": 3,
    "normal": 3,
    "low": 4,
    "minor": 4,
    "minimal": 4,
}
_WORD = "|".join(sorted(_WORDS, key=len, reverse=True))
# A number, then no further digit or decimal part: "12" is not 1 and "2.5" is not 2.
_NUM = r"(?P<num>[0-9]+)(?![0-9]|\.[0-9])"
_VALUE = rf"(?:(?:sev(?:erity)?\s*|s|p)?{_NUM}|(?P<word>{_WORD})\b)"

# Bullets and bold markers that people put in front of form fields.
_LEAD = r"^\s*(?:[-*\u2022]\s*)?(?:\*\*|__)?\s*"
_SEP = r"(?:\*\*|__)?\s*[:=]\s*(?:\*\*|__)?\s*"
_PRODUCT_RE = re.compile(rf"{_LEAD}product(?:\s+name)?{_SEP}(?P<value>.*)$", re.I)
_VERSION_RE = re.compile(
    rf"{_LEAD}(?:(?:product|software)\s+)?version(?:\s+number)?{_SEP}(?P<value>.*)$", re.I
)
_BODY_SEVERITY_RE = re.compile(
    rf"{_LEAD}(?:(?:severity|priority|prio)(?:\s+level)?|sev)(?:\*\*|__)?\s*[:=#\-]?\s*(?:\*\*|__)?\s*{_VALUE}"
    rf"|{_LEAD}s(?P<snum>[0-9]+)\s*(?:$|[:\-\u2013\u2014])",
    re.I,
)
# The end of what the customer wrote in this mail: quoted history or a forwarded mail.
_HISTORY_RE = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|forwarded message)\s*-{2,}"
    r"|_{10,}\s*$"
    r"|begin forwarded message:)",
    re.I,
)

_PRODUCTION_DOWN_RE = re.compile(r"(?<![A-Za-z0-9])prod(?:uction)?[\s_\-]*down(?![A-Za-z0-9])", re.I)
_SUBJECT_SEVERITY_RE = re.compile(
    rf"(?<![A-Za-z0-9])(?:severity|sev)\s*[:#\-]?\s*(?:{_NUM}|(?P<word>{_WORD})\b)"
    r"|[\[(]\s*s(?P<bnum>[0-9]+)\s*[\])]"
    r"|(?<![A-Za-z0-9])s(?P<snum>[0-9]+)(?=\s*[:\-\u2013\u2014])",
    re.I,
)

# Header values, lower-cased and trimmed, mapped to a severity hint.
_HEADER_HINTS: tuple[tuple[str, Mapping[str, int]], ...] = (
    ("importance", {"high": 2, "low": 4}),
    ("priority", {"urgent": 2, "non-urgent": 4}),
    ("x-msmail-priority", {"high": 2, "highest": 2, "low": 4, "lowest": 4}),
)
_X_PRIORITY = {1: 2, 2: 2, 4: 4, 5: 4}
_X_PRIORITY_RE = re.compile(r"^\s*(?P<num>[0-9]+)")


@dataclass(frozen=True)
class CaseFields:
    """The fields of a new case as read from its first mail; None where nothing was said."""

    product: str | None
    version: str | None
    # 1 (critical) .. 4 (minimal).
    severity: int | None
    # "production-down" | "body" | "subject" | "header" | None: what set the severity.
    severity_source: str | None
    production_down: bool


def _clip(value: str) -> str | None:
    # Collapse first so that a run of spaces does not use up the length budget.
    collapsed = " ".join(value.split())[:_MAX_VALUE].rstrip()
    return collapsed or None


def _severity_of(match: re.Match[str]) -> int | None:
    groups = match.groupdict()
    word = groups.get("word")
    if word:
        return _WORDS[word.lower()]
    for name in ("num", "bnum", "snum"):
        digits = groups.get(name)
        if digits:
            number = int(digits)
            return number if number in _SEVERITIES else None
    return None


def _visible_lines(text: str) -> list[str]:
    lines: list[str] = []
    for line in text.splitlines()[:_MAX_LINES]:
        if _HISTORY_RE.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        lines.append(line)
    return lines


def _body_fields(text: str) -> tuple[str | None, str | None, int | None]:
    product: str | None = None
    version: str | None = None
    severity: int | None = None
    for line in _visible_lines(text):
        if product is None and (match := _PRODUCT_RE.match(line)):
            product = _clip(match.group("value"))
            continue
        if version is None and (match := _VERSION_RE.match(line)):
            version = _clip(match.group("value"))
            continue
        if severity is None and (match := _BODY_SEVERITY_RE.match(line)):
            severity = _severity_of(match)
    return product, version, severity


def _subject_severity(subject: str) -> int | None:
    for match in _SUBJECT_SEVERITY_RE.finditer(subject):
        severity = _severity_of(match)
        if severity is not None:
            return severity
    return None


def _header_severity(headers: Mapping[str, tuple[str, ...]]) -> int | None:
    for value in headers.get("x-priority", ()):
        match = _X_PRIORITY_RE.match(value)
        if match and (hint := _X_PRIORITY.get(int(match.group("num")))):
            return hint
    for name, table in _HEADER_HINTS:
        for value in headers.get(name, ()):
            if hint := table.get(value.strip().lower()):
                return hint
    return None


def extract_fields(subject: str, text: str, headers: Mapping[str, tuple[str, ...]]) -> CaseFields:
    """Read product, version and severity from the first mail of a case.

    ``headers`` maps lower-case header names to their decoded values.

    >>> extract_fields("Production down: login fails", "Product: Widget", {})
    CaseFields(product='Widget', version=None, severity=1, severity_source='production-down', production_down=True)
    """
    product, version, body_severity = _body_fields(text)
    production_down = _PRODUCTION_DOWN_RE.search(subject) is not None
    severity: int | None
    source: str | None
    if production_down:
        severity, source = 1, "production-down"
    elif body_severity is not None:
        severity, source = body_severity, "body"
    elif (subject_severity := _subject_severity(subject)) is not None:
        severity, source = subject_severity, "subject"
    elif (header_severity := _header_severity(headers)) is not None:
        severity, source = header_severity, "header"
    else:
        severity, source = None, None
    return CaseFields(product, version, severity, source, production_down)
