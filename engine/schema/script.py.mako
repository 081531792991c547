"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    """What this revision changes (on SQLite, alter tables with op.batch_alter_table)."""
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    """turnout does not downgrade a schema."""
    raise NotImplementedError("turnout does not downgrade a schema")
