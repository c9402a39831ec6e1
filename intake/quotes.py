# SPDX-License-Identifier: GPL-3.0-or-later
"""Removing quoted history from a reply while keeping what the person wrote.

mail-parser-reply (MIT, maintained) supplies the per-language header
expressions of thirteen languages; casemail asks it where the first header of
quoted history is and combines that with its own rules (``quote_markers``) for
the forms it misses.  The library's own ``latest_reply`` is not used as the
answer because it strips every line's indentation, cuts through inline answers
and treats a leading forward as the whole history; the cut is made here, on the
original lines, instead.

The rules, in order:

1. The first unquoted line that starts quoted history ends the reply: an
   original-message or forwarded-message banner, Outlook's underscore rule
   followed by a header block, a header block (From/Sent/To/Subject in any of
   the known languages), an attribution line ("On ... wrote:", "Am ...
   schrieb ...:", ...), or a header mail-parser-reply recognises.
2. A message that *starts* with such a marker is a forward: the banner and
   header block are skipped and the forwarded text is what was written.
3. An attribution followed by a ``>`` block that is followed by more unquoted
   text is an interleaved reply: the attribution goes, the quoted questions and
   the answers stay.
4. Finally the trailing block of ``>`` lines goes, with an attribution line
   directly above it, so inline answers keep the questions they answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

from intake.quote_markers import (
    HeaderField,
    attribution_reach,
    attribution_span,
    header_field,
    is_date_or_address_intro,
    is_separator,
    is_underscore_rule,
    may_start_history,
)
from intake.signature import is_mobile_signoff, is_signature_delimiter, signature_start

__all__ = ["DEFAULT_LANGUAGES", "strip_quotes"]

# Every language mail-parser-reply has patterns for.  Trying them all costs a
# few milliseconds and customers rarely say which client language they use.
DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs", "ja", "ko", "zh")

# A quoted line: ">" as most clients write it, "|" as some older ones do, and
# Supercite's initials before the ">" ("JD> ...") that Emacs and Outlook add-ons use.
_QUOTED = re.compile(r"^\s*(?:[A-Za-z]{1,3}>|>|\|(?:\s|$))")

_WORDY = re.compile(r"[^\W_]")
# Gmail's mail-tracking mark (CANADIAN SYLLABICS FINAL PLUS) that some add-ons append.
_GMAIL_TRACKER = "\u1427"

# A header block is this many lines at most (fields, wrapped values).
_HEADER_WINDOW = 10
# How many lines above a quote a wrapped attribution may start.
_ATTRIBUTION_REACH = 6
# How deep forwards inside forwards are unwrapped before giving up.
_MAX_FORWARD_DEPTH = 5


@dataclass(frozen=True)
class _Cut:
    """Where quoted history starts, and which attribution lines to drop above it."""

    index: int
    dropped: frozenset[int]


def strip_quotes(text: str, *, languages: Sequence[str] = DEFAULT_LANGUAGES) -> str:
    """Return the reply without its quoted history; signatures and sign-offs stay.

    >>> strip_quotes("Yes, tomorrow.\\n\\nOn Mon, 1 Feb 2016, Ann <a@b.c> wrote:\\n> Can you come?")
    'Yes, tomorrow.'
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    result = _drop_trailing_ornaments(_strip_lines(lines, tuple(languages), depth=0))
    stripped = "\n".join(result).strip("\n")
    if stripped.strip() or all(_is_quoted(line) for line in lines if line.strip()):
        # A message that is nothing but quote says nothing new: its visible text is empty.
        return stripped
    # The rules cut everything the person wrote; showing it all beats showing nothing.
    return "\n".join(lines).strip("\n")


def _drop_trailing_ornaments(lines: list[str]) -> list[str]:
    """Remove trailing lines with no letter or digit: rules, stray delimiters, tracking marks."""
    end = len(lines)
    while end and not _WORDY.search(lines[end - 1].replace(_GMAIL_TRACKER, "")):
        end -= 1
    return lines[:end]


def _strip_lines(lines: list[str], languages: tuple[str, ...], depth: int) -> list[str]:
    library = _library_markers(lines, languages)
    cut = _find_cut(lines, library)
    first = _first_content(lines)
    if cut.index == first < len(lines) and depth < _MAX_FORWARD_DEPTH:
        if _header_block_length(lines, first):
            # A bare header block on top, without a banner, is more likely a
            # pasted message the person wants to show than history to hide.
            return _drop_trailing_quote(list(lines))
        # The message opens with quoted history: a forward with nothing written
        # above it.  What was forwarded is then the text to keep.
        body_start = _skip_marker_block(lines, first)
        if body_start > first:
            return _strip_lines(lines[body_start:], languages, depth + 1)
    kept = [line for index, line in enumerate(lines[: cut.index]) if index not in cut.dropped]
    return _drop_trailing_quote(kept)


