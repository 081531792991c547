"""Alembic's environment for turnout's migrations, run in code by `engine.schema`: the
connection comes in the configuration's attributes, already in its write transaction (the
migrations run inside it, so they commit or roll back with the version row)."""

from __future__ import annotations

from alembic import context

from engine.schema import VERSION_TABLE
from engine.tables import METADATA, TABLES

assert TABLES  # declared on METADATA, which autogenerate compares with a database


def run() -> None:
    """Run the migrations Alembic chose on the connection given."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("turnout's migrations run on a connection: use `turnout db upgrade`")
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        version_table=VERSION_TABLE,  # in the tables' own schema (the search path's first)
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying
    )
    with context.begin_transaction():
        context.run_migrations()


run()
