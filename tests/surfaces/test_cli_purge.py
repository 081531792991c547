"""`turnout purge` as an operator runs it: counts printed (or JSON), an archive written, a
dry run deleting nothing, bad arguments answered in one line with exit status 2; and a
definition's retention as the HTTP API shows it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from engine import Engine, InstanceNotFound
from engine.api.app import create_app
from engine.cli import app
from engine.retention import read_archive

COUNTER = """
name: counter
initial: counting
states:
  counting:
    on: {stop: stopped}
  stopped: {final: true}
"""


def purge(url: str, *args: str) -> Any:
    return CliRunner().invoke(app, ["purge", "--db", url, *args])


@pytest.fixture
def finished(store_url: str, clock: Any) -> tuple[list[str], str]:
    """Three instances finished on 2026-01-01 (the fake clock) and one still running."""
    with Engine(store_url, clock=clock) as engine:
        engine.deploy(COUNTER)
        ids = [engine.send(engine.start("counter", {}).id, "stop").id for _ in range(3)]
        running = engine.start("counter", {}).id
    return ids, running


def test_purge_counts_archives_and_spares_running_ones(
    store_url: str, finished: tuple[list[str], str], tmp_path: Path
):
    ids, running = finished
    dry = purge(store_url, "--before", "2026-01-02", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["instances"] == 3

    archive = tmp_path / "old.jsonl"
    done = purge(store_url, "--before", "30m", "--archive", str(archive), "--batch", "2")
    assert done.exit_code == 0, done.output
    assert "instances" in done.stdout and "3" in done.stdout
    assert sorted(item.instance.id for item in read_archive(archive)) == sorted(ids)
    with Engine(store_url) as engine:
        assert engine.get(running).status == "running"
        with pytest.raises(InstanceNotFound):
            engine.get(ids[0])
    again = purge(store_url, "--before", "2026-01-02T00:00:00+00:00", "--json")
    assert json.loads(again.stdout)["instances"] == 0


def test_a_cutoff_before_they_finished_keeps_them(store_url: str, finished: tuple[list[str], str]):
    kept = purge(store_url, "--before", "2025-12-31", "--json", "--status", "succeeded")
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.stdout)["instances"] == 0
    age = datetime.now(UTC) - datetime(2025, 12, 1, tzinfo=UTC)
    kept = purge(store_url, "--before", f"{age.days}d", "--json")
    assert json.loads(kept.stdout)["instances"] == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--before", "sometime"], "neither an age"),
        (["--before", "1d", "--status", "running"], "only finished instances"),
        (["--before", "1d", "--status", "lost"], "choose from"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(sqlite_url: str, args: list[str], says: str):
    result = purge(sqlite_url, *args)
    assert result.exit_code == 2
    assert says in result.stderr
    assert "Traceback" not in result.output


def test_the_http_api_shows_a_definitions_retention(sqlite_url: str):
    with Engine(sqlite_url) as engine:
        engine.deploy(COUNTER)
        engine.deploy(COUNTER.replace("name: counter", "name: counter\nretention: P30D"))
        with TestClient(create_app(engine), base_url="http://127.0.0.1") as client:
            assert client.get("/api/definitions/counter").json()["retention"] == "30d"
            older = client.get("/api/definitions/counter", params={"version": 1}).json()
            assert older["retention"] is None
            diff = client.get("/api/definitions/counter/diff", params={"from": 1, "to": 2})
            assert diff.json()["retention"] == [None, "30d"]
