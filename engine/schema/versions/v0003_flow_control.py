"""The turnout_task_limits and turnout_priorities tables, for flow control.

Per task name limits (concurrency, rate, partitions) and the priorities instances were
started with; see engine/flow_control.py.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create turnout_task_limits and turnout_priorities."""
    op.create_table(
        "turnout_task_limits",
        sa.Column("name", sa.String(200), primary_key=True, nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("rate_count", sa.Integer(), nullable=True),
        sa.Column("rate_period_ms", sa.Integer(), nullable=True),
        sa.Column("partition", sa.String(500), nullable=True),
        sa.Column("partition_limit", sa.Integer(), nullable=False),
        sa.Column("next_start_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "turnout_priorities",
        sa.Column("instance_id", sa.String(32), primary_key=True, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    """Drop both tables: every task name is unlimited again, every instance of priority 0."""
    op.drop_table("turnout_priorities")
    op.drop_table("turnout_task_limits")
