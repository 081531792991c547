"""Event data the engine cannot store is a 422 over HTTP that changes nothing, and whatever it
does store reads back: the application in-process (`TestClient`), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine import Engine
from engine.api.app import create_app

DOOR = Path(__file__).parent / "definitions" / "door.yaml"


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    """The HTTP API over an Engine on an empty database with the door deployed."""
    engine = Engine(store_url)
    try:
        engine.deploy(DOOR)
        with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        engine.close()


def _nested(levels: int) -> str:
    return "{" + '"a": {' * (levels - 1) + "}" * levels


def _start(client: TestClient) -> str:
    answer = client.post("/api/instances", json={"definition": "surface_door", "data": {}})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _send(client: TestClient, instance_id: str, data_json: str) -> Any:
    body = '{"event": "open", "data": ' + data_json + "}"
    return client.post(
        f"/api/instances/{instance_id}/events",
        content=body,
        headers={"content-type": "application/json"},
    )


def test_event_data_900_levels_deep_is_422_applies_nothing_and_the_instance_still_reads(
    client: TestClient,
) -> None:
    instance_id = _start(client)
    refused = _send(client, instance_id, _nested(900))
    assert refused.status_code == 422
    assert refused.json()["error"] == "ValueNotStorable"
    assert "nested deeper than 64 levels" in refused.json()["message"]
    read = client.get(f"/api/instances/{instance_id}")
    assert read.status_code == 200
    assert (read.json()["state"], read.json()["context"]) == ("closed", {})
    history = client.get(f"/api/instances/{instance_id}/history")
    assert history.status_code == 200
    assert [entry["kind"] for entry in history.json()] == ["start"]


def test_event_data_64_levels_deep_is_applied_and_reads_back_in_the_history(
    client: TestClient,
) -> None:
    instance_id = _start(client)
    applied = _send(client, instance_id, _nested(64))
    assert applied.status_code == 200, applied.text
    assert applied.json()["state"] == "opened"
    assert client.get(f"/api/instances/{instance_id}").status_code == 200
    history = client.get(f"/api/instances/{instance_id}/history")
    assert history.status_code == 200
    data = history.json()[-1]["data"]
    for _ in range(63):
        data = data["a"]
    assert data == {}


@pytest.mark.parametrize("data_json", ["NaN", '{"ratio": Infinity}', "[1, -Infinity]"])
def test_event_data_with_nan_or_infinity_is_422_and_applies_nothing(
    client: TestClient, data_json: str
) -> None:
    instance_id = _start(client)
    refused = _send(client, instance_id, data_json)
    assert refused.status_code == 422
    assert "JSON holds finite numbers only" in refused.json()["message"]
    assert client.get(f"/api/instances/{instance_id}").json()["state"] == "closed"
