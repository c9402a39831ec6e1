# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the tests against a real database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from store.db import make_engine, migrate


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a fresh database (SQLite, and PostgreSQL when named) with the schema migrated."""
    e = make_engine(database_url)
    migrate(e)
    yield e
    e.dispose()
