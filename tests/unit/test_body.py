# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for intake.body: quote stripping, signatures, HTML text and sanitising."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intake.body import BodyText, extract_body, html_to_text, split_signature, strip_quotes

REPLY = "Yes, the new build fixes it."
HISTORY = "Does the new build fix the crash?\nIt happens on start."

# (client or language, attribution or header text put between the reply and the history)
HISTORY_MARKERS: list[tuple[str, str]] = [
    ("gmail en", "On Mon, 3 Feb 2025 at 10:15, Ann Smith <ann@example.com> wrote:"),
    ("gmail en wrapped", "On Mon, 3 Feb 2025 at 10:15, Ann Smith <\nann@example.com> wrote:"),
    ("apple mail en", "On Feb 3, 2025, at 10:15 AM, Ann Smith wrote:"),
    ("thunderbird en", "On 03.02.2025 10:15, Ann Smith wrote:"),
    ("bare name with address", "Ann Smith <ann@example.com> wrote:"),
    ("gmail de", "Am Mo., 3. Feb. 2025 um 10:15 Uhr schrieb Ann Smith <ann@example.com>:"),
    ("gmail de wrapped", "Ann Smith <ann@example.com> schrieb am Mo., 3.\nFeb. 2025 um 10:15 Uhr:"),
    ("thunderbird de", "Am 03.02.2025 um 10:15 schrieb Ann Smith:"),
    ("gmail fr", "Le lun. 3 févr. 2025 à 10:15, Ann Smith <ann@example.com> a écrit :"),
    ("gmail es", "El lun, 3 feb 2025 a las 10:15, Ann Smith (<ann@example.com>) escribió:"),
    ("gmail pt", "Em seg., 3 de fev. de 2025 às 10:15, Ann Smith <ann@example.com> escreveu:"),
    ("gmail it", "Il giorno lun 3 feb 2025 alle ore 10:15 Ann Smith <ann@example.com> ha scritto:"),
    ("gmail nl", "Op ma 3 feb. 2025 om 10:15 schreef Ann Smith <ann@example.com>:"),
    ("outlook mobile nl", 'Op 3 feb. 2025 10:15 schreef "Ann Smith" <ann@example.com> het\nvolgende geschreven:'),
    ("gmail pl", "W dniu pon., 3.02.2025 o 10:15 Ann Smith <ann@example.com> napisał(a):"),
    ("gmail da", "Den man. 3. feb. 2025 kl. 10.15 skrev Ann Smith <ann@example.com>:"),
    ("gmail sv", "Den mån 3 feb. 2025 kl 10:15 skrev Ann Smith <ann@example.com>:"),
    ("gmail no", "Man. 3. feb. 2025 kl. 10:15 skrev Ann Smith <ann@example.com>:"),
    ("gmail ru", "пн, 3 февр. 2025 г. в 10:15, Ann Smith <ann@example.com>:"),
    ("android ru", '03.02.2025 10:15 пользователь "Ann Smith" <\nann@example.com> написал:'),
    ("thunderbird ru", "03.02.2025 10:15, Ann Smith пишет:"),
    ("ukrainian", "пн, 3 лют. 2025 р. о 10:15 Ann Smith <ann@example.com> написав:"),
    ("gmail cs", "po 3. 2. 2025 v 10:15 odesílatel Ann Smith <ann@example.com> napsal:"),
    ("gmail zh", "Ann Smith <ann@example.com> 于2025年2月3日周一 10:15写道："),
    ("qq zh", "在 2025年2月3日 10:15，Ann Smith <ann@example.com> 写道："),
    ("gmail ja", "2025年2月3日(月) 10:15 Ann Smith <ann@example.com>:"),
    ("gmail iso date", "2025-02-03 10:15 GMT+01:00 Ann Smith <ann@example.com>:"),
    ("gmail old date", "2013/7/20 Ann Smith <ann@example.com>"),
    ("yandex", '03.02.2025, 10:15, "Ann Smith" <ann@example.com>:'),
    ("outlook en", "From: Ann Smith <ann@example.com>\nSent: Monday, February 3, 2025 10:15 AM\nTo: Support <support@example.com>\nSubject: Crash"),
    ("outlook en underscores", "________________________________\nFrom: Ann Smith <ann@example.com>\nSent: Monday, February 3, 2025 10:15 AM\nTo: support@example.com\nSubject: Crash"),
    ("outlook bold", "*From:* Ann Smith <ann@example.com>\n*Sent:* Monday, February 3, 2025 10:15 AM\n*To:* support@example.com\n*Subject:* Crash"),
    ("outlook de", "Von: Ann Smith <ann@example.com>\nGesendet: Montag, 3. Februar 2025 10:15\nAn: support@example.com\nBetreff: Absturz"),
    ("outlook fr", "De : Ann Smith <ann@example.com>\nEnvoyé : lundi 3 février 2025 10:15\nÀ : support@example.com\nObjet : Plantage"),
    ("outlook es", "De: Ann Smith <ann@example.com>\nEnviado: lunes, 3 de febrero de 2025 10:15\nPara: support@example.com\nAsunto: Fallo"),
    ("outlook pt", "De: Ann Smith <ann@example.com>\nEnviada em: segunda-feira, 3 de fevereiro de 2025 10:15\nPara: support@example.com\nAssunto: Falha"),
    ("outlook nl", "Van: Ann Smith <ann@example.com>\nVerzonden: maandag 3 februari 2025 10:15\nAan: support@example.com\nOnderwerp: Crash"),
    ("outlook pl", "Od: Ann Smith <ann@example.com>\nWysłane: poniedziałek, 3 lutego 2025 10:15\nDo: support@example.com\nTemat: Awaria"),
    ("outlook da", "Fra: Ann Smith <ann@example.com>\nSendt: 3. februar 2025 10:15\nTil: support@example.com\nEmne: Nedbrud"),
    ("outlook sv", "Från: Ann Smith <ann@example.com>\nSkickat: den 3 februari 2025 10:15\nTill: support@example.com\nÄmne: Krasch"),
    ("outlook ru", "От: Ann Smith <ann@example.com>\nОтправлено: 3 февраля 2025 г. 10:15\nКому: support@example.com\nТема: Сбой"),
    ("outlook it", "Da: Ann Smith <ann@example.com>\nInviato: lunedì 3 febbraio 2025 10:15\nA: support@example.com\nOggetto: Errore"),
    ("outlook ja", "差出人: Ann Smith <ann@example.com>\n送信日時: 2025年2月3日 10:15\n宛先: support@example.com\n件名: クラッシュ"),
    ("hotmail date first", "Date: Mon, 3 Feb 2025 10:15:00 +0100\nSubject: Crash\nFrom: ann@example.com\nTo: support@example.com"),
    ("original message en", "-----Original Message-----\nFrom: Ann Smith\nSent: Monday"),
    ("original message de", "-----Ursprüngliche Nachricht-----\nVon: Ann Smith"),
    ("original message fr", "-----Message d'origine-----\nDe : Ann Smith"),
    ("original message es", "-----Mensaje original-----\nDe: Ann Smith"),
    ("original message nl", "-----Oorspronkelijk bericht-----\nVan: Ann Smith"),
    ("original message ru", "-----Исходное сообщение-----\nОт: Ann Smith"),
    ("gmail forward", "---------- Forwarded message ---------\nFrom: Ann Smith <ann@example.com>\nDate: Mon, Feb 3, 2025"),
    ("gmail forward de", "---------- Weitergeleitete Nachricht ---------\nVon: Ann Smith <ann@example.com>"),
    ("apple forward", "Begin forwarded message:\n\nFrom: Ann Smith <ann@example.com>\nSubject: Crash"),
]

