# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for the quick tests that let quote stripping skip most lines.

intake.quotes and intake.quote_markers put cheap character tests in front of their patterns.  Each
must be a necessary condition of what it stands in front of: a line it rules out has to be one the
patterns would have rejected anyway, so that skipping it changes no answer.  These tests hold the
quick tests to the raw patterns (not to the public functions, which use them).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mailparser_reply.constants import GENERIC_MAIL_SEPARATOR, MAIL_LANGUAGES

from intake import quote_markers as qm
from intake.quotes import DEFAULT_LANGUAGES, _library_header_pattern, _match_starts

# Characters whose case rules differ between str.lower() and re.IGNORECASE (dotted and dotless i,
# long s, final sigma, Kelvin sign), next to the words and shapes the quick tests look for.
_TRICKY = ["İ", "ı", "ſ", "Σ", "ς", "\u212a", "\u3000", "\xa0", "\t", " "]


def _raw_history_marker(line: str) -> bool:
    """Whether any pattern behind may_start_history accepts the line, asked without quick tests."""
    return bool(
        qm._SEPARATOR.match(line)
        or qm._FORWARD_SENTENCE.match(line)
        or qm._UNDERSCORE_RULE.match(line)
        or any(pattern.match(line) for _, pattern in qm._FIELDS)
        or qm.is_date_or_address_intro(line)
    )


def test_banner_frame_holds_every_character_the_patterns_allow_around_a_phrase() -> None:
    every_character = "".join(map(chr, range(0x110000)))
    blanks = set(re.findall(r"\s", every_character))
    assert blanks <= set(qm._BANNER_FRAME)
    assert set(">-_=*:") <= set(qm._BANNER_FRAME)


def test_banner_phrases_are_plain_text_so_their_written_length_bounds_a_match() -> None:
    # Letters, blanks, apostrophes and dashes (optional ones as "-?") match one character each at most.
    for phrase in qm._SEPARATOR_WORDS.split("|"):
        assert re.fullmatch(r"(?:[^\W\d_]|[ ']|-\??)+", phrase), phrase
        assert len(phrase) <= qm._LONGEST_BANNER_PHRASE


# Lines the quick test must never skip, with frames long enough to defeat a naive length test.
MARKER_LINES = [
    "-----Original Message-----",
    "----- Original Message -----",
    "Original Message",
    "Original message" + " " * 60,
    "> " * 30 + "Original Message",
    "=" * 40 + " Ursprüngliche Nachricht " + "=" * 40,
    "*" * 30 + "Forwarded message" + "*" * 30 + " :",
    "---------- Forwarded message ---------",
    "\u3000Message d'origine\u3000",
    "-----Исходное сообщение-----",
    "原始邮件",
    "Begin forwarded message:",
    "________________________________",
    "> ------------------------------",
    "From: Ann <ann@example.com>",
    "*Von:* Ann",
    "发件人： Ann",
    '26.06.2014, 14:41, "Alexander L" <a@b.example>:',
]


@pytest.mark.parametrize("line", MARKER_LINES)
def test_marker_lines_pass_the_quick_test(line: str) -> None:
    assert _raw_history_marker(line), "the table should hold markers only"
    assert qm.may_start_history(line)


_LINE_PARTS = st.sampled_from([
    *_TRICKY, ">", "> ", "-", "--", "-----", "_" * 10, "-" * 20, "==", "**", ":", "：", ",", ".",
    "Original Message", "ORİGİNAL MESSAGE", "original meſſage", "Forwarded message", "Begin forwarded message",
    "From", "Von", "Sent", "*", "发件人", "Hello", "regards", "x", "14:41", "2014", "<a@b.example>", "wrote",
])
_LINES = st.one_of(st.lists(_LINE_PARTS, max_size=8).map("".join), st.text(max_size=40))


@settings(max_examples=300, deadline=None)
@given(_LINES)
def test_quick_tests_never_rule_out_a_line_a_pattern_accepts(line: str) -> None:
    if _raw_history_marker(line):
        assert qm.may_start_history(line)
    assert qm.is_separator(line) == bool(qm._SEPARATOR.match(line) or qm._FORWARD_SENTENCE.match(line))
    assert qm.is_underscore_rule(line) == bool(qm._UNDERSCORE_RULE.match(line))
    assert qm.header_field(line) == next((field for field, pattern in qm._FIELDS if pattern.match(line)), None)


