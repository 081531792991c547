"""`turnout db current`, `db upgrade` and `db history` as a user runs them, on SQLite and
PostgreSQL: what they say and their exit statuses, and what any other command says when the
database's schema is not this release's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from schema_helpers import next_revision, one_revision_ahead, revision_of, stamp, turnout_db
from typer.testing import CliRunner

from engine import Engine, schema
from engine.cli import app


def test_current_on_an_empty_database(store_url: str) -> None:
    result = turnout_db("current", "--db", store_url)
    assert result.exit_code == 0, result.output
    assert "current: none (an empty database)" in result.output
    assert f"head: {schema.head()}" in result.output
    assert revision_of(store_url) == schema.EMPTY  # looking changed nothing


def test_current_once_an_engine_opened_it(store_url: str) -> None:
    Engine(store_url).close()
    result = turnout_db("current", "--db", store_url)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"current: {schema.head()}",
        f"head: {schema.head()}",
        "up to date",
    ]
    result = turnout_db("current", "--db", store_url, "--json")
    assert json.loads(result.output) == {
        "current": schema.head(),
        "head": schema.head(),
        "behind": 0,
    }


def test_upgrade_an_older_schema(
    store_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    older = schema.head()
    assert turnout_db("upgrade", "--db", store_url).output.strip() == (
        f"upgraded from none (an empty database) to revision {older}"
    )
    with one_revision_ahead(monkeypatch, tmp_path) as newer:
        result = turnout_db("current", "--db", store_url)
        assert result.exit_code == 0, result.output
        assert f"current: {older}" in result.output
        assert "1 behind: run `turnout db upgrade`" in result.output
        result = turnout_db("upgrade", "--db", store_url)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"upgraded from {older} to revision {newer}"
        result = turnout_db("upgrade", "--db", store_url)
        assert result.output.strip() == f"already at revision {newer}"
        result = turnout_db("upgrade", "--to", older, "--db", store_url)
        assert result.exit_code == 2
        assert "turnout does not downgrade a schema" in result.output
        assert revision_of(store_url) == newer


@pytest.mark.postgres
def test_a_command_on_an_outdated_postgres_schema_names_the_upgrade(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Engine(postgres_url).close()
    with one_revision_ahead(monkeypatch, tmp_path):
        result = CliRunner().invoke(app, ["list", "--db", postgres_url])
        assert result.exit_code == 1
        assert "run `turnout db upgrade` (with the same --db)" in result.output
        assert "Traceback" not in result.output
        assert turnout_db("upgrade", "--db", postgres_url).exit_code == 0
        assert CliRunner().invoke(app, ["list", "--db", postgres_url]).exit_code == 0


def test_an_unknown_target_and_a_newer_schema(store_url: str) -> None:
    result = turnout_db("upgrade", "--to", "0999x", "--db", store_url)
    assert result.exit_code == 2
    known = ", ".join(schema.revisions())
    assert f"no revision '0999x': this release knows {known}" in result.output
    Engine(store_url).close()
    stamp(store_url, next_revision())
    for args in (["current"], ["upgrade"]):
        result = turnout_db(*args, "--db", store_url)
        assert result.exit_code == 1
        assert "written by a newer release of turnout" in result.output
        assert "Traceback" not in result.output


def test_history_lists_the_revisions() -> None:
    result = turnout_db("history")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == list(schema.revisions())
    assert lines[0].startswith("0001  The first revision")
