"""Bringing a database of a release before schema revisions were kept up to the first
revision ("0001", see engine/schema): the tables of that revision that are missing are
created, and a column added before revisions were kept is added to the table an earlier
release made (nullable, so its rows stay as they were). Every later change is a migration in
engine/schema/versions, not a line here.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .schema.versions import v0001_baseline

# Columns added before revisions were kept, by table: every such database has the rest.
ADDED_COLUMNS = {"turnout_instances": ("parent_id",)}


def bring_up_to_date(conn: Connection, postgres: bool) -> None:
    """Create the missing tables of revision 0001 and add its missing columns (with their
    indexes), inside the write transaction of `conn`; several processes may do it at once."""
    if postgres:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7301)"))
    metadata = sa.MetaData()
    tables = v0001_baseline.tables(metadata)
    metadata.create_all(conn, tables=tables)
    for table, column in _missing_columns(conn, tables):
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
        for index in table.indexes:
            if column.name in index.columns:
                index.create(conn, checkfirst=True)


def _missing_columns(
    conn: Connection, tables: list[sa.Table]
) -> list[tuple[sa.Table, sa.Column[object]]]:
    inspector = sa.inspect(conn)
    missing: list[tuple[sa.Table, sa.Column[object]]] = []
    for table in tables:
        added = ADDED_COLUMNS.get(table.name, ())
        if not added:
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing.extend((table, table.c[name]) for name in added if name not in present)
    return missing
