"""The databases tests run against: a fresh PostgreSQL schema per use, or a skip (a failure
when CI=true) when the server named by TURNOUT_TEST_POSTGRES_URL is not there."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES_ENV = "TURNOUT_TEST_POSTGRES_URL"


def in_ci() -> bool:
    """Whether this is a CI run, where a missing service fails instead of skipping."""
    return os.environ.get("CI", "").lower() == "true"


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as a plain libpq connection string for psycopg."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """A URL of the TURNOUT_TEST_POSTGRES_URL server whose search_path is a fresh schema,
    dropped afterwards. Skipped when the variable is unset or the server unreachable, a
    failure when CI=true."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        if in_ci():
            pytest.fail(f"{POSTGRES_ENV} must be set when CI=true")
        pytest.skip(f"{POSTGRES_ENV} is not set")
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(libpq_url(base), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        if in_ci():
            pytest.fail(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {exc}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(libpq_url(base), autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET lock_timeout = '20s'")
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
