"""draft cache for previews and the draft step

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "draft_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("markdown", sa.Text(), nullable=False),
        sa.Column("drafter", sa.String(length=120), nullable=False),
        sa.Column(
            "usage",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_draft_cache_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_draft_cache")),
    )
    with op.batch_alter_table("draft_cache", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_draft_cache_account_id"), ["account_id"])


def downgrade() -> None:
    with op.batch_alter_table("draft_cache", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_draft_cache_account_id"))
    op.drop_table("draft_cache")