def _first_content(lines: Sequence[str]) -> int:
    return next((index for index, line in enumerate(lines) if line.strip()), len(lines))


def _is_quoted(line: str) -> bool:
    # Every quote form has a ">" or a "|"; looking for them is cheaper than trying the pattern.
    return (">" in line or "|" in line) and bool(_QUOTED.match(line))


def _find_cut(lines: Sequence[str], library: frozenset[int]) -> _Cut:
    dropped: set[int] = set()
    index = 0
    first = _first_content(lines)
    # Nearly every line is prose that starts neither an attribution nor a history block.  Both
    # tests below are necessary conditions for the rules that follow, so skipping the lines that
    # fail them changes no answer and spares trying a few dozen patterns on each.
    attribution_possible = attribution_reach(lines)
    while index < len(lines):
        line = lines[index]
        if not line.strip() or _is_quoted(line):
            index += 1
            continue
        if not attribution_possible[index] and not may_start_history(line) and index not in library:
            index += 1
            continue
        span = attribution_span(lines, index) if attribution_possible[index] else 0
        # The strong form is a narrower test, so it can only hold where the plain one did.
        strong = bool(span) and attribution_span(lines, index, strong_only=True) > 0
        if not span and is_date_or_address_intro(line):
            span = 1
        if span:
            after = index + span
            quote_end = _quote_run_end(lines, after)
            if quote_end > after and _has_answer_after(lines, quote_end):
                if index == first and not _has_later_quote(lines, quote_end):
                    # Nothing written above and one answer below: a bottom-posted
                    # reply, whose leading quote is only context.
                    dropped.update(range(index, quote_end))
                else:
                    # An interleaved reply: drop the attribution, keep questions and answers.
                    dropped.update(range(index, after))
                index = quote_end
                continue
            if strong or quote_end > after:
                return _Cut(index, frozenset(dropped))
        if _starts_history_block(lines, index) or index in library:
            return _Cut(index, frozenset(dropped))
        index += 1
    return _Cut(len(lines), frozenset(dropped))


def _has_later_quote(lines: Sequence[str], start: int) -> bool:
    """Whether another quoted line follows, i.e. the reply alternates quotes and answers."""
    return any(_is_quoted(line) for line in lines[start:])


def _starts_history_block(lines: Sequence[str], index: int) -> bool:
    line = lines[index]
    if is_separator(line):
        return True
    if is_underscore_rule(line):
        following = [i for i in range(index + 1, min(index + 4, len(lines))) if lines[i].strip()]
        return bool(following) and (header_field(lines[following[0]]) is not None or is_separator(lines[following[0]]))
    return _header_block_length(lines, index) > 0


def _header_block_length(lines: Sequence[str], index: int) -> int:
    """Lines in the quoted header block starting at ``index`` (0 when there is none)."""
    if header_field(lines[index]) is None:
        return 0
    fields: set[HeaderField] = set()
    end = index
    continuation = 0
    for position in range(index, min(index + _HEADER_WINDOW, len(lines))):
        line = lines[position]
        if not line.strip():
            # Outlook puts no blank line inside the block, but some webmails put
            # one between the rule and the fields; a blank ends the block.
            if fields:
                break
            continue
        field = header_field(line)
        if field is None:
            continuation += 1
            if continuation > 2:
                break
            continue
        continuation = 0
        fields.add(field)
        end = position + 1
    if len(fields) >= 3 or (len(fields) == 2 and HeaderField.FROM in fields):
        return end - index
    return 0


def _skip_marker_block(lines: Sequence[str], index: int) -> int:
    """The first line after the banner, header block or attribution at ``index``."""
    position = index
    if is_separator(lines[position]) or is_underscore_rule(lines[position]):
        position += 1
        while position < len(lines) and not lines[position].strip():
            position += 1
        if position >= len(lines):
            return position
    block = _header_block_length(lines, position)
    if block:
        return position + block
    span = attribution_span(lines, position)
    if span:
        return position + span
    return position if position > index else index


def _quote_run_end(lines: Sequence[str], start: int) -> int:
    """End of the run of quoted (and blank) lines starting at ``start``; ``start`` when none."""
    position = start
    while position < len(lines) and not lines[position].strip():
        position += 1
    if position >= len(lines) or not _is_quoted(lines[position]):
        return start
    while position < len(lines) and (_is_quoted(lines[position]) or not lines[position].strip()):
        position += 1
    return position


def _has_answer_after(lines: Sequence[str], start: int) -> bool:
    """Whether unquoted text the person wrote follows, rather than a signature."""
    rest = [line for line in lines[start:] if line.strip()]
    if not rest:
        return False
    return not (is_signature_delimiter(rest[0]) or is_mobile_signoff(rest[0]))


