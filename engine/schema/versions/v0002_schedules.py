"""The turnout_schedules table, for schedules.

Instances started on a cron expression or an interval; see engine/schedules.py.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create turnout_schedules and its index of due ticks."""
    op.create_table(
        "turnout_schedules",
        sa.Column("name", sa.String(100), primary_key=True, nullable=False),
        sa.Column("definition", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("every_seconds", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("overlap", sa.String(20), nullable=False),
        sa.Column("catch_up", sa.String(20), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_tick_at", sa.DateTime(), nullable=False),
        sa.Column("last_tick_at", sa.DateTime(), nullable=True),
        sa.Column("last_instance_id", sa.String(32), nullable=True),
        sa.Column("buffered_tick", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_turnout_schedules_due", "turnout_schedules", ["paused", "next_tick_at"])


def downgrade() -> None:
    """Drop turnout_schedules (the instances its schedules started stay)."""
    op.drop_index("ix_turnout_schedules_due", table_name="turnout_schedules")
    op.drop_table("turnout_schedules")
