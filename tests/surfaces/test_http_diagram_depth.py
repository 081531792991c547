"""`?depth=N` on the diagram routes: a nested definition, its heat map and an instance drawn
N levels deep; a depth that is no level answers 422 with a message, never a 500. The
application runs in-process (`TestClient`), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine import Engine
from engine.api.app import create_app

NESTED = Path(__file__).parents[1] / "engine" / "definitions" / "nested_order.yaml"


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    engine = Engine(store_url)
    try:
        engine.deploy(NESTED)
        with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        engine.close()


def test_the_diagram_routes_draw_to_the_depth_asked_for(client: TestClient) -> None:
    started = client.post("/api/instances", json={"definition": "nested_order", "data": {}})
    assert started.status_code == 201, started.text
    full = client.get("/api/definitions/nested_order/diagram.svg")
    assert (
        full.status_code == 200
        and "cluster state kind&#45;compound state&#45;shopping" in full.text
    )
    for path in (
        "/api/definitions/nested_order/diagram.svg?depth=0",
        "/api/definitions/nested_order/diagram.svg?depth=0&heat=1",
        f"/api/instances/{started.json()['id']}/diagram.svg?depth=0",
    ):
        answer = client.get(path)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("image/svg+xml")
        assert "kind&#45;compound collapsed state&#45;shopping" in answer.text
        assert "state&#45;shopping.browsing" not in answer.text
    instance = client.get(f"/api/instances/{started.json()['id']}/diagram.svg?depth=0").text
    assert "state&#45;shopping active" in instance.replace(" visited", "")
    heat = client.get("/api/definitions/nested_order/diagram.svg?depth=0&heat=1").text
    assert "1 instance here" in heat


@pytest.mark.parametrize("depth", ["-1", "two", "1.5", "1001"])
def test_a_depth_that_is_no_level_is_a_422_with_a_message(client: TestClient, depth: str) -> None:
    for path in ("/api/definitions/nested_order/diagram.svg", "/api/instances/x/diagram.svg"):
        answer = client.get(path, params={"depth": depth})
        assert answer.status_code == 422, answer.text
        assert "depth" in answer.json()["message"]
