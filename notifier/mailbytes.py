# SPDX-License-Identifier: GPL-3.0-or-later
"""The bytes of an outgoing mail: header lines, text and HTML bodies, and the MIME parts around them.

The renderer used to build an EmailMessage (policy=default) and call as_bytes(). That parses every
header value it is given and builds several message objects per mail, which cost about 2-4 ms of CPU
per acknowledgement; the outbox must send 1,000 a second on two cores. The mails are always the same
shape (a dozen headers, text and HTML as multipart/alternative, sometimes attachments), so the lines
are written here directly, in the layout the email package gave them: CRLF line endings, headers
folded at 78 columns, the same MIME headers and boundaries. It is left where it was wrong, each time
said below (spaces lost between encoded words, encoded Message-IDs, raw 8-bit bodies). Nothing is
encoded by hand: RFC 2047 encoded words come from email.charset, bodies from email.quoprimime and
email.base64mime, attachments from the email package itself, and tests/unit/test_render_bytes.py
holds the result against what EmailMessage made from the same values.

Header values are text, never header source. A line break in any value is refused. Text that looks
like an encoded word ("=?utf-8?q?...?=") is encoded itself, so that a reader decodes it back to the
same characters: EmailMessage decoded such words when the value was set, which let a customer's
subject put a line break, and so a header of their choosing, into the header block.
"""

from __future__ import annotations

import itertools
import random
import re
import sys
from collections.abc import Sequence
from email import base64mime, quoprimime
from email.charset import Charset
from email.message import MIMEPart
from email.policy import SMTP
from email.utils import formataddr
from functools import lru_cache

CRLF = "\r\n"
# RFC 5322 2.1.1: a line SHOULD be at most 78 characters and MUST be at most 998. 78 is also the
# email package's default, so ASCII headers fold where EmailMessage folded them.
MAX_LINE = 78
MAX_LINE_HARD = 998
# RFC 2045 6.7 (5): a quoted-printable line is at most 76 characters (EmailMessage wrote up to 78).
QP_LINE = 76

_UTF8 = Charset("utf-8")
# Control characters other than tab: a 7bit body carrying them would not be valid RFC 5322 text.
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# A plain address (dot-atom local part and domain): the only kind written without the email package.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


def _refuse_line_breaks(value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"header values may not contain line breaks: {value!r}")


def _encodable(text: str) -> str:
    # A lone surrogate (a byte some parser could not decode) has no UTF-8 form: it becomes U+FFFD,
    # as the email package shows such text.
    return _SURROGATE.sub("\ufffd", text)


def _plain(text: str) -> bool:
    """True for printable ASCII that no reader could take for an encoded word."""
    return text.isascii() and text.isprintable() and "=?" not in text


def _plain_word(word: str) -> bool:
    return word != "" and _plain(word) and len(word) < MAX_LINE


def _fold_lines(name: str, words: Sequence[str]) -> list[str]:
    lines = [f"{name}: {words[0]}"]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) <= MAX_LINE:
            lines[-1] += " " + word
        else:
            lines.append(" " + word)
    return lines


def fold(name: str, words: Sequence[str]) -> str:
    """One header, its words separated by single spaces, folded at 78 columns (RFC 5322 2.2.3).

    The first word always stays beside the name; each next word joins the current line while the
    line stays within 78 characters, and otherwise starts a continuation line (a space, then the
    word). A word is never split: callers pass words short enough for a line, or words that cannot be
    split (a Message-ID, an address). This is how the email package folds ASCII text, except that it
    moves a whole value that fits on a continuation line there; Python's parser reads such a value
    back with a leading space, so that is not done here.
    """
    return CRLF.join(_fold_lines(name, words)) + CRLF


def _encoded_words(text: str, first_room: int) -> list[str | None]:
    """`text` as RFC 2047 encoded words (UTF-8): the first within `first_room` characters (None when
    not even one character fits there), each other one short enough for a continuation line.

    Charset.header_encode_lines splits by length alone, so every space stays inside a word; unlike
    email.header.Header it does not take vertical tabs or form feeds for line breaks.
    """
    room = itertools.chain([first_room], itertools.repeat(MAX_LINE - 1))
    return _UTF8.header_encode_lines(text, room)


