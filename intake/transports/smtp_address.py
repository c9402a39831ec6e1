# SPDX-License-Identifier: GPL-3.0-or-later
"""The address of a MAIL FROM or RCPT TO command, read without the stdlib's header parser when it is plain.

aiosmtpd reads these addresses with email._header_value_parser (get_angle_addr), which builds a token
tree for every command, and it defines a Protocol class inside the method on every call; together
they were a tenth of the listener's CPU under load. Nearly every address a mail server sends is
plain: a dot-atom local part and a domain of letters, digits, hyphens and dots, in angle brackets,
followed by nothing or by ESMTP parameters. For those this gives what the stdlib parser gives; for
anything else (quoted local parts, comments, address literals, source routes, leading spaces) it
returns None and the caller uses the stdlib parser.
"""

from __future__ import annotations

import re

# RFC 5321 dot-atom: atext characters in runs separated by single dots.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN = re.compile(
    rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    # What follows the address: nothing, or parameters after optional blanks. A comment or a line
    # break would be skipped by the stdlib parser as folding white space, so it is left to that parser.
    r"(?:[ \t]*([^ \t(\r\n][^\r\n]*))?\Z",
)


def plain_angle_address(arg: str) -> tuple[str, str] | None:
    """(address, rest of the command) for a plain <local@domain> argument, or None."""
    match = _PLAIN.match(arg)
    if match is None:
        return None
    return match.group(1), match.group(2) or ""
