# SPDX-License-Identifier: GPL-3.0-or-later
"""The `casemail cases` command's handling of the garbage collector (casemail/cli.py)."""

from __future__ import annotations

import gc

from casemail.cli import start_up_frozen


def test_the_listing_runs_frozen_and_leaves_the_collector_as_it_was() -> None:
    # main() also runs inside longer-lived processes (the tests call it), which must not keep
    # objects frozen after the command returns.
    with start_up_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0 and gc.isenabled()
