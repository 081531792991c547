"""What the schema tests share: running `turnout db` in process, and a release one revision
ahead of this one (a copy of the version files plus one more) to be behind of."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from engine import schema
from engine.cli import app
from engine.store import Store

EXTRA_TABLE = "turnout_schema_test_extra"


def turnout_db(*args: str) -> Result:
    """`turnout db ARGS` run in this process."""
    return CliRunner().invoke(app, ["db", *args])


def revision_of(url: str) -> schema.Found:
    """The revision the database at `url` is at (EMPTY, EARLIER or a revision)."""
    store = Store(url, schema="leave")
    try:
        with store.core() as conn:
            return schema.read(conn)
    finally:
        store.close()


def tables_of(url: str) -> set[str]:
    """The names of the tables of the database at `url` (in its own schema)."""
    database = sa.create_engine(url)
    try:
        return set(sa.inspect(database).get_table_names())
    finally:
        database.dispose()


def next_revision() -> str:
    """The revision after this release's newest."""
    return f"{int(schema.head()) + 1:04d}"


@contextmanager
def one_revision_ahead(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """This release's revisions and one more (creating EXTRA_TABLE), as the next release
    would have them; gives the new revision. The old head is then one behind."""
    versions = tmp_path / "versions"
    shutil.copytree(schema.VERSIONS, versions)
    revision = next_revision()
    (versions / f"v{revision}_extra.py").write_text(
        f'''"""A table only the tests have."""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{schema.head()}"


def upgrade() -> None:
    op.create_table("{EXTRA_TABLE}", sa.Column("id", sa.Integer(), primary_key=True))
'''
    )
    monkeypatch.setattr(schema, "VERSIONS", versions)
    schema.revisions.cache_clear()
    try:
        yield revision
    finally:
        monkeypatch.undo()
        schema.revisions.cache_clear()


def stamp(url: str, revision: str) -> None:
    """Write `revision` into the version table as it is, whatever the tables are."""
    database = sa.create_engine(url)
    try:
        with database.begin() as conn:
            conn.execute(schema.version_t.update().values(version_num=revision))
    finally:
        database.dispose()