# Attributions with neither an opening word nor a verb ("<date>, <name> <address>:").
WEAK_MARKERS = frozenset({"gmail ru", "gmail ja", "yandex", "thunderbird ru"})
QUOTED_HISTORY = "\n".join(f"> {line}" for line in HISTORY.split("\n"))


@pytest.mark.parametrize(("client", "marker"), HISTORY_MARKERS, ids=[row[0] for row in HISTORY_MARKERS])
def test_history_after_marker_is_removed(client: str, marker: str) -> None:
    # Clients quote history with ">" after attributions and leave it bare after
    # header blocks; either way only the reply may remain.  Markers without a
    # verb are weak evidence and count only when a quote follows them.
    quoted = "\n".join(f"> {line}" for line in HISTORY.split("\n"))
    for history in (quoted,) if client in WEAK_MARKERS else (HISTORY, quoted):
        text = f"{REPLY}\n\n{marker}\n\n{history}\n"
        assert strip_quotes(text) == REPLY, client


@pytest.mark.parametrize(("client", "marker"), HISTORY_MARKERS[:5], ids=[row[0] for row in HISTORY_MARKERS[:5]])
def test_crlf_line_endings(client: str, marker: str) -> None:
    text = f"{REPLY}\n\n{marker}\n{QUOTED_HISTORY}\n".replace("\n", "\r\n")
    assert strip_quotes(text) == REPLY


