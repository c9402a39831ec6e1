# SPDX-License-Identifier: GPL-3.0-or-later
"""Alembic environment: migrations always run on a connection that casemail hands in."""

from __future__ import annotations

from alembic import context

from store.models import Base
import store.mailboxes  # noqa: F401 - registers the mailbox_state table on Base.metadata.

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through store.db.migrate() or `casemail migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
