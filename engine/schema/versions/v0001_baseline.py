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


def upgrade() -> None:
    """Create the nine tables of the first releases, with their indexes."""
    postgres = op.get_context().dialect.name == "postgresql"

    op.create_table(
        "turnout_change_cursors",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "turnout_changes",
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
    )
    if postgres:  # only PostgreSQL places changes in the feed's order
        op.create_index("ix_turnout_changes_position", "turnout_changes", ["position"], unique=True)
    if postgres:  # only PostgreSQL places changes in the feed's order
        op.create_index(
            "ix_turnout_changes_unplaced",
            "turnout_changes",
            ["seq"],
            unique=False,
            postgresql_where=sa.text("position IS NULL"),
        )
    op.create_table(
        "turnout_definitions",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version"),
    )
    op.create_index(
        "ix_turnout_definitions_digest", "turnout_definitions", ["digest"], unique=False
    )
    op.create_table(
        "turnout_history",
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
    )
    op.create_table(
        "turnout_idempotency",
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "key"),
    )
    op.create_table(
        "turnout_instances",
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
    )
    op.create_index(
        "ix_turnout_instances_by_definition",
        "turnout_instances",
        ["definition", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_turnout_instances_created", "turnout_instances", ["created_at", "id"], unique=False
    )
    op.create_index(
        "ix_turnout_instances_definition",
        "turnout_instances",
        ["definition", "status", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_turnout_instances_parent",
        "turnout_instances",
        ["parent_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_turnout_instances_state",
        "turnout_instances",
        ["state", "definition", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_turnout_instances_status",
        "turnout_instances",
        ["status", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "turnout_tasks",
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
    )
    op.create_index(
        "ix_turnout_tasks_instance",
        "turnout_tasks",
        ["instance_id", "state_path", "activation"],
        unique=False,
    )
    op.create_index("ix_turnout_tasks_ready", "turnout_tasks", ["status", "ready_at"], unique=False)
    op.create_table(
        "turnout_timers",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("state_path", sa.String(400), nullable=False),
        sa.Column("activation", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_turnout_timers_due_at", "turnout_timers", ["due_at"], unique=False)
    op.create_index(
        "ix_turnout_timers_instance", "turnout_timers", ["instance_id", "state_path"], unique=False
    )
    op.create_table(
        "turnout_webhook_deliveries",
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
    )
    op.create_index(
        "ix_turnout_webhook_deliveries_status",
        "turnout_webhook_deliveries",
        ["status", "url", "position"],
        unique=False,
    )


def downgrade() -> None:
    """The first revision is not undone: its tables hold the instances."""
    raise NotImplementedError("turnout does not downgrade below its first revision")
