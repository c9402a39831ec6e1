# SPDX-License-Identifier: GPL-3.0-or-later
"""outbox: an index on (template, created_at)

Processing asks, for every mail, how many answers and rate-limit notices went to the sender in the last
hour (store.outbox.sent_to_since). Without this index each question read the whole outbox, so
processing slowed down as the outbox grew.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_outbox_template_created', 'outbox', ['template', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_outbox_template_created', table_name='outbox')
