"""Diagrams over HTTP stay cheap: a definition too large to lay out answers a small SVG that says
so (never a 500 or a hang), and a heat map whose counts stand is laid out once. The application
runs in-process (`TestClient`), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from generated import tangled

import diagrams
from engine import Engine
from engine.api.app import create_app

DOOR = Path(__file__).parent / "definitions" / "door.yaml"


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """An Engine on an empty database with the door and 1,000 tangled states deployed."""
    engine = Engine(store_url)
    try:
        engine.deploy(DOOR)
        engine.deploy(tangled(1000))
        yield engine
    finally:
        engine.close()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
        yield test_client


def test_diagrams_of_a_definition_over_the_drawing_limit_answer_a_note_not_a_layout(
    client: TestClient,
) -> None:
    started = client.post("/api/instances", json={"definition": "tangled", "data": {}})
    assert started.status_code == 201, started.text
    before = diagrams.cache_info().misses
    for path in (
        "/api/definitions/tangled/diagram.svg",
        "/api/definitions/tangled/diagram.svg?heat=1",
        f"/api/instances/{started.json()['id']}/diagram.svg",
    ):
        answer = client.get(path)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("image/svg+xml")
        assert "1,001 states and 4,000 transitions" in answer.text and "1,500" in answer.text
    page = client.get("/definitions/tangled")
    assert page.status_code == 200 and "over the limit of 1,500" in page.text
    assert diagrams.cache_info().misses == before


def test_a_heat_map_whose_counts_stand_is_laid_out_once(client: TestClient) -> None:
    started = client.post("/api/instances", json={"definition": "surface_door", "data": {}})
    assert started.status_code == 201, started.text
    before = diagrams.cache_info()
    first = client.get("/api/definitions/surface_door/diagram.svg?heat=1")
    again = client.get("/api/definitions/surface_door/diagram.svg?heat=1")
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    after = diagrams.cache_info()
    assert after.misses <= before.misses + 1 and after.hits >= before.hits + 1
