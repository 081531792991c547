"""Hostile and malformed HTTP bodies against a real `turnout serve`: only documented errors.

Every answer to a bad body is a 4xx with `{error, message}`; none is a 500, and the server
stays up for the next request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from turnout_processes import definition_text, unique

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = tuple(
    "definition data key event idempotency_key reason tasks worker lease limit result error "
    "type".split()
)
BODIES = JSON | st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5)
DOCUMENTED = {200, 201, 401, 403, 404, 409, 413, 422}
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_documented(answer: httpx.Response) -> None:
    assert answer.status_code in DOCUMENTED, (answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        body = answer.json()
        assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str)


def _chunks(total: int, size: int = 65536) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


def test_a_streamed_body_over_the_limit_is_refused_with_413(api: httpx.Client) -> None:
    answer = api.post(
        "/api/definitions", content=_chunks(3_000_000), headers={"content-type": "application/yaml"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"] == "PayloadTooLarge"
    assert api.get("/healthz").status_code == 200


def test_a_streamed_body_under_the_limit_is_read_whole(api: httpx.Client) -> None:
    text = definition_text("door.yaml", unique("streamed")).encode()
    answer = api.post(
        "/api/definitions",
        content=iter([text[:10], text[10:]]),
        headers={"content-type": "application/yaml"},
    )
    assert answer.status_code == 201, answer.text


@FUZZ
@given(body=BODIES)
def test_any_json_body_on_any_route_gets_a_documented_answer(
    api: httpx.Client, door: str, body: Any
) -> None:
    instance = api.post("/api/instances", json={"definition": door}).json()["id"]
    for route in (
        "/api/instances",
        f"/api/instances/{instance}/events",
        f"/api/instances/{instance}/cancel",
        "/api/tasks/claim",
        "/api/tasks/nope/complete",
        "/api/tasks/nope/fail",
        "/api/tasks/nope/heartbeat",
    ):
        assert_documented(api.post(route, json=body))


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_bytes_that_are_not_json_or_yaml_get_a_documented_answer(
    api: httpx.Client, door: str, raw: bytes
) -> None:
    for route in ("/api/instances", "/api/definitions", "/api/tasks/claim"):
        assert_documented(
            api.post(route, content=raw, headers={"content-type": "application/json"})
        )


def test_a_server_without_token_answers_only_to_loopback_names(api: httpx.Client) -> None:
    # A page that points its own domain at 127.0.0.1 (DNS rebinding) sends its own name.
    rebound = api.get("/api/definitions", headers={"host": "attacker.example"})
    assert rebound.status_code == 421
    assert rebound.json()["error"] == "UnknownHost"
    assert api.get("/api/definitions", headers={"host": "localhost"}).status_code == 200
    assert api.get("/healthz").status_code == 200


def test_no_cross_origin_access_is_granted(api: httpx.Client) -> None:
    origin = {"origin": "https://elsewhere.example"}
    preflight = api.options(
        "/api/instances", headers={**origin, "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in api.get("/api/definitions", headers=origin).headers


def test_a_page_over_five_hundred_is_refused_with_422(api: httpx.Client) -> None:
    answer = api.get("/api/instances", params={"limit": 501})
    assert answer.status_code == 422
    assert answer.json()["error"] == "InvalidInput"
    assert api.get("/api/instances", params={"limit": 500}).status_code == 200


def test_a_cursor_or_page_past_any_real_offset_is_refused_with_422(api: httpx.Client) -> None:
    """Offsets past ten million (and past what a database integer holds) are refused by
    name on the API's cursor, and so is a forged position in the dashboard's, not turned
    into a 500."""
    for offset in (10**30, 10_000_001):
        cursor = base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")
        answer = api.get("/api/instances", params={"cursor": cursor})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "InvalidInput"
    # The dashboard's cursors hold a position; one forged past what a column holds is refused.
    for position in (["revision", 10**30, "x", "after"], ["key", "\x00", "x", "after"]):
        forged = base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")
        sort = str(position[0])
        page = api.get("/instances", params={"cursor": forged, "sort": sort})
        assert page.status_code == 422, page.text
        assert "Invalid input" in page.text and "cursor" in page.text
    for moment in ("0001-01-01T00:00+01:00", "soon", "9999-12-31T23:59:59-14:00"):
        assert api.get("/instances", params={"since": moment}).status_code == 422
    assert api.get("/instances", params={"sort": "revision"}).status_code == 200
