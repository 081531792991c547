"""Starts that wait and instance deadlines through the `turnout` command and the HTTP API:
a scheduled instance is shown with its due time; a bad time or duration is the user's
mistake (exit status 2, HTTP 422), never a traceback or a 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from turnout_processes import DEFINITIONS, run_turnout, unique

DOOR = str(DEFINITIONS / "door.yaml")


def test_cli_start_with_a_delay_shows_a_scheduled_instance_and_its_due_time(
    sqlite_db: str,
) -> None:
    assert run_turnout("deploy", DOOR, database=sqlite_db).returncode == 0
    made = run_turnout(
        "start", "surface_door", "--delay", "10m", "--deadline", "2d", "--json", database=sqlite_db
    )
    assert made.returncode == 0, made.stderr
    instance = json.loads(made.stdout)
    assert instance["status"] == "scheduled" and instance["due_at"]
    shown = run_turnout("show", instance["id"], database=sqlite_db)
    assert "status: scheduled" in shown.stdout and "starts at:" in shown.stdout
    listed = run_turnout("list", "--status", "scheduled", "--json", database=sqlite_db)
    assert [row["id"] for row in json.loads(listed.stdout)] == [instance["id"]]
    at = run_turnout(
        "start", "surface_door", "--at", "2030-01-01T09:00:00Z", "--json", database=sqlite_db
    )
    assert json.loads(at.stdout)["due_at"].startswith("2030-01-01T09:00:00")


def test_cli_start_with_a_bad_time_or_duration_is_exit_2_without_a_traceback(
    sqlite_db: str, tmp_path: Path
) -> None:
    assert run_turnout("deploy", DOOR, database=sqlite_db).returncode == 0
    for extra in (
        ["--at", "tomorrow"],
        ["--at", "2030-01-01T09:00:00"],
        ["--delay", "soon"],
        ["--debounce", "30s"],  # no --key
        ["--key", "k", "--debounce", "30s", "--debounce-max", "10s"],  # shorter than the window
        ["--key", "k", "--debounce-max", "1h"],  # no --debounce
        ["--delay", "1m", "--at", "2030-01-01T09:00:00Z"],
    ):
        result = run_turnout("start", "surface_door", *extra, database=sqlite_db)
        assert result.returncode == 2, (extra, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
    listed = run_turnout("list", "--json", database=sqlite_db)
    assert json.loads(listed.stdout) == []


def test_http_start_with_a_delay_and_debounce_is_one_scheduled_instance(
    api: httpx.Client, door: str
) -> None:
    key = unique("customer")
    body: dict[str, Any] = {"definition": door, "key": key, "debounce": "1h"}
    first = api.post("/api/instances", json={**body, "data": {"n": 1}})
    assert first.status_code == 201, first.text
    second = api.post("/api/instances", json={**body, "data": {"n": 2}})
    assert second.status_code == 201, second.text
    assert first.json()["id"] == second.json()["id"]
    shown = api.get(f"/api/instances/{first.json()['id']}").json()
    assert (shown["status"], shown["context"], shown["allowed"]) == ("scheduled", {"n": 2}, [])
    assert shown["due_at"] is not None
    bounded = {"definition": door, "key": unique("customer"), "debounce": 60, "debounce_max": 90}
    due = [api.post("/api/instances", json=bounded).json()["due_at"] for _ in range(2)]
    assert due[0] is not None and due[1] is not None and due[1] >= due[0]
    delayed = api.post("/api/instances", json={"definition": door, "delay": 90, "deadline": "2d"})
    assert delayed.status_code == 201 and delayed.json()["status"] == "scheduled"
    page = api.get(f"/instances/{delayed.json()['id']}")
    assert page.status_code == 200
    assert 'id="due-at"' in page.text and 'id="cancel-form"' in page.text
    assert 'id="reset"' not in page.text  # a start that has not fired is cancelled, not moved


def test_http_start_with_a_bad_time_is_422(api: httpx.Client, door: str) -> None:
    for extra in (
        {"at": "noon"},
        {"delay": -1},
        {"debounce": "5m"},
        {"deadline": "forever"},
        {"key": "k", "debounce": "5m", "debounce_max": "1m"},
    ):
        answer = api.post("/api/instances", json={"definition": door, **extra})
        assert answer.status_code == 422, (extra, answer.text)
        assert answer.json()["error"] == "InvalidInput"
