"""per-connection provider options (accept version, picklist labels, auth URL, closed status)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: existing connections keep their provider's defaults.
    op.add_column("psa_connections", sa.Column("options", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("psa_connections") as batch:  # SQLite cannot drop a column in place
        batch.drop_column("options")
