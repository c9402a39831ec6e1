# SPDX-License-Identifier: GPL-3.0-or-later
"""inbound: the raw bytes of a small received mail kept in its row

Before, every received mail became a blob file (written, fsynced, renamed, its directory fsynced)
before its inbound row was committed; for the few kilobytes of a typical support mail that cost more
than the row. In the row the bytes share the group's one commit. Rows written before keep their blob.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: the table is not copied, however long the inbound log is.
    op.add_column('inbound', sa.Column('raw', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inbound') as batch:
        batch.drop_column('raw')
