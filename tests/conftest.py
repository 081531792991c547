"""Fixtures shared by every test folder: a fake clock and the database URLs to run against.

Nothing here imports `engine`, so the language and diagram tests run whatever state it is in.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from databases import postgres_schema

START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when told to: `clock()` and `clock.now` give the time."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, step: timedelta | float) -> datetime:
        """Move the clock forward by a timedelta or a number of seconds; return the new time."""
        self.now += step if isinstance(step, timedelta) else timedelta(seconds=step)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """A fake UTC clock starting at 2026-01-01T00:00Z."""
    return FakeClock()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test.

    Skipped when TURNOUT_TEST_POSTGRES_URL is unset, unless CI=true where that is a failure.
    """
    with postgres_schema() as url:
        yield url


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
