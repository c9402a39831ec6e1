# SPDX-License-Identifier: GPL-3.0-or-later
"""Tables and properties for intake/fields.py: product, version and severity from a first mail."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intake.fields import CaseFields, extract_fields

NONE = CaseFields(None, None, None, None, False)


def sev(severity: int, source: str) -> CaseFields:
    return CaseFields(None, None, severity, source, source == "production-down")


PD = sev(1, "production-down")

# (subject, text, expected): severity from the body.
BODY_ROWS: list[tuple[str, str, CaseFields]] = [
    ("printer", "Severity: 2", sev(2, "body")),
    ("printer", "severity:2", sev(2, "body")),
    ("printer", "SEVERITY :  3", sev(3, "body")),
    ("printer", "Severity 1 - critical", sev(1, "body")),
    ("printer", "Severity = 4", sev(4, "body")),
    ("printer", "Severity: critical", sev(1, "body")),
    ("printer", "Severity: High", sev(2, "body")),
    ("printer", "Severity: medium", sev(3, "body")),
    ("printer", "Severity: low", sev(4, "body")),
    ("printer", "Severity: minimal", sev(4, "body")),
    ("printer", "Severity: urgent", sev(1, "body")),
    ("printer", "Severity: normal", sev(3, "body")),
    ("printer", "Severity: high (2)", sev(2, "body")),
    ("printer", "Severity: Sev 2", sev(2, "body")),
    ("printer", "Severity: S3", sev(3, "body")),
    ("printer", "Severity level: 2", sev(2, "body")),
    ("printer", "Sev 2", sev(2, "body")),
    ("printer", "Sev: 2", sev(2, "body")),
    ("printer", "sev2", sev(2, "body")),
    ("printer", "Sev-3", sev(3, "body")),
    ("printer", "S2", sev(2, "body")),
    ("printer", "S1: everything is down", sev(1, "body")),
    ("printer", "S4 - whenever", sev(4, "body")),
    ("printer", "Priority: 1", sev(1, "body")),
    ("printer", "Prio: P2", sev(2, "body")),
    ("printer", "Priority: high", sev(2, "body")),
    ("printer", "  - Severity: 2", sev(2, "body")),
    ("printer", "* Severity: 2", sev(2, "body")),
    ("printer", "**Severity:** 2", sev(2, "body")),
    ("printer", "Hello,\n\nSeverity: 3\nThanks", sev(3, "body")),
    ("printer", "Severity: 2\nSeverity: 1", sev(2, "body")),
    ("printer", "Hello\r\nSeverity: 2\r\n", sev(2, "body")),
    # Invalid numbers are ignored and the search goes on.
    ("printer", "Severity: 0", NONE),
    ("printer", "Severity: 5", NONE),
    ("printer", "Severity: 99", NONE),
    ("printer", "Severity: 12", NONE),
    ("printer", "Severity: 2.5", NONE),
    ("printer", "Severity: 5\nSeverity: 3", sev(3, "body")),
    ("printer", "Severity: extreme", NONE),
    ("printer", "Severity: highest", NONE),
    ("printer", "Severity:", NONE),
    # Not severity lines.
    ("printer", "S3 bucket is unreachable", NONE),
    ("printer", "S22", NONE),
    ("printer", "The severity of this is 1", NONE),
    ("printer", "Several 2 printers", NONE),
    ("printer", "Seville 2", NONE),
    ("printer", "Low toner", NONE),
    # Quoted history does not count.
    ("printer", "> Severity: 1", NONE),
    ("printer", "  > Severity: 1\nSeverity: 3", sev(3, "body")),
    ("printer", "Hi\n-----Original Message-----\nSeverity: 1", NONE),
    ("printer", "Hi\n---------- Forwarded message ---------\nSeverity: 1", NONE),
    ("printer", "Hi\nBegin forwarded message:\nSeverity: 1", NONE),
    ("printer", "Hi\n________________________________\nFrom: x\nSeverity: 1", NONE),
    ("printer", "\n" * 300 + "Severity: 1", NONE),
]

# (subject, text, expected): severity from the subject, and production down.
SUBJECT_ROWS: list[tuple[str, str, CaseFields]] = [
    ("Sev1: site down", "", sev(1, "subject")),
    ("Sev 2 printer", "", sev(2, "subject")),
    ("printer Sev: 3", "", sev(3, "subject")),
    ("[Sev 2] printer", "", sev(2, "subject")),
    ("(sev4) printer", "", sev(4, "subject")),
    ("Severity 1: printer", "", sev(1, "subject")),
    ("Severity: high - printer", "", sev(2, "subject")),
    ("[S1] printer", "", sev(1, "subject")),
    ("(S2) printer", "", sev(2, "subject")),
    ("S3: printer", "", sev(3, "subject")),
    ("S1 - printer", "", sev(1, "subject")),
    ("Re: [Case #00000012] Sev2 printer", "", sev(2, "subject")),
    ("Sev5 printer", "", NONE),
    ("Sev0 printer", "", NONE),
    ("Sev5 then Sev3", "", sev(3, "subject")),
    ("S3 bucket unreachable", "", NONE),
    ("Galaxy S4 screen", "", NONE),
    ("SS1: hm", "", NONE),
    ("Severe weather", "", NONE),
    ("MS2: report", "", NONE),
    # The body outranks the subject.
    ("Sev1 printer", "Severity: 3", sev(3, "body")),
    ("Sev1 printer", "Severity: 9", sev(1, "subject")),
    # Production down overrides everything.
    ("Production Down", "", PD),
    ("PRODUCTION DOWN: login fails", "", PD),
    ("production-down", "", PD),
    ("Prod down!", "", PD),
    ("Re: [Case #1] ProdDown", "", PD),
    ("production_down", "", PD),
    ("production   down", "", PD),
    ("Sev4 production down", "Severity: 4", PD),
    ("production down", "", PD),
    ("Products down the line", "", NONE),
    ("reproduction down", "", NONE),
    ("production downtime planned", "", NONE),
    ("printer", "Production down", NONE),
]


@pytest.mark.parametrize(("subject", "text", "expected"), BODY_ROWS + SUBJECT_ROWS)
def test_severity(subject: str, text: str, expected: CaseFields) -> None:
    assert extract_fields(subject, text, {}) == expected


# (headers, expected severity or None).
HEADER_ROWS: list[tuple[Mapping[str, tuple[str, ...]], int | None]] = [
    ({"x-priority": ("1",)}, 2),
    ({"x-priority": ("1 (Highest)",)}, 2),
    ({"x-priority": ("2 (High)",)}, 2),
    ({"x-priority": ("3 (Normal)",)}, None),
    ({"x-priority": ("4 (Low)",)}, 4),
    ({"x-priority": ("5 (Lowest)",)}, 4),
    ({"x-priority": (" 5",)}, 4),
    ({"x-priority": ("0",)}, None),
    ({"x-priority": ("9",)}, None),
    ({"x-priority": ("high",)}, None),
    ({"x-priority": ("",)}, None),
    ({"importance": ("high",)}, 2),
    ({"importance": ("High",)}, 2),
    ({"importance": (" HIGH ",)}, 2),
    ({"importance": ("normal",)}, None),
    ({"importance": ("low",)}, 4),
    ({"priority": ("urgent",)}, 2),
    ({"priority": ("normal",)}, None),
    ({"priority": ("non-urgent",)}, 4),
    ({"x-msmail-priority": ("High",)}, 2),
    ({"x-msmail-priority": ("Low",)}, 4),
    ({"x-msmail-priority": ("Normal",)}, None),
    ({"importance": ("normal", "high")}, 2),
    ({"x-priority": ("3",), "importance": ("low",)}, 4),
    ({"x-priority": ("1",), "importance": ("low",)}, 2),
    ({"importance": ("high",), "priority": ("non-urgent",)}, 2),
    ({"subject": ("Sev1",)}, None),
    ({}, None),
]


@pytest.mark.parametrize(("headers", "severity"), HEADER_ROWS)
def test_header_hints(headers: Mapping[str, tuple[str, ...]], severity: int | None) -> None:
    expected = sev(severity, "header") if severity is not None else NONE
    assert extract_fields("printer", "Hello", headers) == expected


@pytest.mark.parametrize(
    ("subject", "text", "source"),
    [
        ("printer", "Severity: 3", "body"),
        ("Sev3 printer", "", "subject"),
        ("Production down", "Severity: 3", "production-down"),
        ("printer", "> Severity: 1", "header"),
    ],
)
def test_headers_are_only_a_hint(subject: str, text: str, source: str) -> None:
    result = extract_fields(subject, text, {"importance": ("low",), "x-priority": ("5",)})
    assert result.severity_source == source
    assert result.severity == (4 if source == "header" else 1 if source == "production-down" else 3)


# (text, product, version).
FIELD_ROWS: list[tuple[str, str | None, str | None]] = [
    ("Product: Widget", "Widget", None),
    ("product:Widget", "Widget", None),
    ("PRODUCT :  Widget Pro  ", "Widget Pro", None),
    ("Product name: Widget", "Widget", None),
    ("Product = Widget", "Widget", None),
    ("- Product: Widget", "Widget", None),
    ("**Product:** Widget", "Widget", None),
    ("Product: Widget   Pro\t2000", "Widget Pro 2000", None),
    ("Version: 3.2.1", None, "3.2.1"),
    ("version:3.2", None, "3.2"),
    ("Product version: 7.0 SP1", None, "7.0 SP1"),
    ("Software version: 2024.1", None, "2024.1"),
    ("Version number: 12", None, "12"),
    ("Product: Widget\nVersion: 3.2.1", "Widget", "3.2.1"),
    ("Version: 1\nProduct: Widget", "Widget", "1"),
    ("Product: A\nProduct: B", "A", None),
    ("Product:", None, None),
    ("Product:    ", None, None),
    ("Product: " + "x" * 500, "x" * 100, None),
    ("Version: " + "1." * 80, None, ("1." * 50)[:100]),
    ("Product: " + "a " * 60, ("a " * 50).strip(), None),
    ("> Product: Old\nProduct: New", "New", None),
    ("Hi\n-----Original Message-----\nProduct: Old", None, None),
    ("Our product: is great", None, None),
    ("The version: 2 is broken", None, None),
    ("Products: many", None, None),
    ("Conversion: 2", None, None),
    ("", None, None),
]


@pytest.mark.parametrize(("text", "product", "version"), FIELD_ROWS)
def test_product_and_version(text: str, product: str | None, version: str | None) -> None:
    result = extract_fields("printer", text, {})
    assert (result.product, result.version) == (product, version)


def test_all_fields_together() -> None:
    text = "Hello,\n\nProduct: Widget Pro\nVersion: 3.2.1\nSeverity: 2 - high\n\n> Severity: 1\n"
    assert extract_fields("Re: printer", text, {"importance": ("low",)}) == CaseFields(
        "Widget Pro", "3.2.1", 2, "body", False
    )


HEADERS = st.dictionaries(
    st.sampled_from(["x-priority", "importance", "priority", "x-msmail-priority", "subject"]),
    st.lists(st.text(max_size=20), max_size=3).map(tuple),
)
LINES = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(["Severity: ", "Sev", "S", "Product: ", "Version: ", "> ", "Priority:"]).flatmap(
            lambda head: st.text(max_size=12).map(lambda tail: head + tail)
        ),
    ),
    max_size=8,
).map("\n".join)


@given(st.text(max_size=80), LINES, HEADERS)
def test_extract_fields_never_raises(subject: str, text: str, headers: dict[str, tuple[str, ...]]) -> None:
    result = extract_fields(subject, text, headers)
    assert result.severity is None or 1 <= result.severity <= 4
    assert (result.severity is None) == (result.severity_source is None)
    assert result.severity_source in (None, "production-down", "body", "subject", "header")
    assert result.production_down == (result.severity_source == "production-down")
    for value in (result.product, result.version):
        assert value is None or (0 < len(value) <= 100 and value == value.strip())