def test_quoted_block_without_attribution_is_removed() -> None:
    assert strip_quotes(f"{REPLY}\n\n{QUOTED_HISTORY}\n>\n> Ann") == REPLY


def test_supercite_and_pipe_quotes_are_quotes() -> None:
    assert strip_quotes(f"{REPLY}\n\nAS> first\nAS> second\n") == REPLY
    assert strip_quotes(f"{REPLY}\n\n| first\n| second\n") == REPLY


INLINE = """On Mon, 3 Feb 2025, Ann <ann@example.com> wrote:
> Which printer do you use?
HP LaserJet 4000

> Is the driver up to date?
Yes.

> Thanks,
> Ann
> On Sun, 2 Feb 2025, Bob wrote:
>> older history
"""


def test_inline_answers_keep_their_questions() -> None:
    result = strip_quotes(INLINE)
    assert result.split("\n") == [
        "> Which printer do you use?",
        "HP LaserJet 4000",
        "",
        "> Is the driver up to date?",
        "Yes.",
    ]


def test_inline_answers_below_text_keep_questions() -> None:
    text = "Answers below.\n\n> Which printer?\nHP 4000\n\n> Driver?\nYes.\n\n> Old history\n> more"
    assert strip_quotes(text) == "Answers below.\n\n> Which printer?\nHP 4000\n\n> Driver?\nYes."


def test_bottom_post_drops_leading_quote() -> None:
    text = "On Mon, 3 Feb 2025, Ann <ann@example.com> wrote:\n\n> Is it fixed?\n\nYes, since Friday."
    assert strip_quotes(text) == "Yes, since Friday."


def test_signoffs_stay_in_strip_quotes() -> None:
    text = "Works now.\n\nThanks,\nAlex\n\nOn Mon, 3 Feb 2025, Ann <ann@example.com> wrote:\n> Try again?"
    assert strip_quotes(text) == "Works now.\n\nThanks,\nAlex"
    assert extract_body(text, None).visible == "Works now.\n\nThanks,\nAlex"


def test_forward_without_text_keeps_forwarded_body() -> None:
    text = "---------- Forwarded message ---------\nFrom: Ann <ann@example.com>\nDate: Mon\nSubject: x\nTo: s@example.com\n\nThe printer is on fire."
    assert strip_quotes(text) == "The printer is on fire."


def test_all_quoted_message_has_empty_visible_text() -> None:
    assert strip_quotes("> only\n> quote\n") == ""


def test_plain_text_is_untouched() -> None:
    text = "Line one\n\n  indented code\nFrom here on it works.\nTo be clear: it works."
    assert strip_quotes(text) == text


def test_languages_argument_is_accepted() -> None:
    text = f"{REPLY}\n\nAm 03.02.2025 um 10:15 schrieb Ann:\n{QUOTED_HISTORY}"
    assert strip_quotes(text, languages=["de"]) == REPLY


SIGNATURES: list[tuple[str, str, str | None]] = [
    ("rfc 3676 delimiter", "Works.\n\n-- \nJane Doe\nACME", "Jane Doe\nACME"),
    ("bare double dash", "Works.\n\n--\nrick", "rick"),
    ("iphone en", "Works.\n\nSent from my iPhone", "Sent from my iPhone"),
    ("iphone de", "Works.\n\nVon meinem iPhone gesendet", "Von meinem iPhone gesendet"),
    ("iphone fr", "Works.\n\nEnvoyé de mon iPhone", "Envoyé de mon iPhone"),
    ("ipad no", "Works.\n\nSendt fra min iPad", "Sendt fra min iPad"),
    ("sparrow", "Works.\n\nSent with Sparrow (http://www.sparrowmailapp.com/?sig)", "Sent with Sparrow (http://www.sparrowmailapp.com/?sig)"),
    ("outlook android", "Works.\n\nGet Outlook for Android", "Get Outlook for Android"),
    ("blackberry", "Works.\n\nSent from my Verizon Wireless BlackBerry", "Sent from my Verizon Wireless BlackBerry"),
    ("name via mobile", "Works.\n\nStavros X\nvia mobile", "Stavros X\nvia mobile"),
    ("corporate rule", "Works.\n\n----------------\nJohn Doe\nt. 555-931-0702\nhttp://example.com/", "----------------\nJohn Doe\nt. 555-931-0702\nhttp://example.com/"),
    ("closing formula kept", "Works.\n\nThanks,\nAlex", None),
    ("regards kept", "Works.\n\nMit freundlichen Grüßen\nAnna Schmidt", None),
    ("sentence about sending", "Works.\n\nSent from a magnificent torch of pixels", None),
    ("markdown rule in text", "Step one.\n\n---\n\nStep two is longer and explains things.", None),
    ("only a signature", "-- \nJane", None),
]


