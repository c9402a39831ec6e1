# SPDX-License-Identifier: GPL-3.0-or-later
"""The text of a comment: what the person wrote, the whole body, the signature, safe HTML.

This is the one entry point the intake pipeline calls for a message body.  The
work is split over ``quotes`` (quoted history), ``signature`` (signature
blocks) and ``htmltext`` (HTML to text and sanitising); this module only
decides which body to use and in which order the steps run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from intake.htmltext import html_to_text, sanitize_html
from intake.quotes import DEFAULT_LANGUAGES, strip_quotes
from intake.signature import split_signature

__all__ = [
    "DEFAULT_LANGUAGES",
    "BodyText",
    "extract_body",
    "html_to_text",
    "sanitize_html",
    "split_signature",
    "strip_quotes",
]


@dataclass(frozen=True)
class BodyText:
    """The texts casemail keeps for one message body."""

    visible: str
    """What the person wrote: quoted history and signature removed, inline answers kept."""
    full: str
    """The whole text body as received (HTML converted to text when there was no text part)."""
    signature: str | None
    """The signature block cut from ``visible``, when one was recognised."""
    html: str | None
    """The HTML body sanitised with nh3, or None when there was no HTML body."""


def extract_body(
    text: str | None,
    html: str | None,
    *,
    languages: Sequence[str] = DEFAULT_LANGUAGES,
) -> BodyText:
    """Build the texts of a comment from a message's text and HTML bodies.

    The text part is preferred because it is what the sender's client chose to
    show in plain text; an HTML-only message is rendered with blockquotes as
    ``>`` lines so the same quote rules apply to it.  Quote removal and
    signature removal are separate steps, so a sign-off the quote stripper
    keeps is judged by the signature rules alone.

    >>> extract_body("Fixed, thanks.\\n\\nOn Mon, Ann <a@b.c> wrote:\\n> Broken?", None).visible
    'Fixed, thanks.'
    """
    if text is not None and text.strip():
        full = text.replace("\r\n", "\n").replace("\r", "\n")
    elif html is not None and html.strip():
        full = html_to_text(html)
    else:
        full = text or ""
    without_quotes = strip_quotes(full, languages=languages) if full.strip() else ""
    visible, signature = split_signature(without_quotes)
    return BodyText(
        visible=visible.strip("\n"),
        full=full,
        signature=signature,
        html=sanitize_html(html) if html is not None else None,
    )
