"""The schema's revisions on SQLite and PostgreSQL: migrations agree with `tables.py`, an
Engine opening a database creates, stamps, upgrades or refuses it as engine/schema says."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from schema_helpers import (
    EXTRA_TABLE,
    next_revision,
    one_revision_ahead,
    revision_of,
    stamp,
    tables_of,
)
from sqlmodel import Field, SQLModel

from engine import Engine, SchemaMismatch, SchemaOutdated, schema
from engine.schema.versions import v0001_baseline
from engine.store import Store
from engine.tables import METADATA, TABLES, instances_t

OPENERS = 4


def migrated(url: str, target: str | None = None) -> None:
    """Run the migrations on the database at `url`, from nothing up to `target`."""
    store = Store(url, schema="leave")
    try:
        schema.upgrade_to(store, target)
    finally:
        store.close()


def made_on(dialect: str) -> Any:
    """Whether autogenerate should look for an item on `dialect`: not for an index made
    only on another database (`ddl_if`, as the change feed's PostgreSQL-only indexes)."""

    def include(item: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
        condition = getattr(item, "_ddl_if", None)
        return condition is None or condition.dialect in (None, dialect)

    return include


def differences(url: str) -> list[Any]:
    """What autogenerate finds between the database at `url` and `tables.py`."""
    database = sa.create_engine(url)
    try:
        with database.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "version_table": schema.VERSION_TABLE,
                    "compare_type": True,
                    "target_metadata": METADATA,
                    "include_object": made_on(conn.dialect.name),
                },
            )
            return list(compare_metadata(context, METADATA))
    finally:
        database.dispose()


def test_the_revision_files_are_one_line_of_revisions() -> None:
    scripts = ScriptDirectory.from_config(schema.config())
    assert scripts.get_heads() == [schema.head()]
    walked = [script.revision for script in scripts.walk_revisions()]
    assert walked == list(reversed(schema.revisions()))
    assert schema.revisions()[0] == schema.BASELINE


def test_the_migrations_make_the_tables_py_schema(store_url: str) -> None:
    migrated(store_url)
    assert differences(store_url) == []
    assert revision_of(store_url) == schema.head()


def test_an_engine_creates_the_same_schema_and_stamps_it(store_url: str) -> None:
    Engine(store_url).close()
    assert differences(store_url) == []
    assert revision_of(store_url) == schema.head()
    assert tables_of(store_url) == {table.name for table in TABLES} | {schema.VERSION_TABLE}


def first_release_tables(url: str) -> None:
    """The first release's tables: revision 0001's but for the parent column (and its
    index) and the change feed's three tables, which releases before revisions added."""
    metadata = sa.MetaData()
    later = ("turnout_changes", "turnout_change_cursors", "turnout_webhook_deliveries")
    tables = [table for table in v0001_baseline.tables(metadata) if table.name not in later]
    database = sa.create_engine(url)
    try:
        with database.begin() as conn:
            metadata.create_all(conn, tables=tables)
            conn.execute(sa.text("DROP INDEX ix_turnout_instances_parent"))
            conn.execute(sa.text("ALTER TABLE turnout_instances DROP COLUMN parent_id"))
    finally:
        database.dispose()


class AppNote(SQLModel, table=True):
    """An application's own table, on SQLModel's shared metadata."""

    __tablename__ = "app_notes"
    id: int | None = Field(default=None, primary_key=True)
    text: str


def test_an_applications_create_all_leaves_turnouts_tables_to_turnout(store_url: str) -> None:
    assert not [name for name in SQLModel.metadata.tables if name.startswith("turnout_")]
    app = sa.create_engine(store_url)
    try:
        SQLModel.metadata.create_all(app)  # before turnout first opens the database
        with app.connect() as conn:
            names = sa.inspect(conn).get_table_names()
        assert "app_notes" in names and not [n for n in names if n.startswith("turnout_")]
        with Engine(store_url) as engine:  # creates and stamps its own
            engine.deploy(Path(__file__).parent.parent / "engine" / "definitions" / "notes.yaml")
            SQLModel.metadata.create_all(app)  # and again after: nothing to do
        with Engine(store_url) as engine:
            assert engine.definitions()
    finally:
        app.dispose()


