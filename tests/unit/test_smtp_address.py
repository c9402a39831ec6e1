# SPDX-License-Identifier: GPL-3.0-or-later
"""The listener's fast reading of plain addresses gives exactly what the stdlib parser gives."""

from __future__ import annotations

import pytest
from email._header_value_parser import get_angle_addr
from hypothesis import given
from hypothesis import strategies as st

from intake.transports.smtp_address import plain_angle_address


def _stdlib(arg: str) -> tuple[str, str]:
    address, rest = get_angle_addr(arg)
    return address.addr_spec, rest


@pytest.mark.parametrize("arg", [
    "<customer@example.com>",
    "<customer@example.com> SIZE=10240",
    "<a.b+tag@mail-1.example.co.uk> BODY=8BITMIME SIZE=100",
    "<a@b>SIZE=1",
    "<UPPER@Example.COM>  \tSMTPUTF8",
    "<o'brien!#$%&*/=?^_`{|}~-@example.com>",
    "<a@b.c> SIZE=1  ",
])
def test_plain_addresses_are_read_as_the_stdlib_reads_them(arg: str) -> None:
    assert plain_angle_address(arg) == _stdlib(arg)


@pytest.mark.parametrize("arg", [
    "",
    "<>",                                  # the null sender: aiosmtpd's own path
    " <a@b.c>",                            # leading blanks
    "a@b.c",                               # no angle brackets
    '<"quoted local"@example.com>',
    "<a..b@example.com>",                  # not a dot-atom
    "<.a@example.com>",
    "<a@[192.0.2.1]>",                     # an address literal
    "<@relay.example:a@b.c>",              # a source route
    "<a@b.c> (comment) SIZE=1",            # a comment the stdlib skips
    "<a@b.c",
    "<a@-b..c>",
    "<a@b.c>\r\nRCPT",
    "<ä@example.com>",                      # SMTPUTF8 addresses take the stdlib path
])
def test_anything_else_is_left_to_the_stdlib_parser(arg: str) -> None:
    assert plain_angle_address(arg) is None


@given(st.text(alphabet="<>@.aZ09+-_'\"()[]: \t\r\n=ä", max_size=40))
def test_whatever_it_reads_the_stdlib_reads_alike(arg: str) -> None:
    plain = plain_angle_address(arg)
    if plain is not None:
        assert plain == _stdlib(arg)
