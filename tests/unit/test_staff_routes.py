# SPDX-License-Identifier: GPL-3.0-or-later
"""Routing staff mail by product and severity (pure)."""

from __future__ import annotations

import pytest

from intake.trust import StaffPolicy, StaffRoute

POLICY = StaffPolicy(
    addresses=frozenset({"desk@staff.example", "lead@staff.example"}),
    domains=frozenset(),
    trusted_authserv_ids=frozenset(),
    routes=(
        StaffRoute(frozenset({"vpn gateway"}), frozenset(), ("net@staff.example",)),
        StaffRoute(frozenset(), frozenset({1}), ("oncall@staff.example", "lead@staff.example")),
        StaffRoute(frozenset({"database"}), frozenset({1, 2}), ("dba@staff.example",)),
    ),
)


@pytest.mark.parametrize(("product", "severity", "expected"), [
    (None, 3, ("desk@staff.example", "lead@staff.example")),
    ("Printer", 4, ("desk@staff.example", "lead@staff.example")),
    ("VPN Gateway", 3, ("net@staff.example",)),
    ("  vpn gateway ", 2, ("net@staff.example",)),
    ("VPN Gateway", 1, ("net@staff.example", "oncall@staff.example", "lead@staff.example")),
    (None, 1, ("oncall@staff.example", "lead@staff.example")),
    ("Database", 2, ("dba@staff.example",)),
    ("Database", 3, ("desk@staff.example", "lead@staff.example")),
    ("Database", 1, ("oncall@staff.example", "lead@staff.example", "dba@staff.example")),
    ("VPN", 3, ("desk@staff.example", "lead@staff.example")),
])
def test_notified_for(product, severity, expected):
    assert POLICY.notified_for(product, severity) == expected


def test_without_routes_everyone_is_notified():
    plain = StaffPolicy(frozenset({"b@x.example", "a@x.example"}), frozenset(), frozenset())
    assert plain.notified_for("anything", 1) == ("a@x.example", "b@x.example")
