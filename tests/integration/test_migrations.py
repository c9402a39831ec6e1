# SPDX-License-Identifier: GPL-3.0-or-later
"""The migrations build exactly the schema the models describe, on SQLite and on PostgreSQL.

A column added to a model without its migration works in tests that create tables from the models, and
breaks every existing installation at its first use; this catches it. The full-text index of case
subjects is made by hand-written SQL in a migration (an FTS5 table, an expression index) that the
models cannot describe, so those objects are the one known difference.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import store.jobs  # noqa: F401 - their tables belong to the metadata compared
import store.mailboxes  # noqa: F401
from store.db import make_engine, migrate
from store.models import Base


def test_the_migrated_schema_is_the_models_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    unexpected = [d for d in diffs if "subject_fts" not in repr(d)]
    assert unexpected == []
