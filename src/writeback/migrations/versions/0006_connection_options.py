"""per-connection provider options (accept version, picklist labels, auth URL, closed status)

Revision ID: 0006
Revises: 0004 on this branch; 0005 (the job state machine) once both are merged
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
# Written beside the job state machine's 0005 (another branch): when both are merged this must
# read "0005", so that the history stays one line.
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: existing connections keep their provider's defaults.
    op.add_column("psa_connections", sa.Column("options", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("psa_connections") as batch:  # SQLite cannot drop a column in place
        batch.drop_column("options")