_ATTRIBUTION_PARTS = st.sampled_from([
    *_TRICKY, "wrote", "WROTE", "wrOte", "said", "ſaid", "Schrieb", "写道", "작성", "gmt", "GMT", "2013/7/20",
    "2013/07/2", "20137/20", "/", ">", "> ", "Ann", ",", "x", "sai", "d", "\n",
])
_ATTRIBUTION_LINES = st.lists(st.lists(_ATTRIBUTION_PARTS, max_size=5).map("".join), max_size=20)


@settings(max_examples=300, deadline=None)
@given(_ATTRIBUTION_LINES)
def test_attribution_reach_is_the_window_test_of_attribution_span(lines: list[str]) -> None:
    window = qm.MAX_ATTRIBUTION_LINES + qm._MAX_BLANKS_INSIDE
    expected = [
        any(qm._may_be_attribution(lines[i]) for i in range(start, min(start + window, len(lines))))
        for start in range(len(lines))
    ]
    assert qm.attribution_reach(lines) == expected


@settings(max_examples=300, deadline=None)
@given(_ATTRIBUTION_LINES)
def test_joined_lines_carry_an_attribution_word_exactly_when_one_of_them_does(lines: list[str]) -> None:
    # attribution_span keeps a running answer per line instead of testing the joined text again.
    pieces = [line.strip().lstrip(">").strip() for line in lines]
    joined = " ".join(piece for piece in pieces if piece)
    carried = any(qm._may_be_attribution(line) for line, piece in zip(lines, pieces) if piece)
    assert qm._may_be_attribution(joined) == carried


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Ann", "tomorrow", "Fr", ".", "!", "?", "\n", " ", "28", "ſ", "a"]), max_size=12).map("".join))
@example("See you tomorrow.")
@example("See you tomorrow!\n")  # "$" also matches before a final line break
@example("Fr., 28.")
def test_sentence_end_quick_test_agrees_with_the_pattern(text: str) -> None:
    assert qm._ends_sentence(text) == bool(qm._SENTENCE_END.search(text[-64:]))


def _library_forms() -> list[str]:
    forms = [GENERIC_MAIL_SEPARATOR]
    for patterns in MAIL_LANGUAGES.values():
        for key in ("wrote_header", "from_header"):
            value = patterns.get(key) or []
            forms.extend([value] if isinstance(value, str) else value)
    return [form for form in forms if form]


def test_library_forms_begin_at_a_line_start_or_at_the_danish_banner() -> None:
    # _match_starts tries the library's expression only at line starts, line breaks and runs of
    # five dashes; a new form that may begin elsewhere would need a new kind of start there.
    anchored = ("^", r"((?:^", r"((?:(?:^|\n|\n(?:> ?)*)[* ]*", r"((?:(?:^|\n|\n(?:> ?)*)?-----")
    for form in _library_forms():
        assert form.startswith(anchored), form


_CHUNK_LINES = st.sampled_from([
    "", "> ", "text", "On", "Monday Ann", "wrote:", "On Mon, Ann wrote:", "> On Mon, Bob wrote:", "From: a", "To: b",
    "Subject: c", "*From:* Jane", "Von: A", "An: B", "Betreff: C", "Fra: Ann", "Til: Bob", "Emne: x",
    "-----Oprindelig meddelelse-----", "foo -----Oprindelig meddelelse-----", "------Oprindelig meddelelse-----",
    "-----Original Message-----", "----- Original Message -----", "-----", "x-----y",
    "Am 1.2.2016 schrieb Ann:", "2016年3月3日(木) 17:21 Ann <a@b.c>:", "Den 1 jan 2020 skrev Ann:",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_CHUNK_LINES, max_size=10).map("\n".join), st.sampled_from([DEFAULT_LANGUAGES, ("da",), ("en",)]))
def test_match_starts_are_those_of_finditer(chunk: str, languages: tuple[str, ...]) -> None:
    pattern = _library_header_pattern(languages)
    assert _match_starts(pattern, chunk) == [match.start() for match in pattern.finditer(chunk)]


def test_a_danish_banner_in_mid_line_is_found() -> None:
    pattern = _library_header_pattern(DEFAULT_LANGUAGES)
    chunk = "foo -----Oprindelig meddelelse-----\nFra: Ann\nTil: Bob"
    assert _match_starts(pattern, chunk) == [4]
