"""Fixtures shared by every test folder: a fake clock and the database URLs to run against.

Nothing here imports `engine`, so the language and diagram tests run whatever state it is in.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

START = datetime(2026, 1, 1, tzinfo=UTC)
POSTGRES_ENV = "TURNOUT_TEST_POSTGRES_URL"


class FakeClock:
    """A clock that only moves when told to: `clock()` and `clock.now` give the time."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta | float) -> datetime:
        """Move the clock forward by a timedelta or a number of seconds; return the new time."""
        self.now += by if isinstance(by, timedelta) else timedelta(seconds=by)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """A fake UTC clock starting at 2026-01-01T00:00Z."""
    return FakeClock()


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _libpq_url(url: str) -> str:
    """The SQLAlchemy URL as a plain libpq connection string for psycopg."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test.

    Skipped when TURNOUT_TEST_POSTGRES_URL is unset, unless CI=true where that is a failure.
    """
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        if _in_ci():
            pytest.fail(f"{POSTGRES_ENV} must be set when CI=true")
        pytest.skip(f"{POSTGRES_ENV} is not set")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(_libpq_url(base), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        if _in_ci():
            pytest.fail(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {exc}")
    try:
        yield _with_search_path(base, schema)
    finally:
        with psycopg.connect(_libpq_url(base), autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET lock_timeout = '20s'")
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path}/turnout.db"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty database: an SQLite file, then an isolated PostgreSQL schema."""
    return str(request.getfixturevalue(f"{request.param}_url"))
