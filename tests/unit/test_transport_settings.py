# SPDX-License-Identifier: GPL-3.0-or-later
"""The [lmtp] and [imap] settings: defaults, and bad values refused naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from casemail.settings import ConfigError, settings_from_dict
from intake.transports.smtp_server import data_reservation

BOX = {"name": "support", "host": "imap.example.com", "user": "support@example.com", "password": "pw"}


def load(**sections: Any) -> Any:
    return settings_from_dict(sections, base_dir=Path("/nonexistent"))


def test_defaults_and_a_mailbox_table():
    s = load(imap={"mailboxes": [BOX]})
    assert not s.lmtp.enabled and s.lmtp.port == 8024 and not s.lmtp.trusted
    (box,) = s.imap.mailboxes
    assert (box.port, box.tls, box.folder, box.after, box.processed_folder) == (993, True, "INBOX", "move",
                                                                                "Processed")


@pytest.mark.parametrize(("sections", "key"), [
    ({"lmtp": {"port": 70000}}, "lmtp.port"),
    ({"lmtp": {"enabled": "yes"}}, "lmtp.enabled"),
    ({"lmtp": {"socket_mode": 0o1777}}, "lmtp.socket_mode"),
    ({"imap": {"mailboxes": [{**BOX, "tls": False}]}}, "imap.mailboxes[0].tls"),
    ({"imap": {"mailboxes": [{**BOX, "after": "delete"}]}}, "imap.mailboxes[0].after"),
    ({"imap": {"mailboxes": [{**BOX, "oauth2_token_file": "t"}]}}, "imap.mailboxes[0].password"),
    ({"imap": {"mailboxes": [{**BOX, "password": ""}]}}, "imap.mailboxes[0].password"),
    ({"imap": {"mailboxes": [BOX, BOX]}}, "imap.mailboxes[1].name"),
    ({"imap": {"mailboxes": [{**BOX, "poll_seconds": 0}]}}, "imap.mailboxes[0].poll_seconds"),
    ({"imap": {"mailboxes": [{**BOX, "processed_folder": "INBOX"}]}}, "imap.mailboxes[0].processed_folder"),
    ({"imap": {"mailboxes": [{**BOX, "colour": "blue"}]}}, "imap.mailboxes[0].colour"),
    ({"imap": {"mailboxes": ["support"]}}, "imap.mailboxes[0]"),
    ({"imap": {"mailboxes": [{**BOX, "port": "993"}]}}, "imap.mailboxes[0].port"),
])
def test_bad_values_name_the_key(sections: dict[str, Any], key: str):
    with pytest.raises(ConfigError) as err:
        load(**sections)
    assert str(err.value).startswith(key + ":"), str(err.value)


def test_plain_imap_is_allowed_on_loopback():
    assert not load(imap={"mailboxes": [{**BOX, "host": "127.0.0.1", "tls": False}]}).imap.mailboxes[0].tls


@pytest.mark.parametrize(("options", "want"), [
    ([], 26_214_400),                                   # nothing declared: the size limit
    (["SIZE=10000"], 3 * 10_000 + (1 << 20)),           # room to grow on the way
    (["BODY=8BITMIME", "SIZE=0"], 1 << 20),
    (["SIZE=20000000"], 26_214_400),                    # never more than the limit
    (["SIZE=abc"], 26_214_400),                         # nonsense is no declaration
])
def test_a_data_reserves_by_its_declared_size(options, want):
    assert data_reservation(options, 26_214_400) == want
