"""The first revision: the schema of the releases before revisions were kept.

Its tables are written out here, not taken from `engine/tables.py`: a migration stays as it
was released while the tables go on changing.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _serial() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def tables(metadata: sa.MetaData) -> list[sa.Table]:
    """The nine tables of revision 0001 on `metadata`, with their indexes (those only
    PostgreSQL has: the change feed's placing). Also used to bring a database of a release
    before revisions to this revision (see engine/upgrade.py)."""
    return [
        sa.Table(
            "turnout_change_cursors",
            metadata,
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("position", sa.BigInteger(), nullable=False),
            sa.Column("updated_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        ),
        sa.Table(
            "turnout_changes",
            metadata,
            sa.Column("seq", _serial(), autoincrement=True, nullable=False),
            sa.Column("position", sa.BigInteger(), nullable=True),
            sa.Column("instance_id", sa.String(32), nullable=False),
            sa.Column("key", sa.String(200), nullable=True),
            sa.Column("definition", sa.String(200), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("revision", sa.Integer(), nullable=False),
            sa.Column("kind", sa.String(20), nullable=False),
            sa.Column("event", sa.String(400), nullable=True),
            sa.Column("from_state", sa.String(400), nullable=True),
            sa.Column("to_state", sa.String(400), nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("first_entry", sa.Integer(), nullable=False),
            sa.Column("last_entry", sa.Integer(), nullable=False),
            sa.Column("at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("seq"),
            sa.Index("ix_turnout_changes_position", "position", unique=True).ddl_if(
                dialect="postgresql"
            ),
            sa.Index(
                "ix_turnout_changes_unplaced", "seq", postgresql_where=sa.text("position IS NULL")
            ).ddl_if(dialect="postgresql"),
        ),
        sa.Table(
            "turnout_definitions",
            metadata,
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("digest", sa.String(64), nullable=False),
            sa.Column("source", sa.Text(), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("name", "version"),
            sa.Index("ix_turnout_definitions_digest", "digest"),
        ),
        sa.Table(
            "turnout_history",
            metadata,
            sa.Column("instance_id", sa.String(32), nullable=False),
            sa.Column("seq", sa.Integer(), nullable=False),
            sa.Column("at", sa.DateTime(), nullable=False),
            sa.Column("kind", sa.String(20), nullable=False),
            sa.Column("event", sa.String(400), nullable=True),
            sa.Column("from_state", sa.String(400), nullable=True),
            sa.Column("to_state", sa.String(400), nullable=True),
            sa.Column("data", _json(), nullable=False),
            sa.PrimaryKeyConstraint("instance_id", "seq"),
            sqlite_with_rowid=False,
        ),
        sa.Table(
            "turnout_idempotency",
            metadata,
            sa.Column("instance_id", sa.String(32), nullable=False),
            sa.Column("key", sa.String(200), nullable=False),
            sa.Column("at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("instance_id", "key"),
        ),
        sa.Table(
            "turnout_instances",
            metadata,
            sa.Column("id", sa.String(32), nullable=False),
            sa.Column("key", sa.String(200), nullable=True),
            sa.Column("definition", sa.String(200), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("state", sa.String(400), nullable=False),
            sa.Column("active", _json(), nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("context", _json(), nullable=False),
            sa.Column("machine", _json(), nullable=False),
            sa.Column("revision", sa.Integer(), nullable=False),
            sa.Column("history_seq", sa.Integer(), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("updated_at", sa.DateTime(), nullable=False),
            sa.Column("parent_id", sa.String(32), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("definition", "key", name="uq_turnout_instances_key"),
            sa.Index("ix_turnout_instances_by_definition", "definition", "created_at", "id"),
            sa.Index("ix_turnout_instances_created", "created_at", "id"),
            sa.Index("ix_turnout_instances_definition", "definition", "status", "created_at", "id"),
            sa.Index("ix_turnout_instances_parent", "parent_id", "created_at", "id"),
            sa.Index("ix_turnout_instances_state", "state", "definition", "created_at", "id"),
            sa.Index("ix_turnout_instances_status", "status", "created_at", "id"),
        ),
        sa.Table(
            "turnout_tasks",
            metadata,
            sa.Column("id", sa.String(32), nullable=False),
            sa.Column("instance_id", sa.String(32), nullable=False),
            sa.Column("state_path", sa.String(400), nullable=False),
            sa.Column("activation", sa.Integer(), nullable=False),
            sa.Column("item", sa.Integer(), nullable=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("kind", sa.String(20), nullable=False),
            sa.Column("input", _json(), nullable=False),
            sa.Column("attempt", sa.Integer(), nullable=False),
            sa.Column("max_attempts", sa.Integer(), nullable=False),
            sa.Column("retry", _json(), nullable=False),
            sa.Column("timeout_ms", sa.Integer(), nullable=True),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("worker", sa.String(200), nullable=True),
            sa.Column("ready_at", sa.DateTime(), nullable=False),
            sa.Column("claimed_at", sa.DateTime(), nullable=True),
            sa.Column("lease_until", sa.DateTime(), nullable=True),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.Index("ix_turnout_tasks_instance", "instance_id", "state_path", "activation"),
            sa.Index("ix_turnout_tasks_ready", "status", "ready_at"),
        ),
        sa.Table(
            "turnout_timers",
            metadata,
            sa.Column("id", sa.String(32), nullable=False),
            sa.Column("instance_id", sa.String(32), nullable=False),
            sa.Column("state_path", sa.String(400), nullable=False),
            sa.Column("activation", sa.Integer(), nullable=False),
            sa.Column("key", sa.String(100), nullable=False),
            sa.Column("due_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.Index("ix_turnout_timers_due_at", "due_at"),
            sa.Index("ix_turnout_timers_instance", "instance_id", "state_path"),
        ),
        sa.Table(
            "turnout_webhook_deliveries",
            metadata,
            sa.Column("seq", _serial(), autoincrement=True, nullable=False),
            sa.Column("url", sa.String(2000), nullable=False),
            sa.Column("change_id", sa.String(53), nullable=False),
            sa.Column("position", sa.BigInteger(), nullable=False),
            sa.Column("instance_id", sa.String(32), nullable=False),
            sa.Column("revision", sa.Integer(), nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("last_status_code", sa.Integer(), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("body", sa.Text(), nullable=True),
            sa.Column("first_attempt_at", sa.DateTime(), nullable=False),
            sa.Column("last_attempt_at", sa.DateTime(), nullable=False),
            sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
            sa.Column("delivered_at", sa.DateTime(), nullable=True),
            sa.Column("failed_at", sa.DateTime(), nullable=True),
            sa.PrimaryKeyConstraint("seq"),
            sa.UniqueConstraint("url", "change_id", name="uq_turnout_webhook_deliveries"),
            sa.Index("ix_turnout_webhook_deliveries_status", "status", "url", "position"),
        ),
    ]


def upgrade() -> None:
    """Create the nine tables of the first releases, with their indexes."""
    bind = op.get_bind()
    for table in tables(sa.MetaData()):
        table.create(bind)


def downgrade() -> None:
    """The first revision is not undone: its tables hold the instances."""
    raise NotImplementedError("turnout does not downgrade below its first revision")
