"""account settings: resolved_status_id / escalated_status_id, the names of cw_resolved_status_id /
cw_escalated_status_id now that they apply to every PSA

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

Migrations only add (docs/upgrading.md): the previous release's processes run beside this one's
during a roll-out, and after a roll-back, and they read and write the old columns. So this adds
the new columns with the old values and, on PostgreSQL, a trigger that keeps each pair equal
whichever name a process writes. The old columns and the trigger are dropped one release later.
SQLite (the embedded default) runs one release at a time and needs no trigger.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NAMES = {
    "resolved_status_id": "cw_resolved_status_id",
    "escalated_status_id": "cw_escalated_status_id",
}

# On INSERT the name that was given fills the other; on UPDATE the name that changed does.
SYNC_FUNCTION = """
CREATE FUNCTION account_settings_sync_names() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.resolved_status_id := COALESCE(NEW.resolved_status_id, NEW.cw_resolved_status_id);
        NEW.escalated_status_id := COALESCE(NEW.escalated_status_id, NEW.cw_escalated_status_id);
    ELSE
        IF NEW.resolved_status_id IS NOT DISTINCT FROM OLD.resolved_status_id THEN
            NEW.resolved_status_id := NEW.cw_resolved_status_id;
        END IF;
        IF NEW.escalated_status_id IS NOT DISTINCT FROM OLD.escalated_status_id THEN
            NEW.escalated_status_id := NEW.cw_escalated_status_id;
        END IF;
    END IF;
    NEW.cw_resolved_status_id := NEW.resolved_status_id;
    NEW.cw_escalated_status_id := NEW.escalated_status_id;
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""
SYNC_TRIGGER = """
CREATE TRIGGER account_settings_sync_names BEFORE INSERT OR UPDATE ON account_settings
FOR EACH ROW EXECUTE FUNCTION account_settings_sync_names()
"""


def upgrade() -> None:
    for new in NAMES:
        op.add_column("account_settings", sa.Column(new, sa.Integer(), nullable=True))
    _copy(to_new=True)
    if _postgresql():
        op.execute(SYNC_FUNCTION)
        op.execute(SYNC_TRIGGER)


def downgrade() -> None:
    if _postgresql():
        op.execute("DROP TRIGGER account_settings_sync_names ON account_settings")
        op.execute("DROP FUNCTION account_settings_sync_names()")
    _copy(to_new=False)  # SQLite wrote the new columns alone
    with op.batch_alter_table("account_settings") as batch:  # SQLite drops columns in batch
        for new in NAMES:
            batch.drop_column(new)


def _copy(*, to_new: bool) -> None:
    pairs = ((new, old) if to_new else (old, new) for new, old in NAMES.items())
    op.execute("UPDATE account_settings SET " + ", ".join(f"{to} = {src}" for to, src in pairs))


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"
