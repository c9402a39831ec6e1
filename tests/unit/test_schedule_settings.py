# SPDX-License-Identifier: GPL-3.0-or-later
"""The [schedules] section: off by default, and a bad value is refused naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from casemail.settings import ConfigError, settings_from_dict


def test_every_schedule_is_off_by_default():
    s = settings_from_dict({}, base_dir=Path("/tmp")).schedules
    assert (s.reminder_days, s.autoclose_days, s.escalation_minutes) == (0, 0, 0)
    assert (s.staff_digest_hour, s.customer_digest_hour) == (-1, -1)


def test_a_full_section_is_accepted():
    s = settings_from_dict({"schedules": {"reminder_days": 3, "autoclose_days": 7.5, "escalation_minutes": 30,
                                          "escalation_repeat_minutes": 60, "oncall": ["oncall@example.com"],
                                          "staff_digest_hour": 0, "customer_digest_hour": 23,
                                          "check_seconds": 0.5},
                            "staff": {"addresses": ["staff@example.com"]}},
                           base_dir=Path("/tmp")).schedules
    assert s.reminder_days == 3.0 and s.autoclose_days == 7.5 and s.oncall == ["oncall@example.com"]


@pytest.mark.parametrize("values, key", [
    ({"reminder_days": -1}, "schedules.reminder_days"),
    ({"escalation_repeat_minutes": -5}, "schedules.escalation_repeat_minutes"),
    ({"reminder_days": 7, "autoclose_days": 7}, "schedules.autoclose_days"),
    ({"escalation_minutes": 30}, "schedules.oncall"),
    ({"oncall": ["not an address"]}, "schedules.oncall[0]"),
    ({"staff_digest_hour": 24}, "schedules.staff_digest_hour"),
    ({"customer_digest_hour": -2}, "schedules.customer_digest_hour"),
    ({"check_seconds": 0}, "schedules.check_seconds"),
    ({"reminder_days": "3"}, "schedules.reminder_days"),
    ({"remind_days": 3}, "schedules.remind_days"),
])
def test_bad_values_name_their_key(values, key):
    with pytest.raises(ConfigError) as err:
        settings_from_dict({"schedules": values}, base_dir=Path("/tmp"))
    assert str(err.value).startswith(key + ":")


def test_the_staff_digest_needs_staff_addresses():
    with pytest.raises(ConfigError, match=r"^schedules.staff_digest_hour: .*staff.addresses"):
        settings_from_dict({"schedules": {"staff_digest_hour": 7}}, base_dir=Path("/tmp"))
    s = settings_from_dict({"schedules": {"staff_digest_hour": 7}, "staff": {"addresses": ["a@example.com"]}},
                           base_dir=Path("/tmp"))
    assert s.schedules.staff_digest_hour == 7


def test_the_daemon_turns_zero_and_minus_one_into_off():
    from datetime import timedelta

    from casemail.daemon import schedule_config

    off = schedule_config(settings_from_dict({}, base_dir=Path("/tmp")))
    assert not off.enabled
    on = schedule_config(settings_from_dict(
        {"schedules": {"reminder_days": 2, "escalation_minutes": 15, "oncall": ["o@example.com"],
                       "staff_digest_hour": 0}, "staff": {"addresses": ["s@example.com"]}}, base_dir=Path("/tmp")))
    assert on.reminder_after == timedelta(days=2) and on.autoclose_after is None
    assert on.escalate_after == timedelta(minutes=15) and on.escalate_every is None
    assert on.staff_digest_hour == 0 and on.customer_digest_hour is None
    assert on.oncall == ("o@example.com",) and on.staff == ("s@example.com",)
