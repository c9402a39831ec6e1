# SPDX-License-Identifier: GPL-3.0-or-later
"""outbox: the rendered bytes of a small mail kept in its row

Before, every rendered mail was a file in the blob store, written and fsynced (with its directory) before
the first attempt to send it. For acknowledgements of a few kilobytes that was most of the outbox's
work; in the row they share the one commit of their batch. Rows written before keep their blob.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: the table is not copied, however long the outbox is.
    op.add_column('outbox', sa.Column('rendered', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('rendered')
