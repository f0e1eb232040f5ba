"""job state machine: one outstanding message per job, heartbeat leases, versions, tenants,
and one close per session and kind

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from writeback.adapters.db.tables import HELD, IN_FLIGHT, RUNNING, SENT

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("writeback_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant", sa.String(80), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("message_id", sa.String(80), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        batch_op.drop_column("delivery_id")
    # Jobs in flight at upgrade time hold no message; 0008 hands them to the scheduler.
    op.execute(
        """UPDATE writeback_jobs SET tenant = (
             SELECT CASE WHEN s.psa_connection_id IS NOT NULL AND s.psa_ticket_id IS NOT NULL
                         THEN 'psa:' || s.psa_connection_id ELSE 'local:' || s.account_id END
             FROM ai_sessions s WHERE s.id = writeback_jobs.session_id)"""
    )
    with op.batch_alter_table("writeback_jobs", schema=None) as batch_op:
        batch_op.alter_column("tenant", server_default=None)
        batch_op.alter_column("version", server_default=None)
        # The unique index on closes is made by 0008, once older data's second closes of a
        # session are marked: here it would abort the upgrade on them.
        batch_op.drop_index("ix_writeback_jobs_due")
        for name, columns, where in (
            ("ix_writeback_jobs_held", ["tenant", "due_at"], HELD),
            ("ix_writeback_jobs_sent", ["tenant", "updated_at"], SENT),
            ("ix_writeback_jobs_leases", ["lease_until"], RUNNING),
        ):
            batch_op.create_index(
                name, columns, postgresql_where=sa.text(where), sqlite_where=sa.text(where)
            )


def downgrade() -> None:
    with op.batch_alter_table("writeback_jobs", schema=None) as batch_op:
        for name in (
            "ix_writeback_jobs_held",
            "ix_writeback_jobs_sent",
            "ix_writeback_jobs_leases",
        ):
            batch_op.drop_index(name)
        batch_op.create_index(
            "ix_writeback_jobs_due",
            ["due_at"],
            postgresql_where=sa.text(IN_FLIGHT),
            sqlite_where=sa.text(IN_FLIGHT),
        )
        batch_op.add_column(sa.Column("delivery_id", sa.String(200), nullable=True))
        batch_op.drop_column("version")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("message_id")
        batch_op.drop_column("tenant")
