"""Tracing across the HTTP worker API: a claimed task carries the `traceparent` a remote
worker parents its work under, and the worker's answer, sent with its own span's
`traceparent`, is recorded under that span; all of it in the instance's one trace. On SQLite
and PostgreSQL, through FastAPI's TestClient.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from engine import Engine
from engine.api import create_app
from engine.tracing import root_span_id_of, traceparent_of

DEFINITIONS = Path(__file__).parent / "definitions"
TASKS = ["traced.reserve", "traced.charge", "traced.ship"]
PROPAGATOR = TraceContextTextMapPropagator()


def memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture
def server_spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    return memory_provider()


@pytest.fixture
def api(
    store_url: str, clock: Any, server_spans: tuple[TracerProvider, InMemorySpanExporter]
) -> Iterator[TestClient]:
    """The HTTP API over a traced engine with traced_order deployed."""
    with Engine(store_url, clock=clock, tracer_provider=server_spans[0]) as engine:
        engine.deploy(DEFINITIONS / "traced_order.yaml")
        with TestClient(create_app(engine), base_url="http://127.0.0.1") as client:
            yield client


def named(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    (span,) = [span for span in spans if span.name == name]
    return span


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None
    return span.parent.span_id


def test_a_remote_workers_spans_and_answers_join_the_instances_trace(
    api: TestClient, server_spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    remote, remote_spans = memory_provider()  # the worker's own process, elsewhere
    tracer = remote.get_tracer("a remote worker")
    started = api.post("/api/instances", json={"definition": "traced_order", "data": {}})
    instance_id = started.json()["id"]
    api.post(f"/api/instances/{instance_id}/events", json={"event": "submit"})
    for task in TASKS:
        (claimed,) = api.post(
            "/api/tasks/claim", json={"tasks": [task], "worker": "far-away"}
        ).json()
        assert claimed["traceparent"] == traceparent_of(instance_id)
        parent = PROPAGATOR.extract({"traceparent": claimed["traceparent"]})
        with tracer.start_as_current_span(f"work on {task}", context=parent):
            headers: dict[str, str] = {}
            PROPAGATOR.inject(headers)
            answered = api.post(
                f"/api/tasks/{claimed['id']}/complete",
                json={"worker": "far-away", "result": {task: True}},
                headers=headers,
            )
        assert answered.json() == {"applied": True}
    assert api.get(f"/api/instances/{instance_id}").json()["status"] == "succeeded"

    worked = remote_spans.get_finished_spans()
    recorded = server_spans[1].get_finished_spans()
    trace_id = int(instance_id, 16)
    assert {span.context.trace_id for span in (*worked, *recorded) if span.context} == {trace_id}
    for task, state in zip(TASKS, ["reserve", "charge", "ship"], strict=True):
        work = named(worked, f"work on {task}")
        assert parent_of(work) == root_span_id_of(instance_id)
        result = named(recorded, f"turnout.result {state}")
        assert work.context is not None and parent_of(result) == work.context.span_id
    assert named(recorded, "turnout.instance traced_order").links == ()


def test_a_failure_over_http_is_recorded_under_the_remote_span(
    api: TestClient, server_spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    remote, _ = memory_provider()
    instance_id = api.post("/api/instances", json={"definition": "traced_order"}).json()["id"]
    api.post(f"/api/instances/{instance_id}/events", json={"event": "submit"})
    (claimed,) = api.post(
        "/api/tasks/claim", json={"tasks": ["traced.reserve"], "worker": "far-away"}
    ).json()
    parent = PROPAGATOR.extract({"traceparent": claimed["traceparent"]})
    with remote.get_tracer("worker").start_as_current_span("work", context=parent) as work:
        headers: dict[str, str] = {}
        PROPAGATOR.inject(headers)
        failed = api.post(
            f"/api/tasks/{claimed['id']}/fail",
            json={"worker": "far-away", "error": "no stock", "type": "OutOfStock"},
            headers=headers,
        )
    assert failed.json() == {"applied": True}
    step = named(server_spans[1].get_finished_spans(), "turnout.result reserve")
    assert parent_of(step) == work.get_span_context().span_id
    assert step.status.status_code == StatusCode.ERROR  # nothing handles it: the instance failed
    assert step.status.description == "failed: OutOfStock"


def test_a_callers_traceparent_of_another_trace_is_a_link_and_a_bad_one_is_ignored(
    api: TestClient, server_spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    started = api.post(
        "/api/instances", json={"definition": "traced_order"}, headers={"traceparent": caller}
    )
    assert started.status_code == 201
    instance_id = started.json()["id"]
    sent = api.post(
        f"/api/instances/{instance_id}/events",
        json={"event": "submit"},
        headers={"traceparent": "not a trace context"},
    )
    assert sent.status_code == 200
    spans = server_spans[1].get_finished_spans()
    start = named(spans, "turnout.instance traced_order")
    assert start.context is not None and start.context.trace_id == int(instance_id, 16)
    [link] = start.links
    assert (link.context.trace_id, link.context.span_id) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
    )
    event = named(spans, "turnout.event submit")
    assert parent_of(event) == root_span_id_of(instance_id) and event.links == ()


def test_an_untraced_server_still_hands_out_traceparents(store_url: str, clock: Any) -> None:
    with Engine(store_url, clock=clock) as engine:
        engine.deploy(DEFINITIONS / "traced_order.yaml")
        with TestClient(create_app(engine), base_url="http://127.0.0.1") as api:
            instance_id = api.post("/api/instances", json={"definition": "traced_order"}).json()[
                "id"
            ]
            api.post(f"/api/instances/{instance_id}/events", json={"event": "submit"})
            (claimed,) = api.post(
                "/api/tasks/claim", json={"tasks": ["traced.reserve"], "worker": "w"}
            ).json()
            assert claimed["traceparent"] == traceparent_of(instance_id)
            done = api.post(
                f"/api/tasks/{claimed['id']}/complete",
                json={"worker": "w", "result": {}},
                headers={"traceparent": claimed["traceparent"]},
            )
            assert done.json() == {"applied": True}
