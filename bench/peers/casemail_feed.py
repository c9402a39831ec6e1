# SPDX-License-Identifier: GPL-3.0-or-later
"""casemail's side of the peer benchmark: a folder of mails through the real intake, in one process.

Run with casemail's own environment (peer_bench.py does)::

    .venv/bin/python bench/peers/casemail_feed.py MAIL_FOLDER

It makes a fresh store (SQLite database and blob store) in a temporary folder. Each mail is accepted
into the inbound log the way the pipe command and `casemail import` accept one (blob written and
fsynced, row committed), and the accepted mail is then processed by the daemon's own intake worker
(intake.worker.IntakeWorker, in this process: parse, classify, thread, case and entry, attachments,
a group of mails per transaction pair), with the acknowledgements and other notices queued to the
outbox as new mail always queues them. Only that is timed: the imports, the store's creation and its
migrations come before it, and the checks of what it made come after. Nothing is sent; queuing is the
part of an acknowledgement that processing does.

It prints one JSON line (see feedcommon.report) and exits 1 unless the mails made the expected cases
and entries.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    # Run as a script from anywhere: casemail's packages live at the repository root.
    sys.path.insert(0, str(_REPO))

from sqlalchemy import func, select  # noqa: E402

from casemail.app import make_identity, make_intake_config, opened_store, utcnow  # noqa: E402
from casemail.mailcmds import _acceptor  # noqa: E402
from casemail.settings import settings_from_dict  # noqa: E402
from intake.transports.envelope import envelope_from_headers  # noqa: E402
from intake.worker import IntakeWorker  # noqa: E402
from feedcommon import Timer, read_folder, report  # noqa: E402
from store.db import read_only  # noqa: E402
from store.models import Case, Entry, Inbound, Outbox  # noqa: E402

SUPPORT_ADDRESS = "support@example.com"


def settings_for(workdir: Path):  # noqa: ANN201 - casemail.settings.Settings
    # The shipped defaults, with the store in the temporary folder; no listener is started here.
    return settings_from_dict({
        "database": {"url": "sqlite:///casemail.db"},
        "storage": {"blobs": "blobs"},
        "support": {"addresses": [SUPPORT_ADDRESS], "name": "Bench Support",
                    "secret_key": "bench-secret-key-0123456789abcdef"},
        "smtp": {"enabled": False},
        "outbound": {"transport": "maildir", "maildir": "sent"},
    }, base_dir=workdir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    folder = read_folder(args.folder)
    raws = [p.read_bytes() for p in folder.paths]

    with tempfile.TemporaryDirectory(prefix="casemail-peers-") as tmp:
        settings = settings_for(Path(tmp))
        with opened_store(settings) as store:
            cfg = make_intake_config(settings, make_identity(settings))
            acceptor = _acceptor(store)

            async def inline(fn):  # noqa: ANN001, ANN202 - the worker's RunInThread, run in place
                return fn()

            worker = IntakeWorker(store.engine, store.blobs, cfg, clock=utcnow, run=inline, on_outbox=lambda: None)
            timer = Timer()
            with timer:
                for raw in raws:
                    acceptor.accept_sync(raw, envelope_from_headers(raw, "import",
                                                                    default_recipients=(SUPPORT_ADDRESS,)))
                while asyncio.run(worker.drain()):
                    pass
            with read_only(store.engine) as s:
                outcomes = dict(s.execute(select(Inbound.outcome, func.count()).group_by(Inbound.outcome)).all())
            with read_only(store.engine) as s:
                # Every mail's inbound row names the case it opened or went into.
                per_case = s.execute(select(Inbound.case_id, func.count()).where(Inbound.case_id.is_not(None))
                                     .group_by(Inbound.case_id)).all()
                cases = s.scalar(select(func.count()).select_from(Case))
                entry_rows = s.scalar(select(func.count()).select_from(Entry))
                queued = s.scalar(select(func.count()).select_from(Outbox))
    per_ticket = [n for _case, n in per_case] + [0] * (cases - len(per_case))
    return report(peer="casemail", mode="in-process", folder=folder, per_ticket=per_ticket, timer=timer,
                  outcomes=outcomes, entry_rows=entry_rows, mail_queued=queued)


if __name__ == "__main__":
    sys.exit(main())
