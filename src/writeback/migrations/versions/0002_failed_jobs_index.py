"""index failed jobs for listing and bulk re-post

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FAILED = sa.text("state = 'failed'")


def upgrade() -> None:
    with op.batch_alter_table("writeback_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_writeback_jobs_failed",
            ["created_at", "id"],
            unique=False,
            postgresql_where=FAILED,
            sqlite_where=FAILED,
        )


def downgrade() -> None:
    with op.batch_alter_table("writeback_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_writeback_jobs_failed")
