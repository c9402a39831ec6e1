# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# No per-example deadlines: a loaded CI machine must not turn a slow example into a failure. Under CI
# (CI=true) the examples are derandomized, so a verdict does not depend on the luck of a run; open-ended
# exploration is what local runs and fuzz/fuzz_intake.py are for.
hypothesis_settings.register_profile("casemail", deadline=None)
hypothesis_settings.register_profile("casemail-ci", deadline=None, derandomize=True)
hypothesis_settings.load_profile("casemail-ci" if os.environ.get("CI") == "true" else "casemail")

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


def _postgres_base_url() -> str | None:
    return os.environ.get("CASEMAIL_TEST_DATABASE_URL") or None


def _database_params() -> list[str]:
    # SQLite always; PostgreSQL too when a server is named (CI always names one).
    return ["sqlite", "postgresql"]


@pytest.fixture(params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fresh, empty database for one test: a SQLite file, or a new schema on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'casemail.db'}"
        return
    base = _postgres_base_url()
    if base is None:
        skip_or_fail("PostgreSQL tests need CASEMAIL_TEST_DATABASE_URL "
                     "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"cm_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - report an unreachable server as a skip (or a CI failure).
        admin.dispose()
        skip_or_fail(f"PostgreSQL at {base} is not usable: {exc}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
