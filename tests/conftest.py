# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _corpus_root() -> Path:
    # The corpus lives beside the repository (../shared/corpus) and is never copied into it.
    override = os.environ.get("CASEMAIL_CORPUS")
    return Path(override) if override else REPO.parent / "shared" / "corpus"


def require_services() -> bool:
    """CI sets CASEMAIL_REQUIRE_SERVICES=1: a missing service is then a failure, not a skip."""
    return os.environ.get("CASEMAIL_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if require_services():
        pytest.fail(f"{reason} (CASEMAIL_REQUIRE_SERVICES=1 forbids skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    root = _corpus_root()
    if not (root / "MANIFEST.tsv").is_file():
        skip_or_fail(f"the shared mail corpus is absent (looked in {root}; set CASEMAIL_CORPUS)")
    return root
