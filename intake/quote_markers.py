# SPDX-License-Identifier: GPL-3.0-or-later
"""Line patterns that announce quoted history, in the languages mail clients write.

mail-parser-reply knows thirteen languages, but only in the exact shapes its
authors met; these patterns add what it misses: attribution lines wrapped over
two or three lines, Russian, Ukrainian, Portuguese, Norwegian and Finnish forms,
Outlook header blocks whose field names are translated (and bolded with
asterisks), original-message and forwarded-message separators in many
languages.  Every pattern is matched against one line, or against a few
consecutive lines joined by a space, already stripped of surrounding blanks.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from enum import Enum

__all__ = [
    "HeaderField",
    "attribution_reach",
    "attribution_span",
    "header_field",
    "is_date_or_address_intro",
    "is_separator",
    "is_underscore_rule",
    "may_start_history",
]


class HeaderField(Enum):
    """The header fields that make up a quoted Outlook-style header block."""

    FROM = "from"
    SENT = "sent"
    TO = "to"
    SUBJECT = "subject"
    CC = "cc"


# Translated field names as Outlook, Gmail, Apple Mail, Thunderbird and the
# Russian, Chinese and Japanese webmail clients write them in a quoted block.
_FIELD_NAMES: dict[HeaderField, tuple[str, ...]] = {
    HeaderField.FROM: (
        "From", "Von", "De", "Van", "Od", "Fra", "Från", "Frå", "От", "Від", "Da", "Lähettäjä",
        "Feladó", "Kimden", "Afzender", "Absender", "Remitente", "Expéditeur", "Mittente",
        "差出人", "发件人", "寄件者", "發件人", "보낸 사람", "보낸사람",
    ),
    HeaderField.SENT: (
        "Sent", "Date", "Gesendet", "Datum", "Envoyé", "Envoyé le", "Enviado", "Enviada", "Fecha",
        "Data", "Verzonden", "Wysłane", "Wysłano", "Sendt", "Skickat", "Отправлено", "Дата",
        "Надіслано", "Inviato", "Lähetetty", "Päivämäärä", "Elküldve", "Gönderildi", "Tarih",
        "送信日時", "日付", "日期", "发送时间", "發送時間", "寄件日期", "时间", "보낸 날짜", "날짜",
    ),
    HeaderField.TO: (
        "To", "An", "À", "A", "Para", "Aan", "Do", "Til", "Till", "Кому", "Destinatario",
        "Vastaanottaja", "Címzett", "Kime", "宛先", "收件人", "收件者", "받는 사람", "받는사람",
    ),
    HeaderField.SUBJECT: (
        "Subject", "Betreff", "Objet", "Asunto", "Assunto", "Onderwerp", "Temat", "Emne", "Ämne",
        "Тема", "Oggetto", "Aihe", "Tárgy", "Konu", "Předmět", "件名", "主题", "主旨", "主題", "제목",
    ),
    HeaderField.CC: ("Cc", "Kopie", "Kopia", "Копия", "Копія", "Kopio", "Kopi", "抄送", "副本", "참조"),
}


def _field_pattern(names: Sequence[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    # Outlook's plain-text rendering bolds field names as "*From:*"; French puts a
    # space before the colon; CJK clients use the full-width colon.
    return re.compile(rf"^[>\s]*\*?(?:{alternatives})\*?\s?[:：]\*?(?:\s|$)", re.IGNORECASE)


_FIELDS: tuple[tuple[HeaderField, re.Pattern[str]], ...] = tuple(
    (field, _field_pattern(names)) for field, names in _FIELD_NAMES.items()
)

# "-----Original Message-----" and its translations, the forwarded-message
# banners of Gmail, Apple Mail, Thunderbird and Outlook, with or without dashes.
_SEPARATOR_WORDS = (
    r"original message|original e-?mail|message d'origine|message original|ursprüngliche nachricht|"
    r"originalnachricht|mensaje original|mensagem original|messaggio originale|oorspronkelijk bericht|"
    r"origineel bericht|originalmeddelande|ursprungligt meddelande|oprindelig meddelelse|"
    r"opprinnelig melding|opprinneleg melding|alkuperäinen viesti|wiadomość oryginalna|"
    r"oryginalna wiadomość|původní zpráva|исходное сообщение|оригинальное сообщение|"
    r"вихідне повідомлення|оригінальне повідомлення|eredeti üzenet|orijinal ileti|"
    r"forwarded message|forwarded e-?mail|weitergeleitete nachricht|message transféré|"
    r"mensaje reenviado|mensagem encaminhada|messaggio inoltrato|doorgestuurd bericht|"
    r"vidarebefordrat meddelande|videresendt meddelelse|videresendt melding|välitetty viesti|"
    r"przekazana wiadomość|wiadomość przekazana|přeposlaná zpráva|пересылаемое сообщение|"
    r"пересланное сообщение|переслане повідомлення|reply message|转发的邮件|原始邮件|原始郵件|転送メッセージ|元のメッセージ"
)
_SEPARATOR = re.compile(
    rf"^[>\s]*(?:-{{2,}}|_{{2,}}|={{2,}}|\*{{2,}})?\s*(?:{_SEPARATOR_WORDS})\s*(?:-{{2,}}|_{{2,}}|={{2,}}|\*{{2,}})?\s*:?\s*$",
    re.IGNORECASE,
)
# Apple Mail and iOS start a forward with a sentence rather than a banner.
_FORWARD_SENTENCE = re.compile(
    r"^[>\s]*(?:begin forwarded message|anfang der weitergeleiteten nachricht|début du message réexpédié|"
    r"inicio del mensaje reenviado|início da mensagem reencaminhada|inizio messaggio inoltrato|"
    r"begin doorgestuurd bericht|vidarebefordrat brev|videresendt brev|начало переадресованного сообщения|"
    r"转发的邮件|転送されたメッセージ)\s*[:：]\s*$",
    re.IGNORECASE,
)
# Outlook's rule above the quoted header block: a line of underscores (or a
# long line of dashes, which some webmails use instead).
_UNDERSCORE_RULE = re.compile(r"^[>\s]*(?:_{10,}|-{20,})\s*$")

# What may surround a banner's phrase in _SEPARATOR: every character "\s" matches (str.isspace(), which
# re uses too; tests/unit/test_quote_prefilters.py checks the list), quote marks, rules and the colon.
_BANNER_FRAME = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000" ">-_=*:"
)
# The longest phrase of _SEPARATOR_WORDS as written. Each pattern character matches one character at
# most (ignoring case maps one character to one, and "-?" may match none), so no banner's phrase is
# longer than this.
_LONGEST_BANNER_PHRASE = max(len(phrase) for phrase in _SEPARATOR_WORDS.split("|"))

# Attribution lines: "On <date>, <name> wrote:" in each language.  Each entry is
# (opening word, closing phrase); the opening word is optional for the forms
# that begin with the name or the date.
_VERBS = (
    r"wrote|writes|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|pisze|napisał|napisała|skrev|"
    r"napsal|napsala|kirjoitti|написал|написала|написав|написала|пишет|írta"
)
_ATTRIBUTIONS: tuple[str, ...] = (
    r"on\b.{2,250}?\b(?:wrote|writes|said)\s*:",
    r"am\b.{2,250}?\bschrieb\b.{0,150}?:",
    r"le\b.{2,250}?\ba\s+écrit\s*:",
    r"el\b.{2,250}?\bescribió\s*:",
    r"em\b.{2,250}?\bescreveu\s*:",
    r"il\b.{2,250}?\bha\s+scritto\s*:",
    r"op\b.{2,250}?\b(?:schreef|geschreven)\b.{0,150}?:",
    r"w\s+dniu\b.{2,250}?\b(?:pisze|napisał|napisała|napisał\(a\))\s*:",
    r"den\b.{2,250}?\bskrev\b.{0,150}?:",
    r"dne\b.{2,250}?\bnapsal(?:\(a\)|a)?\b.{0,150}?:",
    r"(?:в|у)\b.{2,250}?\b(?:написал|написала|написал\(а\)|пишет|написав|написала\(в\))\b.{0,150}?:",
    r"[0-9].{2,250}?\b(?:пользователь|користувач)\b.{2,250}?\b(?:написал|написав|написала)\b.{0,150}?:",
    r".{2,250}?(?:写道|寫道)\s*[:：]",
    r".{2,250}?(?:のメッセージ|は書きました|が書きました)\s*[:：]",
    r".{2,250}?님이\s*작성\s*[:：]?",
    # "Some One <some.one@example.com> wrote:": a verb next to an address is
    # as telling as an opening word.
    r".{0,150}?<?[\w.+-]+@[\w-]+(?:\.[\w-]+)+>?.{0,100}?\b(?:" + _VERBS + r")\b.{0,80}?:",
    # Gmail's date-first attributions: "2016-03-03 17:21 GMT+01:00 Ann <a@b.c>:"
    # and the older "2013/7/20 Ann <a@b.c>", which carry no verb at all.
    r"\d{4}-\d{1,2}-\d{1,2}\s+\d{1,2}:\d{2}\s+GMT[+-]\d{1,2}:?\d{2}\b.{0,250}",
    r"\d{4}/\d{1,2}/\d{1,2}\s.{0,200}<[^<>@\s]+@[^<>\s]+>\s*:?",
)
# A word (or date shape) that every entry of _ATTRIBUTIONS and _BARE_ATTRIBUTION contains: a line
# without one cannot match them. Keep it in step with the two lists above and below.
_ATTRIBUTION_WORDS = (
    "wrote", "writes", "said", "schrieb", "écrit", "escribió", "escreveu", "scritto", "schreef", "geschreven",
    "pisze", "napisa", "skrev", "napsal", "написа", "пишет", "kirjoitti", "írta", "写道", "寫道", "のメッセージ",
    "書きました", "작성", "gmt",
)
_GMAIL_SLASH_DATE = re.compile(r"\d{4}/\d{1,2}/\d{1,2}")
_ASCII_ATTRIBUTION_WORDS = tuple(word for word in _ATTRIBUTION_WORDS if word.isascii())


@functools.lru_cache(maxsize=8192)
def _line_may_be_attribution(line: str) -> bool:
    # The same line is asked about from every window that reaches it; remembering the answer per line
    # (a pure function of the text) makes that one test per line.
    return _may_be_attribution(line)


def _may_be_attribution(text: str) -> bool:
    # Plain substring tests: a case-insensitive regex alternation of these words costs ~100 us a line.
    low = text.lower()
    return any(word in low for word in _ATTRIBUTION_WORDS) or bool(_GMAIL_SLASH_DATE.search(text))


# The same closing phrases without an opening word, e.g. "John Doe <j@x> wrote:".
# These are weaker evidence and count only when a quoted block follows.
_BARE_ATTRIBUTION = re.compile(rf"^.{{1,200}}?\b(?:{_VERBS})\b.{{0,80}}:$", re.IGNORECASE)
_ATTRIBUTION = re.compile(rf"^[>\s]*(?:{'|'.join(_ATTRIBUTIONS)})\s*$", re.IGNORECASE)

# Without a known verb, a line ending in ":" that carries a date or an address
# (Yandex: '26.06.2014, 14:41, "Alexander L" <a@b>:') introduces a quote.
_DATE_OR_ADDRESS = re.compile(
    r"(?:\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b|\b\d{1,2}:\d{2}\b|<?[\w.+-]+@[\w-]+\.[\w.-]+>?|\b(?:19|20)\d{2}\b)"
)

_ADDRESS_START = re.compile(r"^(?:mailto:)?[\w.+-]+@[\w-]+")

# A line that ends a sentence ("...tomorrow.") rather than an abbreviation or
# a date ("Fr., 28.") cannot be the first half of a wrapped attribution.
_SENTENCE_END = re.compile(r"[^\W\d_]{3,}[.!?]$")
_SENTENCE_MARKS = (".", "!", "?", ".\n", "!\n", "?\n")

# How many lines a wrapped attribution may span.
MAX_ATTRIBUTION_LINES = 4
# How many blank lines a badly wrapped attribution may contain.
_MAX_BLANKS_INSIDE = 2


def header_field(line: str) -> HeaderField | None:
    """The header field a line starts with, if any."""
    if not _has_colon(line):
        # Every field name is followed by a colon; this one test spares five patterns on most lines.
        return None
    for field, pattern in _FIELDS:
        if pattern.match(line):
            return field
    return None


def is_separator(line: str) -> bool:
    """Whether the line is an original-message or forwarded-message banner."""
    return bool(
        _may_be_banner(line) and _SEPARATOR.match(line) or _has_colon(line) and _FORWARD_SENTENCE.match(line)
    )


def is_underscore_rule(line: str) -> bool:
    """Whether the line is Outlook's rule of underscores above a quoted header block."""
    return _may_be_rule(line) and bool(_UNDERSCORE_RULE.match(line))


