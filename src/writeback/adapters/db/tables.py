"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; the ORM maps onto it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from writeback.domain.model import IN_FLIGHT_STATES, WAITING_STATES, JobState

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

IN_FLIGHT = "state IN ({})".format(", ".join(f"'{state}'" for state in IN_FLIGHT_STATES))
# A session is closed once per kind: a job that is not failed, or that may have posted its note
# (then it is retried, never replaced by a second job that would post a second note). A second
# close that an upgrade found in older data is marked `duplicate_of` the one that counts.
CLOSES_SESSION = (
    f"(state <> '{JobState.FAILED}' OR post_started_at IS NOT NULL) AND duplicate_of IS NULL"
)
HELD = "message_id IS NULL AND state IN ({})".format(
    ", ".join(f"'{state}'" for state in WAITING_STATES)
)
SENT = "message_id IS NOT NULL"  # in the broker, or running under that message
# Waiting on a message committed and not known to be sent.
UNSENT = "message_id IS NOT NULL AND sent_at IS NULL AND state IN ({})".format(
    ", ".join(f"'{state}'" for state in WAITING_STATES)
)
RUNNING = f"state = '{JobState.RUNNING}'"
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class db_now(sa.sql.functions.FunctionElement[datetime]):  # noqa: N801 - reads as SQL
    """The database's clock, optionally `seconds` ahead: what leases and deadlines are judged
    by, so that no host's clock matters. PostgreSQL's now() is the transaction's start (the
    statement's, on an autocommit connection)."""

    type = UtcDateTime()
    inherit_cache = True
    name = "db_now"


@compiles(db_now)
def _now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    args = list(element.clauses)
    if not args:
        return "now()"
    return f"(now() + make_interval(secs => {compiler.process(args[0], **kw)}))"


@compiles(db_now, "sqlite")
def _sqlite_now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # The format SQLAlchemy stores SQLite datetimes in, to the millisecond: they compare as text.
    args = list(element.clauses)
    ahead = f", printf('%+.3f seconds', {compiler.process(args[0], **kw)})" if args else ""
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now'{ahead})"


def _fk(target: str) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete="CASCADE")


accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.Integer, _fk("accounts.id"), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.Integer, _fk("accounts.id"), nullable=False),
    sa.Column("user_id", sa.Integer, _fk("users.id"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

account_settings = sa.Table(
    "account_settings",
    metadata,
    sa.Column("account_id", sa.Integer, _fk("accounts.id"), primary_key=True),
    sa.Column("resolved_status_id", sa.Integer, nullable=True),
    sa.Column("escalated_status_id", sa.Integer, nullable=True),
    # Their names until migration 0007, still read and written by the previous release during a
    # roll-out (a PostgreSQL trigger keeps each pair equal); not mapped, dropped next release.
    sa.Column("cw_resolved_status_id", sa.Integer, nullable=True),
    sa.Column("cw_escalated_status_id", sa.Integer, nullable=True),
)

psa_connections = sa.Table(
    "psa_connections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.Integer, _fk("accounts.id"), nullable=False, index=True),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("site_url", sa.String(500), nullable=False),
    sa.Column("company_id", sa.String(200), nullable=False),
    sa.Column("credentials_encrypted", sa.LargeBinary, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("options", sa.JSON, nullable=True),
)

ai_sessions = sa.Table(
    "ai_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.Integer, _fk("accounts.id"), nullable=False, index=True),
    sa.Column("user_id", sa.Integer, _fk("users.id"), nullable=False),
    sa.Column("session_type", sa.String(40), nullable=False),
    sa.Column("intake_type", sa.String(40), nullable=False),
    sa.Column("intake_content", JSON, nullable=False),
    sa.Column("conversation_messages", JSON, nullable=False),
    sa.Column("psa_connection_id", sa.Integer, sa.ForeignKey("psa_connections.id"), nullable=True),
    sa.Column("psa_ticket_id", sa.String(64), nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("state_version", sa.Integer, nullable=False),
    sa.Column("resolution_note_markdown", sa.Text, nullable=True),
    sa.Column("escalation_package_markdown", sa.Text, nullable=True),
    sa.Column("resolved_at", UtcDateTime, nullable=True),
    sa.Column("escalated_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)


def _partial(name: str, *columns: str, where: str, unique: bool = False) -> sa.Index:
    """An index over the rows matching `where` only, on PostgreSQL and SQLite alike."""
    return sa.Index(
        name,
        *columns,
        unique=unique,
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )


writeback_jobs = sa.Table(
    "writeback_jobs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.Integer, _fk("accounts.id"), nullable=False),
    sa.Column("session_id", sa.Integer, _fk("ai_sessions.id"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    # The ticket the job writes to, fixed when it is created (NULL: a local job).
    sa.Column("psa_connection_id", sa.Integer, sa.ForeignKey("psa_connections.id"), nullable=True),
    sa.Column("psa_ticket_id", sa.String(64), nullable=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("step", sa.String(30), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("markdown", sa.Text, nullable=True),
    sa.Column("outcome", sa.String(30), nullable=True),
    sa.Column("external_id", sa.String(64), nullable=True),
    sa.Column("target_status_id", sa.Integer, nullable=True),
    sa.Column("verified_status_id", sa.Integer, nullable=True),
    sa.Column("verified_status_name", sa.String(200), nullable=True),
    sa.Column("status_transition_skipped_reason", sa.Text, nullable=True),
    sa.Column("error_code", sa.String(60), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("post_started_at", UtcDateTime, nullable=True),
    sa.Column("tenant", sa.String(80), nullable=False),
    sa.Column("message_id", sa.String(80), nullable=True),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    sa.Column("redeliveries", sa.Integer, nullable=False),
    sa.Column("duplicate_of", sa.String(36), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Index("ix_writeback_jobs_account_created", "account_id", "created_at"),
    # One in-flight job per session, decided by the database rather than check-then-insert.
    _partial("uq_writeback_jobs_session_in_flight", "session_id", where=IN_FLIGHT, unique=True),
    _partial(
        "uq_writeback_jobs_session_kind_closes",
        "session_id",
        "kind",
        where=CLOSES_SESSION,
        unique=True,
    ),
    # The scheduler's three scans each touch a handful of rows, however many jobs wait or are
    # done: held jobs by tenant and due time, jobs with a message out (a tenant's occupied slots),
    # and running steps by lease.
    _partial("ix_writeback_jobs_held", "tenant", "due_at", where=HELD),
    _partial("ix_writeback_jobs_sent", "tenant", "updated_at", where=SENT),
    _partial("ix_writeback_jobs_leases", "lease_until", where=RUNNING),
    _partial("ix_writeback_jobs_unsent", "updated_at", where=UNSENT),
    # Listing and bulk re-posting of failed jobs: the scan grows with the failed jobs only.
    _partial("ix_writeback_jobs_failed", "created_at", "id", where="state = 'failed'"),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.String(36), _fk("writeback_jobs.id"), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("step", sa.String(30), nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("detail", JSON, nullable=False),
    sa.Index("ix_job_events_job_id", "job_id", "id"),
)

draft_cache = sa.Table(
    "draft_cache",
    metadata,
    # sha256 of the account and of exactly what the drafter sends: a changed session is a new key.
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.Integer, _fk("accounts.id"), nullable=False, index=True),
    sa.Column("markdown", sa.Text, nullable=False),
    sa.Column("drafter", sa.String(120), nullable=False),
    sa.Column("usage", JSON, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# When the scheduler last swept: one row, so an operator (and /readyz) can see a stopped beat.
sweeps = sa.Table(
    "sweeps",
    metadata,
    sa.Column("name", sa.String(20), primary_key=True),
    sa.Column("at", UtcDateTime, nullable=True),
)

status_mappings = sa.Table(
    "status_mappings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("connection_id", sa.Integer, _fk("psa_connections.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("board_id", sa.Integer, nullable=True),  # NULL: any other board
    sa.Column("status_id", sa.Integer, nullable=True),
    sa.Column("status_name", sa.String(200), nullable=True),
    sa.CheckConstraint("(status_id IS NULL) <> (status_name IS NULL)", name="id_or_name"),
)
