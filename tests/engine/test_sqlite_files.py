"""An SQLite database is a file another process may hold, or one that is not a database or
cannot be written: each is a DatabaseUnavailable naming the file and what is wrong, and a
lock held elsewhere is waited for a bounded time (reads are not held up by it at all)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import DatabaseUnavailable, Engine, InvalidInput

DEFINITIONS = Path(__file__).parent / "definitions"
as_root = pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes any file")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A turnout database file with `counter` deployed and one instance started."""
    path = tmp_path / "turnout.db"
    with Engine(f"sqlite:///{path}") as engine:
        engine.deploy(DEFINITIONS / "counter.yaml")
        engine.start("counter", {"count": 0}, key="first")
    return path


@pytest.fixture
def locked(database: Path) -> Iterator[sqlite3.Connection]:
    """The database with another connection holding its write lock (BEGIN EXCLUSIVE)."""
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield holder
    finally:
        holder.close()


def test_a_file_that_is_not_an_sqlite_database_is_named(tmp_path: Path) -> None:
    text = tmp_path / "README.md"
    text.write_text("# not a database\n" * 100)
    with pytest.raises(DatabaseUnavailable) as refused:
        Engine(f"sqlite:///{text}")
    assert str(refused.value) == (
        f"the file {text} is not an SQLite database (nothing was changed)"
    )
    assert refused.value.outcome_unknown is False


def test_a_damaged_database_file_is_named(database: Path) -> None:
    data = bytearray(database.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the schema's page, past the file header
    database.write_bytes(bytes(data))
    with pytest.raises(DatabaseUnavailable) as refused:
        Engine(f"sqlite:///{database}")
    assert str(refused.value).startswith(f"the database file {database} is damaged")


def test_a_database_opened_read_only_names_the_file_when_written(database: Path) -> None:
    with Engine(f"sqlite:///file:{database}?mode=ro&uri=true") as engine:
        assert engine.get_by_key("counter", "first").state == "counting"
        with pytest.raises(DatabaseUnavailable) as refused:
            engine.start("counter", {"count": 1})
    assert f"cannot write the database file {database}: it was opened read-only" in str(
        refused.value
    )


@as_root
def test_a_read_only_database_file_says_so(database: Path) -> None:
    database.chmod(0o444)
    with Engine(f"sqlite:///{database}") as engine, pytest.raises(DatabaseUnavailable) as refused:
        engine.start("counter", {"count": 1})
    assert (
        f"cannot write the database file {database}: the file is read-only for this process"
        in str(refused.value)
    )


@as_root
def test_a_database_in_a_read_only_directory_names_the_files_sqlite_must_make(
    database: Path,
) -> None:
    database.parent.chmod(0o555)
    try:
        with pytest.raises(DatabaseUnavailable) as refused:
            with Engine(f"sqlite:///{database}") as engine:
                engine.start("counter", {"count": 1})
    finally:
        database.parent.chmod(0o755)
    assert f"its directory {database.parent} is not writable" in str(refused.value)
    assert "SQLite must write turnout.db-wal and turnout.db-shm there" in str(refused.value)


def test_a_database_in_a_missing_directory_names_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "turnout.db"
    with pytest.raises(DatabaseUnavailable) as refused:
        Engine(f"sqlite:///{path}")
    assert str(refused.value).startswith(
        f"cannot open the database file {path}: its directory {path.parent} does not exist"
    )


def test_a_database_locked_by_another_process_is_still_read_at_once(
    database: Path, locked: sqlite3.Connection
) -> None:
    """Opening and reading take no write lock, so they do not wait for the holder."""
    began = time.monotonic()
    with Engine(f"sqlite:///{database}", busy_timeout=30) as engine:
        assert [i.key for i in engine.instances()] == ["first"]
        assert engine.get_by_key("counter", "first").context == {"count": 0}
    assert time.monotonic() - began < 5


def test_a_write_to_a_locked_database_gives_up_after_its_busy_timeout_and_says_why(
    database: Path, locked: sqlite3.Connection
) -> None:
    with Engine(f"sqlite:///{database}", busy_timeout=0.2) as engine:
        first = engine.get_by_key("counter", "first")
        with pytest.raises(DatabaseUnavailable) as refused:
            engine.send(first.id, "increment")
    assert str(refused.value) == (
        f"the database file {database} is locked by another process; gave up after waiting "
        "0.2 s (nothing was changed)"
    )
    assert refused.value.outcome_unknown is False
    locked.rollback()
    with Engine(f"sqlite:///{database}") as engine:
        assert engine.send(first.id, "increment").context == {"count": 1}


def test_a_read_that_must_wait_for_a_lock_gives_up_after_the_read_wait(database: Path) -> None:
    """Out of WAL mode, a holder of the write lock keeps readers out too: a read waits at
    most 5 s (here less, as the busy timeout is shorter) and says the file is locked."""
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("PRAGMA journal_mode = DELETE")
        holder.execute("BEGIN EXCLUSIVE")
        began = time.monotonic()
        message = "is locked by another process; gave up after waiting 0.3 s"
        with pytest.raises(DatabaseUnavailable, match=message):
            Engine(f"sqlite:///{database}", busy_timeout=0.3)
        assert time.monotonic() - began < 5
    finally:
        holder.close()


@pytest.mark.parametrize("url", ["not a url", "://nothing", "sqlite"])
def test_a_string_that_is_no_database_url_is_invalid_input_naming_it(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Engine(url)
    assert f"{url!r} is not a database URL" in str(caught.value)
    assert "sqlite:///" in str(caught.value)