def may_start_history(line: str) -> bool:
    """A quick test that rules out most lines; False means the line is no banner, rule, header or intro.

    That is, ``is_separator``, ``is_underscore_rule`` and ``is_date_or_address_intro`` are false
    and ``header_field`` is None.  Those try two dozen patterns between them, while prose lines,
    nearly all that a reply holds, fail the plain character tests here.
    """
    return _has_colon(line) or _may_be_rule(line) or _may_be_banner(line)


# The quick tests below are necessary conditions of the patterns named: a line that fails one
# cannot match the pattern, so testing first changes no answer.


def _has_colon(line: str) -> bool:
    # _FIELDS, _FORWARD_SENTENCE and is_date_or_address_intro all require a colon, plain or full-width.
    return ":" in line or "：" in line


def _may_be_rule(line: str) -> bool:
    # _UNDERSCORE_RULE requires ten underscores or twenty dashes in a row.
    return "__________" in line or "--------------------" in line


def _may_be_banner(line: str) -> bool:
    # _SEPARATOR is a known phrase framed by blanks, quote marks, rules and a colon: with the frame
    # stripped, what is left is the phrase, so a longer rest is no banner.
    return len(line.strip(_BANNER_FRAME)) <= _LONGEST_BANNER_PHRASE


def attribution_span(lines: Sequence[str], start: int, *, strong_only: bool = False, _nested: bool = False) -> int:
    """How many lines, starting at ``start``, form an attribution line (0 when none).

    Clients wrap long attributions ("On Mon, 1 Feb 2016 at 04:58, Some One
    <foo@bar.com>\\nwrote:"), so one to three lines are joined and tried, the
    shortest first.  With ``strong_only`` the bare "<name> wrote:" form is not
    accepted; callers use it where no quoted block confirms the attribution.
    """
    first = lines[start].strip()
    if not first or first.startswith(">"):
        return 0
    window_end = min(start + MAX_ATTRIBUTION_LINES + _MAX_BLANKS_INSIDE, len(lines))
    if not any(_line_may_be_attribution(lines[i]) for i in range(start, window_end)):
        # No line in reach carries an attribution word, so no joining of them can match: the common
        # case of ordinary text, decided without building and matching the joined lines.
        return 0
    joined = ""
    blanks = 0
    pieces = 0
    carries_word = False
    for position in range(start, min(start + MAX_ATTRIBUTION_LINES + _MAX_BLANKS_INSIDE, len(lines))):
        # Continuations may have been mangled into quotes ("> wrote:") or be
        # separated by blank lines when a client wrapped an address badly.
        piece = lines[position].strip().lstrip(">").strip() if position > start else first
        if not piece:
            blanks += 1
            if blanks > _MAX_BLANKS_INSIDE:
                break
            continue
        if pieces and (_ends_sentence(joined) or not _continues(joined, piece) and (
            _opens_attribution(piece) or not _nested and attribution_span(lines, position, _nested=True)
        )):
            # A finished sentence is reply text, not the start of an attribution;
            # a piece that starts an attribution by itself ("Thanks, / Ann //
            # On Mon, ... wrote:") is the real start, and the lines above stay.
            break
        pieces += 1
        if pieces > MAX_ATTRIBUTION_LINES:
            break
        joined = f"{joined} {piece}" if joined else piece
        if len(joined) > 400:
            break
        # Every attribution form carries one of the attribution words (or a Gmail date); checking
        # for one spares the long, backtracking alternation below on ordinary lines, which are
        # nearly all.  The joined text carries one exactly when one of its lines does: no word
        # holds a blank or a ">", so none spans a joint or loses a letter to the stripping, and the
        # answer per line is already remembered from the test of the window above.
        carries_word = carries_word or _line_may_be_attribution(lines[position])
        if not carries_word:
            continue
        if _ATTRIBUTION.match(joined):
            return position - start + 1
        # The verb-only form is weak evidence, so it may not span blank lines.
        if not strong_only and not blanks and _BARE_ATTRIBUTION.match(joined):
            return position - start + 1
    return 0