def unstructured(name: str, text: str) -> str:
    """A header of free text (Subject, Date, X-...), as one or more CRLF-terminated lines.

    Plain words are written as they are; from the first word that is not plain (non-ASCII, control
    characters, "=?", or too long for a line), the rest of the text is written as encoded words. The
    email package encodes word by word instead, but where it ends a line between two encoded words it
    drops the space between them (Python 3.11 read "принтер не" back as "принтерне"); a space inside
    an encoded word cannot get lost. Keeping the first words plain keeps the case tag readable.
    """
    _refuse_line_breaks(text)
    if not text:
        return f"{name}:{CRLF}"
    words = _encodable(text).split(" ")
    plain = list(itertools.takewhile(_plain_word, words))
    if len(plain) == len(words):
        return fold(name, words)
    lines = _fold_lines(name, plain) if plain else [f"{name}:"]
    first, *others = _encoded_words(" ".join(words[len(plain):]), MAX_LINE - len(lines[-1]) - 1)
    if first is not None:
        lines[-1] += " " + first
    lines += [" " + w for w in others if w is not None]
    return CRLF.join(lines) + CRLF


@lru_cache(maxsize=1024)
def mailbox(name: str, display_name: str, address: str) -> str:
    """A From or Reply-To header: one address with its display name.

    A plain name is written as formataddr writes it (quoted where RFC 5322 needs it); one that does
    not fit on the line and needs no quotes is folded between its words. Any other name is written
    as encoded words, which a phrase may hold (RFC 2047 5 (3)); Python's parser reads a space into
    it where a word was split across two of them, which RFC 2047 6.2 says to ignore. Cached: a desk
    sends from a handful of names.
    """
    _refuse_line_breaks(display_name)
    _refuse_line_breaks(address)
    display_name = _encodable(display_name)
    value = formataddr((display_name, address))  # refuses a non-ASCII address, as before
    if not display_name or (_plain(display_name) and len(name) + 2 + len(value) <= MAX_LINE):
        return f"{name}: {value}{CRLF}"
    words = display_name.split(" ")
    if value == f"{display_name} <{address}>" and all(
            w and _plain(w) and len(name) + 2 + len(w) <= MAX_LINE_HARD for w in words):
        # A long name of plain atoms (formataddr saw nothing to quote) folds between its words, as
        # the email package folded it; a word longer than a line stays whole, as it did there.
        return fold(name, [*words, f"<{address}>"])
    words = [w for w in _encoded_words(display_name, MAX_LINE - len(name) - 2) if w is not None]
    return fold(name, [*words, f"<{address}>"])


def addresses(name: str, recipients: Sequence[str]) -> str:
    """A To header listing bare addresses."""
    for r in recipients:
        _refuse_line_breaks(r)
    if recipients and all(_PLAIN_ADDRESS.fullmatch(r) for r in recipients):
        # An address is never encoded, even one that contains "=?" (legal in a local part).
        return fold(name, [r + "," for r in recipients[:-1]] + [recipients[-1]])
    # Anything else (an address with a display name, a non-ASCII one) as EmailMessage wrote it.
    return SMTP.header_factory(name, ", ".join(recipients)).fold(policy=SMTP)  # type: ignore[no-any-return]


def usable_msg_id(msg_id: str) -> bool:
    """Whether a Message-ID can be written in a header as it is (RFC 5322 3.6.4).

    A msg-id is never encoded (RFC 2047 5), so one that is not printable ASCII, or too long to follow
    "In-Reply-To: " on a line of 998 octets, cannot be referred to at all.
    """
    return (msg_id.isascii() and msg_id.isprintable() and " " not in msg_id
            and len("In-Reply-To: ") + len(msg_id) <= MAX_LINE_HARD)


def msg_ids(name: str, ids: Sequence[str]) -> str:
    """A Message-ID, In-Reply-To or References header; empty when no id can be written.

    EmailMessage encoded a long id (an Outlook one, say) as RFC 2047 encoded words, which breaks
    threading; ids are only ever folded between each other here.
    """
    for i in ids:
        _refuse_line_breaks(i)
    kept = [i for i in ids if usable_msg_id(i)]
    return fold(name, kept) if kept else ""


# --- bodies and MIME parts ------------------------------------------------------------------------


