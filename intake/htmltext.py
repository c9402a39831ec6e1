# SPDX-License-Identifier: GPL-3.0-or-later
"""HTML bodies: rendering them as plain text and sanitising them for display.

Both jobs are delegated to libraries.  inscriptis renders HTML the way a browser
lays it out (tables as columns, lists with bullets, hidden preheaders dropped)
and is Apache-2.0, unlike the GPL html2text; nh3 wraps the Rust ``ammonia``
sanitiser, whose allow-list is maintained against real attacks, which a
hand-written regex filter could never match.
"""

from __future__ import annotations

import re
from bisect import bisect_right

import nh3
from inscriptis import get_annotated_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

__all__ = ["html_to_text", "sanitize_html"]

# inscriptis labels the text of every element matched by these rules, so the
# spans of quoted history can be found after rendering.  Blockquotes are what
# Gmail, Thunderbird, Apple Mail, Yahoo and mail.ru wrap quoted history in.
_QUOTE_LABEL = "quote"
_ANNOTATION_RULES: dict[str, list[str]] = {"blockquote": [_QUOTE_LABEL]}

# The URL schemes a sanitised body may keep: ordinary links, mail links and the
# cid: references of inline images, which the case view rewrites to attachments.
_URL_SCHEMES = frozenset({"http", "https", "mailto", "cid"})

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+$", re.MULTILINE)
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Render an HTML body as plain text, with blockquotes as ``> `` lines.

    Quoted history in HTML mail lives in ``<blockquote>`` elements.  A plain
    rendering would lose that structure and the quote stripper could no longer
    tell history from reply, so every line inside *n* nested blockquotes is
    prefixed with *n* ``> `` markers, which is how a text client would have
    quoted it.

    >>> html_to_text("<p>Yes.</p><blockquote>Will it work?</blockquote>")
    'Yes.\\n\\n> Will it work?'
    """
    cleaned = _CONTROL.sub("", html)
    if not cleaned.strip():
        return ""
    config = ParserConfig(css=CSS_PROFILES["strict"].copy(), annotation_rules=_ANNOTATION_RULES)
    rendered = get_annotated_text(cleaned, config)
    text = str(rendered.get("text", ""))
    spans = [(int(start), int(end)) for start, end, label in rendered.get("label", []) if label == _QUOTE_LABEL]
    text = _mark_quotes(text, spans)
    text = _TRAILING_SPACE.sub("", text.replace("\r\n", "\n"))
    return _MANY_BLANK_LINES.sub("\n\n", text).strip("\n")


def _mark_quotes(text: str, spans: list[tuple[int, int]]) -> str:
    """Prefix each line with one ``> `` per quote span it starts inside."""
    if not spans:
        return text
    lines = text.split("\n")
    starts: list[int] = []
    offset = 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    depth = [0] * len(lines)
    for start, end in spans:
        # inscriptis lets a block's span begin at the line break before its
        # first line; skip such breaks so the line above is not marked.
        end = min(end, len(text))
        while start < end and text[start] == "\n":
            start += 1
        # A line belongs to the span when any of its characters does; blank
        # lines between quoted paragraphs are left unmarked, as clients do.
        first = max(bisect_right(starts, start) - 1, 0)
        for index in range(first, len(lines)):
            if starts[index] >= end:
                break
            depth[index] += 1
    marked = [("> " * level + line) if level and line.strip() else line for line, level in zip(lines, depth)]
    return "\n".join(marked)


def sanitize_html(html: str) -> str:
    """Remove scripts, styles, event handlers and dangerous URLs from an HTML body.

    nh3 keeps its default allow-list of formatting tags and attributes; the URL
    schemes are narrowed to links, mail links and ``cid:`` inline images, so a
    ``javascript:`` or ``data:`` URL disappears while ``<img src="cid:...">``
    still resolves to its attachment.
    """
    return nh3.clean(
        _CONTROL.sub("", html),
        url_schemes=set(_URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
