"""target statuses per connection and board

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "status_mappings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("board_id", sa.Integer(), nullable=True),
        sa.Column("status_id", sa.Integer(), nullable=True),
        sa.Column("status_name", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "(status_id IS NULL) <> (status_name IS NULL)",
            name=op.f("ck_status_mappings_id_or_name"),
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["psa_connections.id"],
            name=op.f("fk_status_mappings_connection_id_psa_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_mappings")),
    )
    with op.batch_alter_table("status_mappings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_status_mappings_connection_id"), ["connection_id"])


def downgrade() -> None:
    with op.batch_alter_table("status_mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_status_mappings_connection_id"))
    op.drop_table("status_mappings")
