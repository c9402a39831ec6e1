# SPDX-License-Identifier: GPL-3.0-or-later
"""How `casemail cases` and `casemail show` print a case (casemail/views.py), from plain listings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from casemail.views import attachment_type, case_detail, case_row, format_case_table
from store.cases import CaseListing, as_utc
from store.models import Case, Contact

AT = datetime(2026, 11, 2, 9, 30, 15, 123456, tzinfo=timezone.utc)
LISTED = CaseListing(number=42, subject="Printer on fire", status="open", severity=1, production_down=True,
                     requester_address="Jane@Customer.example", updated_at=AT)


def test_a_row_is_the_listing_as_printed() -> None:
    assert case_row(LISTED) == {
        "number": "00000042", "subject": "Printer on fire", "status": "open", "severity": 1,
        "production_down": True, "requester": "Jane@Customer.example", "updated": "2026-11-02T09:30:15+00:00",
    }


def test_the_table_has_a_line_per_row() -> None:
    table = format_case_table([case_row(LISTED)])
    header, line = table.splitlines()
    assert header.split()[:4] == ["CASE", "STATUS", "SEV", "UPDATED"]
    assert line.startswith("00000042  open    1!   2026-11-02T09:30:15  Jane@Customer.example")
    assert line.endswith("Printer on fire")
    assert format_case_table([]) == "no cases"


def test_a_shown_case_starts_with_its_listing() -> None:
    jane = Contact(address="Jane@Customer.example", address_key="jane@customer.example")
    case = Case(number=42, subject="Printer on fire", status="open", severity=1, production_down=True,
                requester=jane, product=None, version=None, severity_source="staff",
                created_at=AT - timedelta(days=1), updated_at=AT, closed_at=None, follow_up_of=None)
    assert CaseListing.of(case) == LISTED
    shown = case_detail(case, [], [])
    assert {k: shown[k] for k in case_row(LISTED)} == case_row(LISTED)
    assert shown["created"] == "2026-11-01T09:30:15+00:00" and shown["history"] == []


def test_timestamps_from_either_database_become_aware_utc() -> None:
    naive = datetime(2026, 11, 2, 9, 30)  # SQLite: naive, and UTC by convention
    berlin = datetime(2026, 11, 2, 10, 30, tzinfo=timezone(timedelta(hours=1)))  # a PostgreSQL session
    for at in (naive, berlin, naive.replace(tzinfo=timezone.utc)):
        utc = as_utc(at)
        assert utc.tzinfo is timezone.utc and utc == datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(("declared", "sniffed", "shown"), [
    ("text/csv", "text/plain", "text/csv"),                       # the declaration says more
    ("application/octet-stream", "application/pdf", "application/pdf"),  # it says nothing
    ("", "image/png", "image/png"),
    ("image/png", "application/x-dosexec", "image/png; its content is application/x-dosexec"),
    ("application/pdf", "application/octet-stream", "application/pdf"),  # the content says nothing
    ("image/png", "image/png", "image/png"),
    ("Text/CSV", "", "text/csv"),
    ("", "", "unknown type"),
])
def test_an_attachment_shows_the_type_that_says_most(declared: str, sniffed: str, shown: str) -> None:
    assert attachment_type(declared, sniffed) == shown
