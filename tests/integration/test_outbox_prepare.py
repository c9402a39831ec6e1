# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the outbox keeps the bytes it renders, on SQLite and PostgreSQL.

A small mail's bytes go into its outbox row, in the batch's one commit, and no blob file is written;
a large one goes to the blob store. Either way a later attempt sends the kept bytes without rendering
again, and `casemail show --raw` finds them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from notifier import batch
from notifier.render import Rendered
from store import cases, contacts, outbox
from store.blobs import BlobStore
from store.db import unit_of_work
from store.models import Outbox

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
LEASE = timedelta(minutes=10)


class FakeRenderer:
    """Renders a mail whose body is `size` bytes long; counts its calls."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls = 0

    def render(self, *, template: str, context: dict[str, Any], recipients: list[str], message_id: str,
               now: datetime) -> Rendered:
        self.calls += 1
        msg = EmailMessage()
        msg["Subject"] = f"Case {context['n']}"
        msg["Message-ID"] = message_id
        msg.set_content("x" * self.size + "\n")
        return Rendered(data=msg.as_bytes(), subject=str(msg["Subject"]), text="x")


class FailingRenderer:
    def render(self, **_: Any) -> Rendered:
        raise AssertionError("a mail rendered before must not be rendered again")


def queue(engine: Engine, count: int) -> None:
    with unit_of_work(engine) as s:
        who = contacts.ensure_contact(s, "jane@customer.example", display_name="Jane", now=NOW)
        for n in range(count):
            case = cases.create_case(s, subject=f"Printer {n}", requester=who, description="x", product=None,
                                     version=None, severity=3, severity_source="default", production_down=False,
                                     follow_up_of=None, now=NOW)
            outbox.enqueue(s, case_id=case.id, template="customer/ack", context={"n": n},
                           recipients=["jane@customer.example"], message_id=f"<ack-{n}@desk.example>", now=NOW)


def blob_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def prepare(engine: Engine, blobs: BlobStore, renderer: Any, *, now: datetime = NOW) -> list[batch.Job]:
    claimed = batch.claim(engine, now=now, lease=LEASE, limit=100)
    jobs, failed = batch.prepare(engine, blobs, renderer, claimed, now=now)
    assert failed == []
    return jobs


def kept(engine: Engine) -> list[tuple[str, bytes | None, str | None]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(
            select(Outbox.message_id, Outbox.rendered, Outbox.rendered_sha256).order_by(Outbox.id))]


def test_a_small_mail_is_kept_in_its_row_and_no_blob_is_written(engine: Engine, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    queue(engine, 3)
    jobs = prepare(engine, blobs, FakeRenderer(2_000))
    assert len(jobs) == 3
    rows = kept(engine)
    for job, (mid, inline, sha) in zip(jobs, rows, strict=True):
        assert inline == job.data and mid == job.message_id
        assert sha == hashlib.sha256(job.data).hexdigest()
    assert blob_files(tmp_path / "blobs") == []

    # Released and claimed again (a retry), the rows send the kept bytes without rendering anew.
    batch.release(engine, [j.id for j in jobs])
    again = prepare(engine, blobs, FailingRenderer(), now=NOW + timedelta(minutes=1))
    assert [j.data for j in again] == [j.data for j in jobs]
    assert [j.subject for j in again] == ["Case 0", "Case 1", "Case 2"]


def test_a_large_mail_goes_to_the_blob_store(engine: Engine, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    queue(engine, 1)
    [job] = prepare(engine, blobs, FakeRenderer(outbox.INLINE_BYTES + 1))
    [(_, inline, sha)] = kept(engine)
    assert inline is None and sha is not None
    assert blobs.get(sha) == job.data
    assert blob_files(tmp_path / "blobs") == [blobs.path(sha)]

    batch.release(engine, [job.id])
    [again] = prepare(engine, blobs, FailingRenderer(), now=NOW + timedelta(minutes=1))
    assert again.data == job.data
