# SPDX-License-Identifier: GPL-3.0-or-later
"""Tables and properties for store/codes.py: case numbers, subject tags, signed tokens."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from inscriptis import get_text

from store.codes import (
    CASE_NUMBER_WIDTH,
    Signer,
    TokenCheck,
    clean_subject,
    find_case_numbers,
    format_case_number,
    format_tag,
    tag_subject,
)

KEY = b"test key, not a secret"
SIGNER = Signer(KEY)
OTHER_SIGNER = Signer(b"another key")
SUPPORT = "support@example.com"

# ---------------------------------------------------------------------------------------
# Case numbers and tags
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1, "00000001"),
        (9, "00000009"),
        (10, "00000010"),
        (1234, "00001234"),
        (12345678, "12345678"),
        (99999999, "99999999"),
    ],
)
def test_format_case_number(number: int, text: str) -> None:
    assert format_case_number(number) == text
    assert len(text) == CASE_NUMBER_WIDTH
    assert format_tag(number) == f"[Case #{text}]"
    assert find_case_numbers(format_tag(number)) == (number,)


@pytest.mark.parametrize("number", [0, -1, 10**CASE_NUMBER_WIDTH, 10**9])
def test_format_case_number_rejects_out_of_range(number: int) -> None:
    with pytest.raises(ValueError):
        format_case_number(number)


@pytest.mark.parametrize("number", [True, 1.0, "1"])
def test_format_case_number_rejects_non_int(number: object) -> None:
    with pytest.raises(TypeError):
        format_case_number(number)  # type: ignore[arg-type]


# Reply and forward prefixes as mail clients write them, in the languages we promise.
PREFIXES = [
    "Re:", "RE:", "re:", "Aw:", "AW:", "Sv:", "SV:", "Antw:", "Ant:", "Vs:", "VS:", "Vá:",
    "RV:", "Rif:", "RIF:", "R:", "Odp:", "YNT:", "回复:", "回复：", "答复:", "回覆:", "转发:",
    "轉寄:", "Fwd:", "FWD:", "Fw:", "FW:", "WG:", "TR:", "Enc:", "Doorst:", "PD:", "Réf:",
    "Ref:", "Re[2]:", "Re(2):", "RE :", "Re^3:", "AW[12]:", "İLT:", "Отв:", "ΑΠ:", "返信:",
    "転送:", "답장:", "Res:", "VL:",
]

# Tag spellings that must all read as case 123.
TAGS = [
    "[Case #00000123]", "[Case 123]", "[case#123]", "Case#123", "(Case #123)",
    "[CASE #0000123]", "【Case #123】", "Case #123:", "［Case ＃１２３］", "[ Case # 123 ]",
    "（Case 123）", "[Case: 123]",
]


@pytest.mark.parametrize(("prefix", "tag"), list(itertools.product(PREFIXES, TAGS)))
def test_tag_under_every_prefix(prefix: str, tag: str) -> None:
    subject = f"{prefix} {tag} printer is broken"
    assert find_case_numbers(subject) == (123,)
    assert clean_subject(subject) == "printer is broken"
    assert tag_subject(123, subject) == "[Case #00000123] printer is broken"


STACKS = [
    "Re: RE: AW: Sv:",
    "Re[2]: Re(3):",
    "回复：转发:",
    "RE : Vá: Odp:",
    "Antw: Doorst: WG:",
    "Fwd:Fwd:Re:",
]
AFTER_TAG = ["", "Fwd:", "AW: WG:", "Re: [Case #123]"]


@pytest.mark.parametrize(
    ("stack", "tag", "after"), list(itertools.product(STACKS, TAGS[::2], AFTER_TAG))
)
def test_prefix_stacks_around_the_tag(stack: str, tag: str, after: str) -> None:
    # Prefixes are stripped before and right after our tag, however they interleave.
    subject = f"{stack} {tag} {after} printer"
    assert find_case_numbers(subject) == (123,)
    assert clean_subject(subject) == "printer"


@pytest.mark.parametrize(
    ("subject", "numbers"),
    [
        ("[Case #00000001]", (1,)),
        ("[Case #1]", (1,)),
        ("[Case #99999999]", (99999999,)),
        ("[Case #12345678] x", (12345678,)),
        ("printer broken [Case #00000042]", (42,)),
        ("printer [Case #00000042] broken", (42,)),
        ("see case #7 please", (7,)),
        ("CASE#7", (7,)),
        ("Case ＃7", (7,)),
        ("Case #7 - printer", (7,)),
        ("问题【Case #55】打印机", (55,)),
        ("打印机Case #56", (56,)),
        ("〔Case #57〕", (57,)),
        ("〖Case 58〗", (58,)),
        ("[Case #1] and [Case #2]", (1, 2)),
        ("[Case #2] and [Case #1]", (2, 1)),
        ("[Case #1] re [Case #00000001]", (1,)),
        ("Case #3 Case #3 Case #4", (3, 4)),
        ("Re: [Case #1] Fwd: [Case #2]", (1, 2)),
        ("[Case #5)", (5,)),
        ("(Case #0000005]", (5,)),
        ("Case #12.", (12,)),
        ("Case #12, and", (12,)),
        ("Case #12/13", (12,)),
        # Not tags: no brackets and no "#", other words, too many digits, zero.
        ("Invoice 123", ()),
        ("case 123", ()),
        ("Case123", ()),
        ("Case 123: printer", ()),
        ("Ticket #123", ()),
        ("[Ticket #123]", ()),
        ("Showcase #12", ()),
        ("Briefcase #12", ()),
        ("Case #123456789", ()),
        ("[Case #123456789]", ()),
        ("[Case #000000001]", ()),
        ("[Case #0]", ()),
        ("[Case #00000000]", ()),
        ("Case #12abc", ()),
        ("Case #", ()),
        ("[Case #]", ()),
        ("[Case #12 printer]", (12,)),
        ("[Case 12 printer]", ()),
        ("Case # 1 2", (1,)),
        ("", ()),
        ("Re: printer", ()),
        ("#123", ()),
        ("[#123]", ()),
        ("Case #١٢٣", ()),
    ],
)
def test_find_case_numbers(subject: str, numbers: tuple[int, ...]) -> None:
    assert find_case_numbers(subject) == numbers


@pytest.mark.parametrize(
    ("subject", "clean"),
    [
        ("", ""),
        ("   ", ""),
        ("printer", "printer"),
        ("  printer \t is\n broken  ", "printer is broken"),
        ("printer\u3000broken", "printer broken"),
        ("Re: printer", "printer"),
        ("Re:printer", "printer"),
        ("Re:Re:Re: printer", "printer"),
        ("RE : printer", "printer"),
        ("Re (2): printer", "printer"),
        ("Re [2] : printer", "printer"),
        ("Re: RE: AW: Sv: [Case #12] Fwd: printer", "printer"),
        ("[Case #12] Re: printer", "printer"),
        ("Case #12: printer", "printer"),
        ("Case #12 - printer", "printer"),
        ("Case #12 -5 degrees", "-5 degrees"),
        ("printer [Case #00000012]", "printer"),
        ("printer [Case #00000012] broken", "printer broken"),
        # Prefix words later in the subject are text.
        ("printer says Re: hello", "printer says Re: hello"),
        ("Question about Fwd: headers", "Question about Fwd: headers"),
        ("Re: Question about Fwd: headers", "Question about Fwd: headers"),
        # Prefix-like words that are not prefixes.
        ("Reference: manual", "Reference: manual"),
        ("Rev: 2 of the doc", "Rev: 2 of the doc"),
        ("Review: printer", "Review: printer"),
        ("Red printer", "Red printer"),
        ("Re printer", "Re printer"),
        ("Fwd printer", "Fwd printer"),
        # A bare tag inside the sentence loses its "#" and is no longer a tag.
        ("follow-up to case #12 printer", "follow-up to case 12 printer"),
        ("Re: [Case #1] about Case#2", "about Case 2"),
        ("Re: [Case #1] about Case ＃２", "about Case ２"),
        # Not our tags, so they stay.
        ("[Case #0] printer", "[Case #0] printer"),
        ("Case #123456789 printer", "Case #123456789 printer"),
        ("[Ticket #5] printer", "[Ticket #5] printer"),
        ("[Bug 5] Re: printer", "[Bug 5] Re: printer"),
        # Mozilla's forward wrapper.
        ("[Fwd: printer]", "printer"),
        ("[Fwd: Re: [Case #5] printer]", "printer"),
        # Everything stripped.
        ("Re:", ""),
        (":", ""),
        ("Re: : printer", "printer"),
        ("- printer", "printer"),
        ("— printer", "printer"),
        ("[Case #5]", ""),
        ("Re: [Case #5] Fwd:", ""),
        # Removal that brings a new tag together is cleaned again.
        ("[[Case #5]Case 7]", ""),
        ("Case [Case #5]#7 printer", "printer"),
    ],
)
def test_clean_subject(subject: str, clean: str) -> None:
    assert clean_subject(subject) == clean
    assert find_case_numbers(clean) == ()
    assert clean_subject(clean) == clean


@pytest.mark.parametrize(
    ("number", "subject", "tagged"),
    [
        (1, "printer", "[Case #00000001] printer"),
        (1, "", "[Case #00000001] (no subject)"),
        (1, "   ", "[Case #00000001] (no subject)"),
        (1, "Re:", "[Case #00000001] (no subject)"),
        (1, "[Case #00000001]", "[Case #00000001] (no subject)"),
        (1, "[Case #00000001] printer", "[Case #00000001] printer"),
        (1, "Re: [Case #00000001] printer", "[Case #00000001] printer"),
        (1, "Re: [Case 1] printer", "[Case #00000001] printer"),
        (1, "printer [Case #00000001]", "[Case #00000001] printer"),
        (2, "Re: [Case #00000001] printer", "[Case #00000002] printer"),
        (12345678, "AW: WG: printer", "[Case #12345678] printer"),
    ],
)
def test_tag_subject(number: int, subject: str, tagged: str) -> None:
    assert tag_subject(number, subject) == tagged
    assert find_case_numbers(tagged) == (number,)


# ---------------------------------------------------------------------------------------
# Message-IDs
# ---------------------------------------------------------------------------------------

NUMBERS = [1, 7, 42, 1234, 99999999]
UNIQUES = ["a", "Z9", "AbC123xyz", "0123456789abcdefghij"]
DOMAINS = ["example.com", "mail.example.co.uk", "localhost"]


@pytest.mark.parametrize(
    ("number", "unique", "domain"), list(itertools.product(NUMBERS, UNIQUES, DOMAINS))
)
def test_message_id_round_trip(number: int, unique: str, domain: str) -> None:
    mid = SIGNER.mint_message_id(number, unique, domain)
    assert mid.startswith(f"<cm.{format_case_number(number)}.{unique}.")
    assert mid.endswith(f"@{domain}>")
    ok = TokenCheck(number, True)
    assert SIGNER.read_message_id(mid) == ok
    assert SIGNER.read_message_id(mid[1:-1]) == ok
    assert SIGNER.read_message_id(f"  {mid}\t") == ok
    # Some servers change the case of Message-IDs; the signature survives.
    assert SIGNER.read_message_id(mid.upper()) == ok
    assert SIGNER.read_message_id(mid.lower()) == ok
    # Another key: the shape is ours, the signature is not.
    assert OTHER_SIGNER.read_message_id(mid) == TokenCheck(number, False)


def _flip(char: str) -> str:
    return "b" if char == "a" else "a"


def _message_id_forgeries() -> list[tuple[str, int]]:
    mid = SIGNER.mint_message_id(42, "unique1", "example.com")
    prefix, sig = mid[1:].split("@")[0].rsplit(".", 1)
    rows = []
    for i in range(len(sig)):
        forged = sig[:i] + _flip(sig[i]) + sig[i + 1:]
        rows.append((f"<{prefix}.{forged}@example.com>", 42))
    rows += [
        (f"<{prefix}.{sig[:-1]}@example.com>", 42),
        (f"<{prefix}.{sig}a@example.com>", 42),
        (f"<{prefix}.0000000000@example.com>", 42),
        # The right shape and signature, moved to another case or another unique part.
        (mid.replace("cm.00000042.", "cm.00000043."), 43),
        (mid.replace(".unique1.", ".unique2."), 42),
    ]
    # A signature from another purpose does not work as a Message-ID signature.
    reply_sig = SIGNER.reply_address(42, SUPPORT).split("@")[0].split(".")[1]
    footer_sig = SIGNER.footer_token(42)[14:-1]
    rows += [
        (f"<{prefix}.{reply_sig}@example.com>", 42),
        (f"<{prefix}.{footer_sig}@example.com>", 42),
    ]
    return rows


@pytest.mark.parametrize(("mid", "number"), _message_id_forgeries())
def test_message_id_forgeries_are_invalid(mid: str, number: int) -> None:
    assert SIGNER.read_message_id(mid) == TokenCheck(number, False)


@pytest.mark.parametrize(
    "mid",
    [
        "",
        "<>",
        "<abc@example.com>",
        "<CAKx=abc123@mail.gmail.com>",
        "<cm.1.abc.defghijklm@example.com>",
        "<cm.123456789.abc.defghijklm@example.com>",
        "<cm.00000000.abc.defghijklm@example.com>",
        "<cm.00000001.abc.defghijklm>",
        "<cm.00000001.abc@example.com>",
        "<cm.00000001..defghijklm@example.com>",
        "<cm.00000001.a-b.defghijklm@example.com>",
        "<xcm.00000001.abc.defghijklm@example.com>",
        "<cm-00000001.abc.defghijklm@example.com>",
        "<cm.00000001.abc.defghijklm@exa mple.com>",
        "<cm.00000001.abc.defghijklm@a@b>",
        "<cm.0000000１.abc.defghijklm@example.com>",
        "<cm.00000001.abc.defghijklm@example.com",
    ],
)
def test_message_id_not_ours(mid: str) -> None:
    assert SIGNER.read_message_id(mid) is None


@pytest.mark.parametrize(
    ("number", "unique", "domain"),
    [(0, "a", "x"), (10**8, "a", "x"), (1, "", "x"), (1, "a.b", "x"), (1, "a", ""), (1, "a", "a b"),
     (1, "a", "x>"), (1, "ü", "x")],
)
def test_mint_message_id_rejects_bad_input(number: int, unique: str, domain: str) -> None:
    with pytest.raises(ValueError):
        SIGNER.mint_message_id(number, unique, domain)


@pytest.mark.parametrize("key", [b"", "text"])
def test_signer_rejects_bad_keys(key: object) -> None:
    with pytest.raises(ValueError):
        Signer(key)  # type: ignore[arg-type]


def test_signer_repr_hides_key() -> None:
    assert "test key" not in repr(SIGNER)


# ---------------------------------------------------------------------------------------
# Reply addresses
# ---------------------------------------------------------------------------------------

SUPPORTS = ["support@example.com", "Help.Desk@Example.ORG", "support+desk@example.com"]


@pytest.mark.parametrize(
    ("number", "support", "note"), list(itertools.product(NUMBERS, SUPPORTS, [False, True]))
)
def test_reply_address_round_trip(number: int, support: str, note: bool) -> None:
    address = SIGNER.reply_address(number, support, note=note)
    local, domain = support.rsplit("@", 1)
    assert address.startswith(f"{local}+{format_case_number(number)}.")
    assert address.endswith(f"{'.note' if note else ''}@{domain}")
    assert len(address.split("@")[0]) <= 64
    ok = TokenCheck(number, True, note=note)
    assert SIGNER.read_reply_address(address, [support]) == ok
    assert SIGNER.read_reply_address(address, ["other@example.net", support]) == ok
    assert SIGNER.read_reply_address(address.upper(), [support.lower()]) == ok
    assert SIGNER.read_reply_address(address.lower(), [support.upper()]) == ok
    assert SIGNER.read_reply_address(f"<{address}>", [support]) == ok
    assert OTHER_SIGNER.read_reply_address(address, [support]) == TokenCheck(number, False, note=note)


def test_reply_address_example() -> None:
    address = SIGNER.reply_address(1, SUPPORT)
    note = SIGNER.reply_address(1, SUPPORT, note=True)
    assert address.startswith("support+00000001.") and address.endswith("@example.com")
    sig = address.split("@")[0].split(".")[1]
    assert len(sig) == 10 and sig.isalnum() and sig == sig.lower()
    assert note.endswith(".note@example.com")
    # Public and note addresses are signed for different purposes.
    assert note.split(".")[1] != sig


def _reply_forgeries() -> list[tuple[str, TokenCheck]]:
    public = SIGNER.reply_address(42, SUPPORT)
    note = SIGNER.reply_address(42, SUPPORT, note=True)
    sig = public.split("@")[0].split(".")[1]
    note_sig = note.split("@")[0].split(".")[1]
    mid_sig = SIGNER.mint_message_id(42, "x", "example.com").split("@")[0].split(".")[-1]
    rows = [
        (f"support+00000042.{sig[:i]}{_flip(sig[i])}{sig[i + 1:]}@example.com", TokenCheck(42, False))
        for i in range(len(sig))
    ]
    rows += [
        # A public signature turned into a note address, and the other way round.
        (f"support+00000042.{sig}.note@example.com", TokenCheck(42, False, note=True)),
        (f"support+00000042.{note_sig}@example.com", TokenCheck(42, False)),
        # The right signature for another case.
        (f"support+00000043.{sig}@example.com", TokenCheck(43, False)),
        (f"support+00000042.{sig[:-2]}@example.com", TokenCheck(42, False)),
        (f"support+00000042.{mid_sig}@example.com", TokenCheck(42, False)),
        (f"support+00000042.{SIGNER.footer_token(42)[14:-1]}@example.com", TokenCheck(42, False)),
    ]
    return rows


@pytest.mark.parametrize(("address", "check"), _reply_forgeries())
def test_reply_address_forgeries_are_invalid(address: str, check: TokenCheck) -> None:
    assert SIGNER.read_reply_address(address, [SUPPORT]) == check


@pytest.mark.parametrize(
    ("address", "supports"),
    [
        ("support@example.com", [SUPPORT]),
        ("support+billing@example.com", [SUPPORT]),
        ("support+00000001@example.com", [SUPPORT]),
        ("support+1.abcdefghij@example.com", [SUPPORT]),
        ("support+00000000.abcdefghij@example.com", [SUPPORT]),
        ("support+00000001.abcdefghij@example.net", [SUPPORT]),
        ("sales+00000001.abcdefghij@example.com", [SUPPORT]),
        ("xsupport+00000001.abcdefghij@example.com", [SUPPORT]),
        ("support+00000001.abcdefghij.other@example.com", [SUPPORT]),
        ("support+00000001.abc-defghij@example.com", [SUPPORT]),
        ("support-00000001.abcdefghij@example.com", [SUPPORT]),
        ("support+00000001.abcdefghij", [SUPPORT]),
        ("", [SUPPORT]),
        ("support+00000001.abcdefghij@example.com", []),
        ("support+00000001.abcdefghij@example.com", ["not an address"]),
        ("support+00000001.abcdefghij@sub.example.com", [SUPPORT]),
    ],
)
def test_reply_address_not_ours(address: str, supports: list[str]) -> None:
    assert SIGNER.read_reply_address(address, supports) is None


@pytest.mark.parametrize("support", ["", "support", "@example.com", "support@"])
def test_reply_address_rejects_bad_support_address(support: str) -> None:
    with pytest.raises(ValueError):
        SIGNER.reply_address(1, support)


# ---------------------------------------------------------------------------------------
# Footer tokens
# ---------------------------------------------------------------------------------------


def _quote(text: str, depth: int) -> str:
    return "\n".join(">" * depth + " " + line for line in text.splitlines())


FOOTER_CONTEXTS = {
    "plain": lambda t: f"Thanks!\n\n--\nExample support\n{t}\n",
    "quoted": lambda t: _quote(f"Hello\n{t}", 1),
    "quoted-twice": lambda t: "Fine now\n" + _quote(_quote(f"Hello\n{t}", 1), 1),
    "quoted-no-space": lambda t: f">>{t}",
    "upper": lambda t: f"REPLY\n{t.upper()}",
    "inline": lambda t: f"Regards, {t}.",
    "html-to-text": lambda t: get_text(
        f"<html><body><p>Thanks</p><p style='color:#999'><small>{t}</small></p></body></html>"
    ),
    "html-quoted": lambda t: get_text(
        f"<p>Works now</p><blockquote type='cite'><div>Old mail</div><div>{t}</div></blockquote>"
    ),
    "wrapped": lambda t: t.replace("-", "-\n> ", 1),
    "spaced": lambda t: t.replace(":", " : ").replace("[", "[ ").replace("]", " ]"),
    "dash": lambda t: t.replace("-", "\u2013"),
}


@pytest.mark.parametrize(
    ("number", "context"), list(itertools.product(NUMBERS, sorted(FOOTER_CONTEXTS)))
)
def test_footer_round_trip(number: int, context: str) -> None:
    token = SIGNER.footer_token(number)
    assert token.startswith(f"[ref:{format_case_number(number)}-") and token.endswith("]")
    text = FOOTER_CONTEXTS[context](token)
    assert SIGNER.find_footer_tokens(text) == (TokenCheck(number, True),)
    assert OTHER_SIGNER.find_footer_tokens(text) == (TokenCheck(number, False),)


def test_footer_tokens_in_order_and_deduplicated() -> None:
    one, two = SIGNER.footer_token(1), SIGNER.footer_token(2)
    text = f"new {two}\n> old {one}\n> > older {two}\n{one}"
    assert SIGNER.find_footer_tokens(text) == (TokenCheck(2, True), TokenCheck(1, True))


def _footer_forgeries() -> list[tuple[str, TokenCheck]]:
    token = SIGNER.footer_token(42)
    sig = token[14:-1]
    rows = [
        (f"[ref:00000042-{sig[:i]}{_flip(sig[i])}{sig[i + 1:]}]", TokenCheck(42, False))
        for i in range(len(sig))
    ]
    rows += [
        (f"[ref:00000043-{sig}]", TokenCheck(43, False)),
        (f"[ref:00000042-{sig[:-1]}]", TokenCheck(42, False)),
        ("[ref:00000042-" + SIGNER.reply_address(42, SUPPORT).split(".")[1].split("@")[0] + "]",
         TokenCheck(42, False)),
    ]
    return rows


@pytest.mark.parametrize(("text", "check"), _footer_forgeries())
def test_footer_forgeries_are_invalid(text: str, check: TokenCheck) -> None:
    assert SIGNER.find_footer_tokens(text) == (check,)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no token here",
        "[ref:1-abcdefghij]",
        "[ref:123456789-abcdefghij]",
        "[ref:00000000-abcdefghij]",
        "[ref:00000001]",
        "[ref:00000001-]",
        "ref:00000001-abcdefghij",
        "[ref 00000001-abcdefghij]",
        "(ref:00000001-abcdefghij)",
        "[Case #00000001]",
    ],
)
def test_footer_not_ours(text: str) -> None:
    assert SIGNER.find_footer_tokens(text) == ()


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------

# Fragments that are likely to combine into tags, prefixes and near-misses.
FRAGMENTS = st.sampled_from(
    ["[", "]", "(", ")", "【", "】", "Case", "case", "#", "＃", " ", ":", "：", "1", "0", "12",
     "123456789", "Re:", "Fwd:", "回复：", "RE :", "Re[2]:", "[Case #5]", "Case #7", "x", "-",
     "\t", "\u3000", "Fwd", "[Fwd:"]
)
SUBJECTS = st.one_of(st.text(), st.lists(FRAGMENTS, max_size=20).map("".join))
CASE_NUMBERS = st.integers(min_value=1, max_value=10**CASE_NUMBER_WIDTH - 1)


@given(SUBJECTS)
def test_find_and_clean_never_raise(subject: str) -> None:
    numbers = find_case_numbers(subject)
    assert len(numbers) == len(set(numbers))
    assert all(1 <= n < 10**CASE_NUMBER_WIDTH for n in numbers)
    clean = clean_subject(subject)
    assert find_case_numbers(clean) == ()
    assert clean_subject(clean) == clean
    assert clean == clean.strip()


@given(CASE_NUMBERS, SUBJECTS)
def test_tag_subject_names_only_its_case(number: int, subject: str) -> None:
    tagged = tag_subject(number, subject)
    assert tagged.startswith(format_tag(number) + " ")
    assert find_case_numbers(tagged) == (number,)
    assert tag_subject(number, tagged) == tagged


@given(CASE_NUMBERS, st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1))
def test_message_id_round_trip_property(number: int, unique: str) -> None:
    mid = SIGNER.mint_message_id(number, unique, "example.com")
    assert SIGNER.read_message_id(mid) == TokenCheck(number, True)
    assert SIGNER.read_message_id(mid.upper()) == TokenCheck(number, True)


@given(CASE_NUMBERS, st.booleans())
def test_reply_and_footer_round_trip_property(number: int, note: bool) -> None:
    address = SIGNER.reply_address(number, SUPPORT, note=note)
    assert SIGNER.read_reply_address(address, [SUPPORT]) == TokenCheck(number, True, note=note)
    assert SIGNER.find_footer_tokens("> " + SIGNER.footer_token(number)) == (TokenCheck(number, True),)


@given(st.text())
def test_readers_never_raise(text: str) -> None:
    SIGNER.read_message_id(text)
    SIGNER.read_reply_address(text, [SUPPORT, text])
    for check in SIGNER.find_footer_tokens(text):
        assert check.valid is False
