# SPDX-License-Identifier: GPL-3.0-or-later
"""How `casemail smtp-user` changes the lines of the SMTP AUTH user file."""

from __future__ import annotations

import pytest

from casemail.smtpusers import updated_lines, valid_user

FILE = ["# submission accounts", "", "agent:scrypt:old", "lead:scrypt:lead"]


@pytest.mark.parametrize(("user", "hashed", "want", "found"), [
    ("agent", "scrypt:new", ["# submission accounts", "", "agent:scrypt:new", "lead:scrypt:lead"], True),
    ("third", "scrypt:3", FILE + ["third:scrypt:3"], False),
    ("lead", None, ["# submission accounts", "", "agent:scrypt:old"], True),
    ("third", None, FILE, False),
    # A comment that happens to start with a name is not that user's line.
    ("#", "scrypt:x", FILE + ["#:scrypt:x"], False),
])
def test_updated_lines(user, hashed, want, found):
    assert updated_lines(FILE, user, hashed) == (want, found)


@pytest.mark.parametrize(("name", "ok"), [
    ("agent", True), ("jane.doe@example.com", True), ("", False), ("a:b", False), ("a b", False),
    ("#agent", False), ("tab\there", False),
])
def test_valid_user(name, ok):
    assert valid_user(name) is ok