def _ends_sentence(text: str) -> bool:
    # _SENTENCE_END needs a full stop, "!" or "?" at the end (where "$" also allows a final line
    # break): testing the last character first spares the pattern on most texts.  Only the tail can
    # end a sentence; searching the whole joined text backtracks over every word.
    return text.endswith(_SENTENCE_MARKS) and bool(_SENTENCE_END.search(text[-64:]))


@functools.lru_cache(maxsize=4096)
def _opens_attribution(piece: str) -> bool:
    # Every start above an attribution asks about the lines below it, and each of their nested
    # starts asks again; remembering the answer per piece (a pure function of it) makes it one
    # match per line.
    return bool(_ATTRIBUTION.match(piece))


def attribution_reach(lines: Sequence[str]) -> list[bool]:
    """For each line, whether an attribution may start there; False means ``attribution_span`` is 0.

    This is the first test of ``attribution_span`` (does a line within reach pass
    ``_may_be_attribution``?) made for a whole text at once, for callers that ask about every line:
    a handful of searches through the text instead of two dozen per line.
    """
    text = "\n".join(lines)
    if text.count("\n") == len(lines) - 1:
        hits = _attribution_lines(text, lines)
    else:
        # Lines with breaks of their own would put the line numbers out of step; ask line by line.
        hits = {index for index, line in enumerate(lines) if _may_be_attribution(line)}
    window = MAX_ATTRIBUTION_LINES + _MAX_BLANKS_INSIDE
    reach = [False] * len(lines)
    for hit in hits:
        # attribution_span looks this many lines down, so these starts reach the line.
        first = max(hit - window + 1, 0)
        reach[first : hit + 1] = [True] * (hit + 1 - first)
    return reach


