"""Bringing a database of a release before schema revisions were kept up to the first
revision ("0001", see engine/schema): missing tables are created, and a column a later
release added is added to the table an earlier release made (nullable, so its rows stay as
they were). Every change since is a migration in engine/schema/versions, not a line here.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from .tables import TABLES

# Columns added since the tables were first released, by table: every database has the rest.
ADDED_COLUMNS = {"turnout_instances": ("parent_id",)}


def behind(conn: Connection) -> bool:
    """Whether the database lacks a table or a column of this release."""
    inspector = sa.inspect(conn)
    if any(not inspector.has_table(table.name) for table in TABLES):
        return True
    return bool(_missing_columns(conn))


def bring_up_to_date(conn: Connection, postgres: bool) -> None:
    """Create the missing tables and add the missing columns (with their indexes), inside
    the write transaction of `conn`; several processes may do it at once. The tables are
    those of revision 0001 as long as `tables.py` has no migration after it (engine/schema
    then stamps 0001 and runs the migrations from there)."""
    if postgres:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7301)"))
    SQLModel.metadata.create_all(conn, tables=TABLES)
    for table, column in _missing_columns(conn):
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
        for index in table.indexes:
            if column.name in index.columns:
                index.create(conn, checkfirst=True)


def _missing_columns(conn: Connection) -> list[tuple[sa.Table, sa.Column[object]]]:
    inspector = sa.inspect(conn)
    missing: list[tuple[sa.Table, sa.Column[object]]] = []
    for table in TABLES:
        added = ADDED_COLUMNS.get(table.name, ())
        if not added or not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing.extend((table, table.c[name]) for name in added if name not in present)
    return missing
