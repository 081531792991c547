"""A task held back by flow control, as users see it: in the HTTP API's instance, on the
dashboard's instance page, and in `turnout show`; and limits set from a settings file by
`turnout worker --limits`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from turnout_processes import run_turnout

from engine import Engine
from engine.api.app import create_app

DEFINITION = Path(__file__).parent.parent / "engine" / "definitions" / "flow_job.yaml"
REASON = "concurrency limit: 1 of 1 running"


@pytest.fixture
def held(store_url: str) -> Iterator[tuple[Engine, str]]:
    """An engine with two flow jobs under a concurrency of 1: the first claimed, the second
    held back (its id given)."""
    engine = Engine(store_url)
    try:
        engine.deploy(DEFINITION)
        engine.limit_task("flow.work", concurrency=1)
        engine.start("flow_job", {"customer": "a"})
        second = engine.start("flow_job", {"customer": "b"}).id
        assert len(engine.claim_tasks(["flow.work"], limit=2)) == 1
        yield engine, second
    finally:
        engine.close()


def test_a_held_task_shows_its_reason_over_http_and_on_the_dashboard(
    held: tuple[Engine, str],
) -> None:
    engine, second = held
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        shown = client.get(f"/api/instances/{second}").json()
        assert [(h["name"], h["state"], h["reason"]) for h in shown["held"]] == [
            ("flow.work", "work", REASON)
        ]
        page = client.get(f"/instances/{second}")
        assert page.status_code == 200
        assert 'id="held"' in page.text
        assert REASON in page.text


def test_turnout_show_names_the_held_task_and_its_reason(
    held: tuple[Engine, str], sqlite_url: str
) -> None:
    engine, second = held
    if not engine.store.sqlite:
        pytest.skip("the command reads the test's SQLite file")
    shown = run_turnout("show", second, database=sqlite_url)
    assert shown.returncode == 0, shown.stderr
    assert f"held: task flow.work in work: {REASON}" in shown.stdout
    as_json = json.loads(run_turnout("show", second, "--json", database=sqlite_url).stdout)
    assert as_json["held"][0]["reason"] == REASON


def test_turnout_worker_refuses_a_limits_file_it_cannot_read(
    sqlite_url: str, tmp_path: Path
) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text('[tasks."flow.work"]\nconcurrency = 0\n')
    ran = run_turnout("worker", "--limits", str(limits), database=sqlite_url)
    assert ran.returncode != 0
    assert "concurrency must be 1 or more" in ran.stderr + ran.stdout
    assert "Traceback" not in ran.stderr