@pytest.mark.parametrize(("case", "text", "signature"), SIGNATURES, ids=[row[0] for row in SIGNATURES])
def test_split_signature(case: str, text: str, signature: str | None) -> None:
    body, found = split_signature(text)
    assert found == signature, case
    if signature is None:
        assert body == text
    else:
        assert body == "Works."


def test_signature_below_quote_is_kept_and_quote_removed() -> None:
    text = "Fine.\n\n> old question\n> more\n\n-- \nJane Doe"
    assert strip_quotes(text) == "Fine.\n\n-- \nJane Doe"
    assert extract_body(text, None) == BodyText(visible="Fine.", full=text, signature="Jane Doe", html=None)


GMAIL_HTML = (
    '<div dir="ltr">Hi. I am fine.<br><br>Thanks, Alex</div><br>'
    '<div class="gmail_quote"><div class="gmail_attr">On Thu, Jun 26, 2014 at 2:41 PM, Ann &lt;ann@example.com&gt; wrote:</div>'
    '<blockquote class="gmail_quote">Hello! How are you?<br><blockquote>older</blockquote></blockquote></div>'
)
OUTLOOK_HTML = (
    "<div><p>Hi. I am fine.</p><p>Thanks, Alex</p></div>"
    '<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr">'
    "<b>From:</b> Ann &lt;ann@example.com&gt;<br><b>Sent:</b> Thursday, June 26, 2014 2:41 PM<br>"
    "<b>To:</b> Alex<br><b>Subject:</b> Test</div><div>Hello! How are you?</div>"
)
THUNDERBIRD_HTML = (
    "<p>Hi. I am fine.</p><p>Thanks,<br>Alex</p>"
    '<div class="moz-cite-prefix">On 26.06.2014 14:41, Ann wrote:<br></div>'
    '<blockquote type="cite">Hello! How are you?</blockquote>'
)


@pytest.mark.parametrize("html", [GMAIL_HTML, OUTLOOK_HTML, THUNDERBIRD_HTML], ids=["gmail", "outlook", "thunderbird"])
def test_html_only_reply(html: str) -> None:
    body = extract_body(None, html)
    assert "".join(body.visible.split()) == "Hi.Iamfine.Thanks,Alex"
    assert "How are you" in body.full


def test_html_to_text_marks_nested_blockquotes() -> None:
    text = html_to_text("<p>Answer</p><div>On Mon, Ann wrote:</div><blockquote>Q<blockquote>older</blockquote></blockquote>")
    assert text.split("\n") == ["Answer", "", "On Mon, Ann wrote:", "> Q", "> > older"]


def test_html_to_text_drops_scripts_and_hidden_text() -> None:
    text = html_to_text("<style>p{color:red}</style><script>alert(1)</script><p>Visible</p>")
    assert text == "Visible"


def test_text_part_is_preferred_over_html() -> None:
    body = extract_body("Plain answer.", "<p>HTML answer.</p>")
    assert body.visible == "Plain answer."
    assert body.full == "Plain answer."
    assert body.html == "<p>HTML answer.</p>"


SANITISE: list[tuple[str, str, str]] = [
    ("script", '<p>ok</p><script>alert("x")</script>', "<script"),
    ("style", "<style>body{display:none}</style><p>ok</p>", "<style"),
    ("onerror", '<img src="cid:logo@x" onerror="alert(1)">', "onerror"),
    ("onclick", '<a href="https://example.com" onclick="steal()">x</a>', "onclick"),
    ("javascript url", '<a href="javascript:alert(1)">x</a>', "javascript:"),
    ("data url", '<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>', "data:"),
    ("iframe", '<iframe src="https://evil.example"></iframe>', "<iframe"),
]


