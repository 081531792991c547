"""The two calls most HTTP API tests make: start an instance (asserting 201), send an event."""

from __future__ import annotations

from typing import Any

import httpx


def start(api: httpx.Client, definition: str, data: Any = None, key: str | None = None) -> Any:
    answer = api.post(
        "/api/instances", json={"definition": definition, "data": data or {}, "key": key}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def send(api: httpx.Client, instance_id: str, event: str, **body: Any) -> httpx.Response:
    return api.post(f"/api/instances/{instance_id}/events", json={"event": event, **body})