def _drop_trailing_quote(lines: list[str]) -> list[str]:
    """Remove the trailing ``>`` block, keeping a signature written below it.

    Some clients (K-9 Mail, Emacs) put the signature under the quote; the
    quote is history either way, and the signature is left for the
    signature rules to judge.
    """
    start = signature_start(lines)
    if start is None:
        return _drop_trailing_quote_block(lines)
    body = _drop_trailing_quote_block(lines[:start])
    if len(body) == start:
        return lines
    return [*body, "", *lines[start:]]


def _drop_trailing_quote_block(lines: list[str]) -> list[str]:
    """Remove the trailing ``>`` block and an attribution line directly above it."""
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    quoted_end = end
    while end and (_is_quoted(lines[end - 1]) or not lines[end - 1].strip()):
        end -= 1
    if end == quoted_end:
        return lines[:end]
    while end and not lines[end - 1].strip():
        end -= 1
    # A wrapped attribution may start a few lines above the quote; the earliest
    # start whose attribution reaches down to the quote wins.
    for start in range(max(end - _ATTRIBUTION_REACH, 0), end):
        if attribution_span(lines, start, strong_only=True) == end - start:
            return lines[:start]
    if end and (attribution_span(lines, end - 1) == 1 or is_date_or_address_intro(lines[end - 1])):
        return lines[: end - 1]
    return lines[:end]


def _library_markers(lines: Sequence[str], languages: tuple[str, ...]) -> frozenset[int]:
    """Line indices where mail-parser-reply sees the header of quoted history."""
    # Stripping leaves colons and dashes in place, so the windows are the same on the raw lines;
    # most replies have none, and then nothing more is needed.
    windows = _candidate_windows(lines)
    if not windows:
        return frozenset()
    # The library normalises by stripping every line; doing the same here keeps
    # match offsets and line numbers in step.
    stripped_lines = [line.strip() for line in lines]
    pattern = _library_header_pattern(languages)
    found: set[int] = set()
    for first, last in windows:
        chunk = "\n".join(stripped_lines[first:last])
        for offset in _match_starts(pattern, chunk):
            while offset < len(chunk) and chunk[offset] == "\n":
                offset += 1
            line_index = first + chunk.count("\n", 0, offset)
            if line_index < len(lines) and not _is_quoted(lines[line_index]):
                found.add(line_index)
    return frozenset(found)


@functools.lru_cache(maxsize=32)
def _library_header_pattern(languages: tuple[str, ...]) -> re.Pattern[str]:
    """The library's header expression for these languages.

    It depends on nothing but the languages, and building it (a few dozen string joins and a
    lookup of a long pattern in re's cache) costs more than scanning a short reply with it.
    """
    known = [language for language in languages if language in MAIL_LANGUAGES]
    return EmailMessage(text="", languages=known or ["en"]).HEADER_REGEX


# Where a match of the library's header expression can begin: each of its forms is anchored at the
# start of a line or at the line break before it, except Danish's "-----Oprindelig meddelelse-----"
# banner, which may begin anywhere.  tests/unit/test_quote_prefilters.py checks the library's forms.
_LIBRARY_MATCH_MAY_START = re.compile(r"^|\n|(?=-----)", re.MULTILINE)


def _match_starts(pattern: re.Pattern[str], chunk: str) -> list[int]:
    """Where ``pattern.finditer(chunk)`` finds matches, found by trying only where one can begin.

    finditer tries the expression's few dozen forms at every character, although nearly every
    position fails on the anchor each form opens with; a match is the same whether found by
    finditer or by ``match`` at its position, so trying only the possible starts gives the same
    matches, at a third of the cost.
    """
    starts: list[int] = []
    resume = 0
    for position in sorted({found.start() for found in _LIBRARY_MATCH_MAY_START.finditer(chunk)}):
        if position < resume:
            continue
        match = pattern.match(chunk, position)
        if match is None:
            continue
        if match.end() == position:
            # After an empty match finditer steps on by rules of its own; leave such a chunk to it.
            return [found.start() for found in pattern.finditer(chunk)]
        starts.append(position)
        # finditer goes on searching where its last match ended.
        resume = match.end()
    return starts


def _candidate_windows(lines: Sequence[str]) -> list[tuple[int, int]]:
    """Runs of lines, [first, last), that can hold a match of the library's header expression.

    The library's expression is slow on long text (about 1 ms per 100 lines): it is tried at every
    newline. Scanning only the lines around candidates gives the same matches at a fraction of the
    cost; tests/unit/test_body.py checks the equivalence on the corpus and on generated text.
    """
    windows: list[tuple[int, int]] = []
    for index, line in enumerate(lines):
        # Every header form the library knows ends its line with a colon (full-width in CJK) or is a
        # dashed separator of five dashes or more, and spans at most a line more on either side of
        # such lines.  Plain substring tests find those lines at a fraction of a search's cost.
        if ":" not in line and "：" not in line and "-----" not in line:
            continue
        first, last = max(index - 2, 0), min(index + 3, len(lines))
        if windows and first <= windows[-1][1]:
            windows[-1] = (windows[-1][0], last)
        else:
            windows.append((first, last))
    return windows
