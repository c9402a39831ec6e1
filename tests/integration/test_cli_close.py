# SPDX-License-Identifier: GPL-3.0-or-later
"""`casemail close` tells everyone a close by mail tells: requester, people copied, assignee."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from casemail.app import make_identity, make_renderer, opened_store
from casemail.cli import main
from casemail.settings import load_settings
from store import cases
from store.contacts import ensure_contact
from store.db import read_only, unit_of_work
from store.models import Outbox

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def test_closing_from_the_command_line_tells_the_case_s_people(tmp_path: Path, database_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "casemail.toml"
    config.write_text(f'[database]\nurl = {json.dumps(database_url)}\n'
                      '[support]\naddresses = ["support@example.com"]\nsecret_key = "close-test-key-0123456789"\n')
    with opened_store(load_settings(config)) as store:
        with unit_of_work(store.engine) as s:
            jane = ensure_contact(s, "jane@customer.example", display_name="Jane", now=T0)
            case = cases.create_case(s, subject="Printer on fire", requester=jane, description="It burns.",
                                     product=None, version=None, severity=3, severity_source="body",
                                     production_down=False, follow_up_of=None, now=T0)
            cases.add_participant(s, case, ensure_contact(s, "cc@customer.example", now=T0), now=T0)
            cases.set_assignee(s, case, ensure_contact(s, "sam@example.com", role="staff", now=T0), now=T0)

        assert main(["-c", str(config), "close", "1"]) == 0
        assert "3 people will be told" in capsys.readouterr().out

        with read_only(store.engine) as s:
            outbox = list(s.scalars(select(Outbox).order_by(Outbox.id)))
            assert cases.get_case(s, 1).status == "closed"
        rows = {row.template: row.recipients for row in outbox}
        # Each renders with its templates (they refuse any name their context lacks).
        renderer = make_renderer(load_settings(config), make_identity(load_settings(config)))
        for row in outbox:
            rendered = renderer.render(template=row.template, context=row.context, recipients=row.recipients,
                                       message_id=row.message_id, now=T0)
            assert "closed" in rendered.text
    assert rows == {"customer/closed": ["jane@customer.example", "cc@customer.example"],
                    "staff/changed": ["sam@example.com"]}
