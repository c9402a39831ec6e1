# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad configuration fails at start, with a message that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from casemail.settings import ConfigError, load_settings, settings_from_dict

REPO = Path(__file__).resolve().parents[2]


def test_the_example_config_is_valid_and_equals_the_defaults():
    example = load_settings(REPO / "config.example.toml")
    defaults = settings_from_dict({}, base_dir=REPO)
    assert example == defaults


BAD = [
    ({"smtp": {"port": "25"}}, "smtp.port"),
    ({"smtp": {"port": 70000}}, "smtp.port"),
    ({"smtp": {"prot": 25}}, "smtp.prot"),
    ({"smpt": {}}, "smpt"),
    ({"smtp": 5}, "smtp"),
    ({"support": {"addresses": []}}, "support.addresses"),
    ({"support": {"addresses": ["not an address"]}}, "support.addresses[0]"),
    ({"support": {"addresses": ["support+x@example.com"]}}, "support.addresses[0]"),
    ({"outbound": {"transport": "carrier-pigeon"}}, "outbound.transport"),
    ({"outbound": {"tls": True, "starttls": True}}, "outbound.tls"),
    ({"outbound": {"timeout": 0}}, "outbound.timeout"),
    ({"outbound": {"starttls": "yes"}}, "outbound.starttls"),
    ({"database": {"url": "mysql://x"}}, "database.url"),
    ({"logging": {"level": "LOUD"}}, "logging.level"),
    ({"staff": {"domains": ["@example.com"]}}, "staff.domains[0]"),
    ({"staff": {"addresses": "a@b"}}, "staff.addresses"),
    ({"staff": {"routes": [{"products": ["x"]}]}}, "staff.routes[0].addresses"),
    ({"staff": {"routes": [{"products": ["x"], "addresses": ["nope"]}]}}, "staff.routes[0].addresses[0]"),
    ({"staff": {"routes": [{"severities": [5], "addresses": ["a@b.c"]}]}}, "staff.routes[0].severities[0]"),
    ({"staff": {"routes": [{"addresses": ["a@b.c"]}]}}, "staff.routes[0]"),
    ({"staff": {"routes": [{"product": ["x"], "addresses": ["a@b.c"]}]}}, "staff.routes[0].product"),
]


@pytest.mark.parametrize(("data", "key"), BAD, ids=[k for _, k in BAD])
def test_bad_values_name_their_key(data, key):
    with pytest.raises(ConfigError) as err:
        settings_from_dict(data, base_dir=REPO)
    assert str(err.value).startswith(key + ":")


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    s = settings_from_dict({}, base_dir=tmp_path)
    assert s.database_url == f"sqlite:///{tmp_path / 'var' / 'casemail.db'}"
    assert s.path(s.storage.blobs) == tmp_path / "var" / "blobs"


def test_import_summary_names_every_outcome():
    from casemail.mailcmds import SUMMARY
    from store.inbound import OUTCOMES

    assert set(SUMMARY) == set(OUTCOMES)