def test_a_database_of_a_release_before_revisions_is_brought_to_the_newest(
    store_url: str, clock: Any
) -> None:
    first_release_tables(store_url)
    assert revision_of(store_url) == schema.EARLIER
    if store_url.startswith("postgresql"):  # refused, changing nothing, until upgraded
        with pytest.raises(SchemaOutdated, match="turnout db upgrade"):
            Engine(store_url, clock=clock)
        assert revision_of(store_url) == schema.EARLIER
        migrated(store_url)  # what `turnout db upgrade` does
    with Engine(store_url, clock=clock) as engine:
        engine.deploy(Path(__file__).parent.parent / "engine" / "definitions" / "notes.yaml")
    assert revision_of(store_url) == schema.head()
    database = sa.create_engine(store_url)
    columns = [column["name"] for column in sa.inspect(database).get_columns(instances_t.name)]
    database.dispose()
    assert "parent_id" in columns
    assert {table.name for table in TABLES} <= tables_of(store_url)


def test_a_database_before_revisions_goes_through_the_later_migrations(
    store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first_release_tables(store_url)
    with one_revision_ahead(monkeypatch, tmp_path) as newer:
        migrated(store_url)  # what `turnout db upgrade` does
        assert revision_of(store_url) == newer
        assert EXTRA_TABLE in tables_of(store_url)
    assert [difference[0] for difference in differences(store_url)] == ["remove_table"]


def test_sqlite_upgrades_itself_when_opened(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrated(sqlite_url)
    older = schema.head()
    with one_revision_ahead(monkeypatch, tmp_path) as newer:
        assert revision_of(sqlite_url) == older
        Engine(sqlite_url).close()
        assert revision_of(sqlite_url) == newer
        assert EXTRA_TABLE in tables_of(sqlite_url)


@pytest.mark.postgres
def test_postgres_refuses_an_older_schema_naming_the_command(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrated(postgres_url)
    older = schema.head()
    with one_revision_ahead(monkeypatch, tmp_path) as newer:
        with pytest.raises(SchemaOutdated) as refused:
            Engine(postgres_url)
        message = str(refused.value)
        assert "turnout db upgrade" in message
        assert older in message and newer in message
        assert (refused.value.current, refused.value.head) == (older, newer)
        assert revision_of(postgres_url) == older
        assert EXTRA_TABLE not in tables_of(postgres_url)
        Engine(postgres_url, upgrade=True).close()  # the opt-in: upgraded under a lock
        assert revision_of(postgres_url) == newer
        Engine(postgres_url).close()  # and then opened as any up-to-date database


def test_a_newer_release_s_schema_is_refused(store_url: str) -> None:
    Engine(store_url).close()
    stamp(store_url, next_revision())
    with pytest.raises(SchemaMismatch, match="newer release of turnout.*upgrade turnout"):
        Engine(store_url)
    with pytest.raises(SchemaMismatch, match="newer release"):
        Engine(store_url, upgrade=True)


def test_an_unknown_revision_is_refused(store_url: str) -> None:
    Engine(store_url).close()
    stamp(store_url, "abc")
    with pytest.raises(SchemaMismatch, match="'abc', which no release of turnout wrote"):
        Engine(store_url)


def test_an_engine_on_an_up_to_date_database_does_not_write(sqlite_url: str) -> None:
    Engine(sqlite_url).close()
    database = sa.create_engine(sqlite_url)
    try:
        with database.connect() as holder:
            holder.exec_driver_sql("BEGIN IMMEDIATE")  # another process's write lock
            Engine(sqlite_url, busy_timeout=0.1).close()  # opens without waiting for it
            holder.exec_driver_sql("ROLLBACK")
    finally:
        database.dispose()


def test_openers_upgrading_at_once_upgrade_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrated(store_url)
    with one_revision_ahead(monkeypatch, tmp_path) as newer:
        barrier = threading.Barrier(OPENERS)
        failures: list[BaseException] = []

        def open_and_close() -> None:
            barrier.wait()
            try:
                Engine(store_url, upgrade=True).close()
            except BaseException as exc:  # reported below, in the test's own thread
                failures.append(exc)

        threads = [threading.Thread(target=open_and_close) for _ in range(OPENERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert revision_of(store_url) == newer
