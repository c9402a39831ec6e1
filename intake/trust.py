# SPDX-License-Identifier: GPL-3.0-or-later
"""Who is staff, and whether a mail's sender is who it says (pure).

A From header is trivially forged, so a staff address alone earns nothing. Staff rights need the
address (or domain) from the config and an authenticated sender: either the mail came through a
transport the config marks trusted (our own MTA behind LMTP, which has already checked the sender),
or an Authentication-Results header stamped by one of the configured trusted servers says DKIM or SPF
passed for the From domain. Authentication-Results from any other server are ignored: anybody can write
that header into a mail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import authres


@dataclass(frozen=True)
class StaffRoute:
    """Staff notifications of matching cases go to these addresses instead of all staff."""

    products: frozenset[str]         # lower-cased; empty matches any product
    severities: frozenset[int]       # empty matches any severity
    addresses: tuple[str, ...]

    def matches(self, product: str | None, severity: int) -> bool:
        if self.products and (product or "").strip().lower() not in self.products:
            return False
        return not self.severities or severity in self.severities


@dataclass(frozen=True)
class StaffPolicy:
    addresses: frozenset[str]        # lower-cased addresses
    domains: frozenset[str]          # lower-cased domains
    trusted_authserv_ids: frozenset[str]
    routes: tuple[StaffRoute, ...] = ()

    def is_staff_address(self, address: str) -> bool:
        key = address.strip().lower()
        return key in self.addresses or key.rpartition("@")[2] in self.domains

    def notified_for(self, product: str | None, severity: int) -> tuple[str, ...]:
        """Who gets staff mail about a case: every matching route's addresses, else all staff.

        Routes are how a team splits cases by product or severity (the database people get database
        cases, the on-call desk severity 1); a case no route claims still reaches every staff address.
        Route addresses count as staff for this only: staff rights still need the address in
        staff.addresses or staff.domains.
        """
        routed = [a for route in self.routes if route.matches(product, severity) for a in route.addresses]
        chosen = routed or sorted(self.addresses)
        return tuple(dict.fromkeys(a.lower() for a in chosen))


def sender_authenticated(
    auth_results: Iterable[str], from_address: str, trusted_authserv_ids: frozenset[str]
) -> bool:
    """True when a trusted Authentication-Results header shows DKIM or SPF passing for From's domain."""
    domain = from_address.rpartition("@")[2].lower()
    if not domain or not trusted_authserv_ids:
        return False
    for value in auth_results:
        try:
            header = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {value}")
        except Exception:  # noqa: BLE001 - a malformed header from anyone must only fail to authenticate.
            continue
        if (header.authserv_id or "").lower() not in trusted_authserv_ids:
            continue
        for result in header.results:
            if str(result.result).lower() != "pass":
                continue
            if result.method == "dkim" and _prop(result, "header", "d") == domain:
                return True
            if result.method == "spf" and _domain_of(_prop(result, "smtp", "mailfrom")) == domain:
                return True
    return False


def _prop(result: object, ptype: str, name: str) -> str:
    for p in getattr(result, "properties", []) or []:
        if p.type == ptype and p.name == name:
            return str(p.value).lower()
    return ""


def _domain_of(value: str) -> str:
    return value.rpartition("@")[2].lower()
