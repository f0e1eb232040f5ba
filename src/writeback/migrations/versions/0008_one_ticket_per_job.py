"""one ticket per job, send records, second closes of older data, the sweep's time

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from writeback.adapters.db.tables import CLOSES_SESSION, UNSENT

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
# While the previous release still runs beside this one, its API creates jobs without a ticket
# of their own: on PostgreSQL a trigger gives each the ticket its session names, as this
# release's API does. (SQLite runs one release at a time.) Dropped one release later.
TICKET_FUNCTION = """
CREATE FUNCTION writeback_jobs_own_ticket() RETURNS trigger AS $$
BEGIN
  IF NEW.psa_ticket_id IS NULL THEN
    SELECT s.psa_connection_id, s.psa_ticket_id INTO NEW.psa_connection_id, NEW.psa_ticket_id
    FROM ai_sessions s
    WHERE s.id = NEW.session_id AND s.psa_connection_id IS NOT NULL
      AND s.psa_ticket_id IS NOT NULL;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql
"""
TICKET_TRIGGER = """
CREATE TRIGGER writeback_jobs_own_ticket BEFORE INSERT ON writeback_jobs
FOR EACH ROW EXECUTE FUNCTION writeback_jobs_own_ticket()
"""
# A job caught running by the upgrade may have a note POST in flight from the worker that
# stopped: it waits this long and looks for the note first. More than the default settle time
# (PSA timeout + 15 = 45 s): a migration cannot read the deployment's settings.
SETTLE = timedelta(seconds=60)
CLOSES = "uq_writeback_jobs_session_kind_closes"


def upgrade() -> None:
    with op.batch_alter_table("writeback_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("psa_connection_id", sa.Integer, nullable=True))
        batch_op.add_column(sa.Column("psa_ticket_id", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("duplicate_of", sa.String(36), nullable=True))
        batch_op.create_foreign_key(
            "fk_writeback_jobs_psa_connection_id_psa_connections",
            "psa_connections",
            ["psa_connection_id"],
            ["id"],
        )
    now = datetime.now(UTC)
    # A job writes to the ticket its session names; for older jobs, the one it names now.
    op.execute(
        """UPDATE writeback_jobs SET
             psa_connection_id = (SELECT s.psa_connection_id FROM ai_sessions s
                                  WHERE s.id = writeback_jobs.session_id
                                    AND s.psa_ticket_id IS NOT NULL),
             psa_ticket_id = (SELECT s.psa_ticket_id FROM ai_sessions s
                              WHERE s.id = writeback_jobs.session_id
                                AND s.psa_connection_id IS NOT NULL)"""
    )
    # Messages out before the upgrade were sent (their senders committed, then sent).
    op.execute("UPDATE writeback_jobs SET sent_at = updated_at WHERE message_id IS NOT NULL")
    _hand_stranded_jobs_to_the_scheduler(now)
    op.execute(f"DROP INDEX IF EXISTS {CLOSES}")  # as an earlier 0005 made it, without marks
    _mark_second_closes(now)
    with op.batch_alter_table("writeback_jobs", schema=None) as batch_op:
        batch_op.create_index(
            CLOSES,
            ["session_id", "kind"],
            unique=True,
            postgresql_where=sa.text(CLOSES_SESSION),
            sqlite_where=sa.text(CLOSES_SESSION),
        )
        batch_op.create_index(
            "ix_writeback_jobs_unsent",
            ["updated_at"],
            postgresql_where=sa.text(UNSENT),
            sqlite_where=sa.text(UNSENT),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TICKET_FUNCTION)
        op.execute(TICKET_TRIGGER)
    sweeps = op.create_table(
        "sweeps",
        sa.Column("name", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sweeps")),
    )
    op.bulk_insert(sweeps, [{"name": "sweep", "at": None}])


def _hand_stranded_jobs_to_the_scheduler(now: datetime) -> None:
    """A job running when the previous release stopped has neither a message nor a lease, nor
    a due time: it would never move again. It is held, due now (after the settle time if its
    note POST may be in flight), for the scheduler to admit."""
    jobs = sa.table(
        "writeback_jobs",
        sa.column("state"),
        sa.column("step"),
        sa.column("message_id"),
        sa.column("lease_until"),
        sa.column("post_started_at"),
        sa.column("due_at"),
    )
    stranded = sa.and_(jobs.c.state == "running", jobs.c.lease_until.is_(None))
    posting = sa.and_(jobs.c.step == "post_note", jobs.c.post_started_at.is_not(None))
    op.execute(
        jobs.update()
        .where(stranded)
        .values(
            state="queued",
            message_id=None,
            due_at=sa.case((posting, now + SETTLE), else_=now),
        )
    )
    op.execute(
        jobs.update()
        .where(
            jobs.c.state.in_(("queued", "retrying")),
            jobs.c.message_id.is_(None),
            jobs.c.due_at.is_(None),
        )
        .values(due_at=now)
    )


def _mark_second_closes(now: datetime) -> None:
    """Older releases let one session be closed twice in one kind; the unique index on closes
    cannot be made over that. Per session and kind, the close that counts is the succeeded
    one, else the one in flight, else one that may have posted, the oldest first; each other
    is marked `duplicate_of` it (a retry of it answers 409 naming it), and one still in flight
    is failed `duplicate_close`. Each is logged: the upgrade never aborts on data."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, session_id, kind, state FROM writeback_jobs "
            "WHERE state <> 'failed' OR post_started_at IS NOT NULL "
            "ORDER BY session_id, kind, "
            "CASE state WHEN 'succeeded' THEN 0 WHEN 'failed' THEN 2 ELSE 1 END, created_at"
        )
    ).all()
    kept: dict[tuple[int, str], str] = {}
    for job_id, session_id, kind, state in rows:
        first = kept.setdefault((session_id, kind), job_id)
        if first == job_id:
            continue
        log.warning(
            "job %s is a second %s of session %s (job %s counts): marked duplicate_of it%s",
            job_id,
            kind,
            session_id,
            first,
            "" if state in ("succeeded", "failed") else ", and failed",
        )
        bind.execute(
            sa.text("UPDATE writeback_jobs SET duplicate_of = :first WHERE id = :id"),
            {"first": first, "id": job_id},
        )
        if state not in ("succeeded", "failed"):
            bind.execute(
                sa.text(
                    "UPDATE writeback_jobs SET state = 'failed', error_code = 'duplicate_close', "
                    "error_message = :message, message_id = NULL, lease_until = NULL, "
                    "due_at = NULL, finished_at = :now WHERE id = :id"
                ),
                {
                    "id": job_id,
                    "now": now,
                    "message": f"A second {kind} of session {session_id}, found at an upgrade; "
                    f"job {first} is the one that counts.",
                },
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER writeback_jobs_own_ticket ON writeback_jobs")
        op.execute("DROP FUNCTION writeback_jobs_own_ticket()")
    op.drop_table("sweeps")
    with op.batch_alter_table("writeback_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_writeback_jobs_unsent")
        batch_op.drop_index(CLOSES)
        batch_op.drop_constraint(
            "fk_writeback_jobs_psa_connection_id_psa_connections", type_="foreignkey"
        )
        batch_op.drop_column("duplicate_of")
        batch_op.drop_column("sent_at")
        batch_op.drop_column("psa_ticket_id")
        batch_op.drop_column("psa_connection_id")