def encode_text(text: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, body with CRLF line endings) for text sent as UTF-8.

    The email package's choice, mostly kept: text that is printable ASCII in lines of at most 78
    characters goes as it is (7bit); anything else as quoted-printable or base64, whichever is shorter
    (the email package judged by the first ten lines; the whole body is at hand here). Unlike the
    email package, raw UTF-8 (8bit) is never sent, since a smarthost need not accept it, and the
    quoted-printable lines keep RFC 2045's limit of 76. Line breaks of any kind (CR, LF, CRLF) become
    one line break, as set_content made them; a lone surrogate becomes U+FFFD (set_content failed).
    """
    lines = _encodable(text).encode("utf-8").splitlines()
    if all(len(line) <= MAX_LINE and line.isascii() and not _CONTROL.search(line) for line in lines):
        return "7bit", CRLF.join(line.decode("ascii") for line in lines) + CRLF
    data = b"\n".join(lines) + b"\n"
    qp = quoprimime.body_encode(data.decode("latin-1"), QP_LINE, eol=CRLF)
    # The line breaks inside base64 stay LF, as the email package wrote them: decoding gives back
    # exactly the text that a quoted-printable or 7bit body gives.
    b64 = base64mime.body_encode(data, QP_LINE, eol=CRLF)
    return ("quoted-printable", qp) if len(qp) <= len(b64) else ("base64", b64)


def text_part(text: str, subtype: str) -> bytes:
    """A text part's headers and body, as set_content(text, subtype=...) made them."""
    cte, body = encode_text(text)
    return entity([f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}', f"Content-Transfer-Encoding: {cte}{CRLF}"],
                  body.encode("ascii"))


def attachment_part(data: bytes, maintype: str, subtype: str, filename: str) -> bytes:
    """A base64 attachment, made by the email package: its file name may need RFC 2231 encoding.

    Attachments only come with relayed staff replies, rare next to acknowledgements, so the cost of
    the email package here does not matter.
    """
    part = MIMEPart(policy=SMTP)
    part.set_content(data, maintype=maintype, subtype=subtype, disposition="attachment", filename=filename)
    return part.as_bytes(policy=SMTP)


def _boundary(parts: Sequence[bytes]) -> str:
    # The email package's form of boundary; drawn again in the unlikely case a part contains it.
    while True:
        boundary = f"{'=' * 15}{random.randrange(sys.maxsize):019d}=="
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in p for p in parts):
            return boundary


def multipart(subtype: str, parts: Sequence[bytes]) -> tuple[str, bytes]:
    """(Content-Type header line, body) of a multipart holding `parts`, each its headers and body."""
    boundary = _boundary(parts)
    # Folded between type and parameter, as the email package folds it when it is too long.
    content_type = fold("Content-Type", [f"multipart/{subtype};", f'boundary="{boundary}"'])
    sep = f"--{boundary}{CRLF}".encode("ascii")
    # RFC 2046 5.1.1: the CRLF before each delimiter belongs to the delimiter, so a part's own last
    # line break stays part of its content.
    body = sep + (CRLF.encode("ascii") + sep).join(parts) + f"{CRLF}--{boundary}--{CRLF}".encode("ascii")
    return content_type, body


def message(headers: Sequence[str], text: str, html: str, attachments: Sequence[bytes] = ()) -> bytes:
    """A whole mail: `headers` (lines from the functions above), then text and HTML as alternatives.

    The structure EmailMessage's set_content, add_alternative and add_attachment built: a
    multipart/alternative, inside a multipart/mixed when attachments (from attachment_part) come along.
    """
    content_type, body = multipart("alternative", [text_part(text, "plain"), text_part(html, "html")])
    if attachments:
        content_type, body = multipart("mixed", [entity([content_type], body), *attachments])
    return entity([*headers, f"MIME-Version: 1.0{CRLF}", content_type], body)


def entity(headers: Sequence[str], body: bytes) -> bytes:
    """Header lines (each ending in CRLF), the blank line, then the body.

    Two last guards, whatever the paths above do: the headers are encoded as ASCII, so raw 8-bit
    text can never reach them, and no line may pass RFC 5322's limit of 998 octets (an address
    longer than that, which no mail system accepts, is the only way there).
    """
    head = "".join(headers)
    if any(len(line) > MAX_LINE_HARD for line in head.split(CRLF)):
        raise ValueError("a header line would be longer than 998 octets")
    return (head + CRLF).encode("ascii") + body