def _attribution_lines(text: str, lines: Sequence[str]) -> set[int]:
    """The indices of the lines of ``text`` (``lines`` joined by line breaks) that pass _may_be_attribution."""
    # Lowering maps no character to or from a line break, so the lowered text has the same lines.
    low = text.lower()
    hits: set[int] = set()
    # Words with letters beyond ASCII cannot occur in ASCII text, which most replies are.
    for word in _ASCII_ATTRIBUTION_WORDS if low.isascii() else _ATTRIBUTION_WORDS:
        hits.update(_lines_containing(low, word))
    # Every Gmail date has slashes, so only lines with one need the pattern.
    hits.update(index for index in _lines_containing(text, "/") if _GMAIL_SLASH_DATE.search(lines[index]))
    return hits


def _lines_containing(text: str, needle: str) -> Iterator[int]:
    """The index of each line of ``text`` that contains ``needle`` (which holds no line break)."""
    line = 0
    counted = 0
    position = text.find(needle)
    while position >= 0:
        line += text.count("\n", counted, position)
        counted = position
        yield line
        # One occurrence is enough for a line: go on from the next line.
        line_end = text.find("\n", position)
        if line_end < 0:
            return
        position = text.find(needle, line_end)


def _continues(joined: str, piece: str) -> bool:
    """Whether ``piece`` carries on a wrapped line rather than starting a new one.

    Clients wrap attributions inside the address ("Ann <" / "ann@b.c> wrote:").
    """
    return joined.endswith(("<", ",", "(", '"')) or piece.startswith(("<", "(", "[")) or bool(_ADDRESS_START.match(piece))


def is_date_or_address_intro(line: str) -> bool:
    """Whether a line looks like an unlabelled attribution: ends in ":" and names a date or address."""
    stripped = line.strip()
    return stripped.endswith((":", "：")) and len(stripped) < 250 and bool(_DATE_OR_ADDRESS.search(stripped))
