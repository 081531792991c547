"""Schedules over HTTP, in-process (`TestClient`) on SQLite and PostgreSQL: add, list, read,
pause, resume and delete; 422, 404 and 409 for mistakes, never a 500; the dashboard's
schedules page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.api.app import create_app

COUNTER = Path(__file__).parent / "definitions" / "counter.yaml"


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    engine = Engine(store_url)
    try:
        engine.deploy(COUNTER)
        with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        engine.close()


def test_add_list_read_pause_resume_and_delete(client: TestClient) -> None:
    body = {
        "name": "morning",
        "definition": "surface_counter",
        "cron": "0 7 * * *",
        "timezone": "Asia/Tokyo",
        "data": {"count": 2},
        "overlap": "buffer_one",
        "catch_up": "none",
    }
    added = client.post("/api/schedules", json=body)
    assert added.status_code == 201, added.text
    assert added.json()["next_run_local"].endswith("T07:00:00+09:00")
    assert added.json()["overlap"] == "buffer_one"
    every = {"name": "often", "definition": "surface_counter", "every": "90s"}
    assert client.post("/api/schedules", json=every).json()["expression"] == "every 1m30s"
    assert [s["name"] for s in client.get("/api/schedules").json()] == ["morning", "often"]
    assert client.get("/api/schedules/often").json()["every_seconds"] == 90
    assert client.post("/api/schedules/often/pause").json()["paused"] is True
    assert client.post("/api/schedules/often/resume").json()["paused"] is False
    assert client.delete("/api/schedules/often").status_code == 204
    assert client.get("/api/schedules/often").status_code == 404
    page = client.get("/schedules")
    assert page.status_code == 200
    assert "morning" in page.text and "Asia/Tokyo" in page.text and "07:00:00 JST" in page.text
    assert 'href="/schedules"' in client.get("/instances").text


def test_mistakes_are_4xx_with_a_plain_message(client: TestClient) -> None:
    base = {"name": "bad", "definition": "surface_counter"}
    for mistake, message in (
        ({"cron": "61 * * * *"}, "not a cron expression"),
        ({"every": "1h", "timezone": "Mars/Olympus"}, "not a known time zone"),
        ({"every": "soon"}, "not an interval"),
        ({}, "either a cron expression or an interval"),
        ({"every": 60, "overlap": "queue"}, "overlap must be one of"),
        ({"every": 60, "data": [1]}, ""),
    ):
        answer = client.post("/api/schedules", json=base | mistake)
        assert answer.status_code in (400, 422), (mistake, answer.text)
        assert message in answer.text
    unknown = client.post("/api/schedules", json=base | {"definition": "nowhere", "every": 60})
    assert unknown.status_code == 404
    assert client.post("/api/schedules", json=base | {"every": 60}).status_code == 201
    taken = client.post("/api/schedules", json=base | {"every": 120})
    assert taken.status_code == 409 and taken.json()["error"] == "ScheduleExists"
    for path in ("/api/schedules/none", "/api/schedules/none/pause", "/api/schedules/none/resume"):
        call = client.get if path.count("/") == 3 else client.post
        assert call(path).status_code == 404, path
    assert client.delete("/api/schedules/none").status_code == 404


VALUES = (
    st.sampled_from(
        [
            "0 7 * * *",
            "*/5 * * * * *",
            "0 0 30 2 *",
            "10m",
            "1w",
            "Europe/Paris",
            "9999-12-31T23:59:59Z",
            "2026-01-01T00:00:00",
            "surface_counter",
            "skip",
            "buffer_one",
            "all",
            "\x00",
            "x" * 300,
        ]
    )
    | st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
)
FIELDS = st.sampled_from(
    ["name", "definition", "version", "cron", "every", "timezone", "data", "overlap"]
    + ["catch_up", "start_at"]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.dictionaries(FIELDS, VALUES, max_size=6), name=st.text(max_size=30))
def test_no_body_or_name_gets_a_500(client: TestClient, body: dict[str, Any], name: str) -> None:
    defaults = {"name": "fuzzed", "definition": "surface_counter", "every": 60}
    added = client.post("/api/schedules", json=defaults | body)
    assert added.status_code < 500, added.text
    if added.status_code == 201:
        assert client.delete(f"/api/schedules/{added.json()['name']}").status_code == 204
    path = f"/api/schedules/{quote(name, safe='')}"
    for answer in (client.get(path), client.post(f"{path}/pause"), client.delete(path)):
        assert answer.status_code < 500, answer.text
