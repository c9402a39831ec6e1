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
from collections.abc import Sequence
from enum import Enum

__all__ = [
    "HeaderField",
    "attribution_span",
    "header_field",
    "is_date_or_address_intro",
    "is_separator",
    "is_underscore_rule",
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

# How many lines a wrapped attribution may span.
MAX_ATTRIBUTION_LINES = 4
# How many blank lines a badly wrapped attribution may contain.
_MAX_BLANKS_INSIDE = 2


def header_field(line: str) -> HeaderField | None:
    """The header field a line starts with, if any."""
    for field, pattern in _FIELDS:
        if pattern.match(line):
            return field
    return None


def is_separator(line: str) -> bool:
    """Whether the line is an original-message or forwarded-message banner."""
    return bool(_SEPARATOR.match(line) or _FORWARD_SENTENCE.match(line))


def is_underscore_rule(line: str) -> bool:
    """Whether the line is Outlook's rule of underscores above a quoted header block."""
    return bool(_UNDERSCORE_RULE.match(line))


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
    for position in range(start, min(start + MAX_ATTRIBUTION_LINES + _MAX_BLANKS_INSIDE, len(lines))):
        # Continuations may have been mangled into quotes ("> wrote:") or be
        # separated by blank lines when a client wrapped an address badly.
        piece = lines[position].strip().lstrip(">").strip() if position > start else first
        if not piece:
            blanks += 1
            if blanks > _MAX_BLANKS_INSIDE:
                break
            continue
        # Only the tail can end a sentence; searching the whole joined text backtracks over every word.
        if pieces and (_SENTENCE_END.search(joined[-64:]) or not _continues(joined, piece) and (
            _ATTRIBUTION.match(piece) or not _nested and attribution_span(lines, position, _nested=True)
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
        if not _may_be_attribution(joined):
            # Every attribution form carries one of these words (or a Gmail date); one quick search
            # spares the long, backtracking alternation below on ordinary lines, which are nearly all.
            continue
        if _ATTRIBUTION.match(joined):
            return position - start + 1
        # The verb-only form is weak evidence, so it may not span blank lines.
        if not strong_only and not blanks and _BARE_ATTRIBUTION.match(joined):
            return position - start + 1
    return 0


def _continues(joined: str, piece: str) -> bool:
    """Whether ``piece`` carries on a wrapped line rather than starting a new one.

    Clients wrap attributions inside the address ("Ann <" / "ann@b.c> wrote:").
    """
    return joined.endswith(("<", ",", "(", '"')) or piece.startswith(("<", "(", "[")) or bool(_ADDRESS_START.match(piece))


def is_date_or_address_intro(line: str) -> bool:
    """Whether a line looks like an unlabelled attribution: ends in ":" and names a date or address."""
    stripped = line.strip()
    return stripped.endswith((":", "：")) and len(stripped) < 250 and bool(_DATE_OR_ADDRESS.search(stripped))