@pytest.mark.parametrize(("case", "html", "forbidden"), SANITISE, ids=[row[0] for row in SANITISE])
def test_sanitising_removes_dangerous_content(case: str, html: str, forbidden: str) -> None:
    cleaned = extract_body(None, html).html
    assert cleaned is not None
    assert forbidden not in cleaned.lower(), case


def test_sanitising_keeps_cid_and_links() -> None:
    html = '<p><img src="cid:logo@example.com"><a href="https://example.com/x">web</a><a href="mailto:a@example.com">mail</a></p>'
    cleaned = extract_body(None, html).html
    assert cleaned is not None
    assert 'src="cid:logo@example.com"' in cleaned
    assert 'href="https://example.com/x"' in cleaned
    assert 'href="mailto:a@example.com"' in cleaned


def test_empty_bodies() -> None:
    assert extract_body(None, None) == BodyText(visible="", full="", signature=None, html=None)
    assert extract_body("", "") == BodyText(visible="", full="", signature=None, html="")


QUOTE_LINES = st.sampled_from(
    ["> quoted", "On Mon, Ann <a@b.c> wrote:", "From: x", "Sent: y", "-- ", "Sent from my iPhone", "", "text", "<", "___________"]
)


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.none(), st.text(), st.lists(st.one_of(QUOTE_LINES, st.text(max_size=30))).map("\n".join)),
    html=st.one_of(st.none(), st.text(), st.lists(st.sampled_from(["<blockquote>", "</blockquote>", "<p>", "x", "<script>", "&amp;", "<br>"])).map("".join)),
)
def test_extract_body_never_raises(text: str | None, html: str | None) -> None:
    body = extract_body(text, html)
    assert isinstance(body.visible, str)
    assert isinstance(body.full, str)


# The library's header expression is only run on windows around candidate lines (for speed); these
# tests hold that to give exactly what a scan of the whole text gives.
def _full_scan_markers(lines: list[str]) -> frozenset[int]:
    from mailparser_reply import EmailMessage
    from mailparser_reply.constants import MAIL_LANGUAGES

    from intake.quotes import DEFAULT_LANGUAGES, _is_quoted

    known = [language for language in DEFAULT_LANGUAGES if language in MAIL_LANGUAGES]
    stripped = "\n".join(line.strip() for line in lines)
    found = set()
    for match in EmailMessage(text="", languages=known).HEADER_REGEX.finditer(stripped):
        offset = match.start()
        while offset < len(stripped) and stripped[offset] == "\n":
            offset += 1
        index = stripped.count("\n", 0, offset)
        if index < len(lines) and not _is_quoted(lines[index]):
            found.add(index)
    return frozenset(found)


_LINE_POOL = [
    "Hello,", "", "Thanks for the quick answer.", "On Mon, 1 Feb 2016 at 04:58, Some One <a@b.c>", "wrote:",
    "On Tuesday Jane Doe wrote:", "> quoted text", "> On Mon, Bob wrote:", "From: Jane <jane@x.example>",
    "Sent: Monday, 1 February 2016 10:00", "To: support@example.com", "Subject: Re: printer",
    "Von: Jane", "Gesendet: Montag", "An: support", "Betreff: Drucker", "-----Original Message-----",
    "Am 01.02.2016 um 10:00 schrieb Jane Doe <j@x.example>:", "Time: 10:00", "Product: LaserJet",
    "2016年2月1日 10:00 Jane <j@x.example>:", "Od: Jan", "Wysłano: poniedziałek", "-----", "*From:* Jane",
]


@given(st.lists(st.sampled_from(_LINE_POOL), max_size=40))
@settings(max_examples=300, deadline=None)
def test_windowed_library_scan_equals_a_full_scan(lines):
    from intake.quotes import DEFAULT_LANGUAGES, _library_markers

    assert _library_markers(lines, DEFAULT_LANGUAGES) == _full_scan_markers(lines)


def test_windowed_library_scan_equals_a_full_scan_on_the_corpus(corpus_dir):
    from intake.quotes import DEFAULT_LANGUAGES, _library_markers

    inputs = [p for p in (corpus_dir / "reply").rglob("*") if p.is_file() and not p.name.endswith(
        (".json", ".txt")) or p.name.endswith("_body")]
    assert inputs
    for path in inputs:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        assert _library_markers(lines, DEFAULT_LANGUAGES) == _full_scan_markers(lines), path.name
