"""OpenTelemetry tracing: an instance is one trace (its id is the trace id) holding a span
for each committed step, each transition and each task attempt, with the spans a handler
makes inside its attempt's span; on SQLite and PostgreSQL, with the SDK's in-memory exporter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from engine import AsyncEngine, Engine, TaskContext, UsageError
from engine.tracing import root_span_id_of, trace_id_of, traceparent_of
from engine.worker import Worker

DEFINITIONS = Path(__file__).parent / "definitions"
TASKS = ("traced.reserve", "traced.charge", "traced.ship")


class Traces:
    """A tracer provider whose spans are kept in memory, and ways to look at them."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span


def parent_id(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_ids(spans: list[ReadableSpan]) -> set[int]:
    return {span.context.trace_id for span in spans if span.context is not None}


@pytest.fixture
def traces() -> Traces:
    return Traces()


@pytest.fixture
def traced(store_url: str, clock: Any, traces: Traces) -> Iterator[Engine]:
    """An engine on an empty database tracing into `traces`, with traced_order deployed."""
    with Engine(store_url, clock=clock, tracer_provider=traces.provider) as engine:
        engine.deploy(DEFINITIONS / "traced_order.yaml")
        yield engine


def register(engine: Engine | AsyncEngine, charge: Callable[..., Any] | None = None) -> None:
    engine.task("traced.reserve")(lambda order: {"reserved": True})
    engine.task("traced.charge")(charge or (lambda order: {"charged": True}))
    engine.task("traced.ship")(lambda order: {"shipped": True})


def test_a_three_task_instance_is_one_trace_of_the_documented_spans(
    traced: Engine, traces: Traces
) -> None:
    register(traced)
    instance = traced.start("traced_order", {"order": 7}, key="order-7")
    traced.send(instance.id, "submit")
    assert traced.run_until_idle() == 3
    assert traced.get(instance.id).status == "succeeded"

    spans = traces.spans
    assert trace_ids(spans) == {int(instance.id, 16)} == {trace_id_of(instance.id)}
    assert sorted(span.name for span in spans) == sorted(
        [
            "turnout.instance traced_order",
            "turnout.event submit",
            "turnout.transition waiting -> reserve",
            *[f"turnout.task {task}" for task in TASKS],
            "turnout.result reserve",
            "turnout.transition reserve -> charge",
            "turnout.result charge",
            "turnout.transition charge -> ship",
            "turnout.result ship",
            "turnout.transition ship -> shipped",
        ]
    )
    root = root_span_id_of(instance.id)
    started = traces.one("turnout.instance traced_order")
    assert parent_id(started) == root and started.parent is not None and started.parent.is_remote
    assert started.attributes == {
        "turnout.instance.id": instance.id,
        "turnout.instance.key": "order-7",
        "turnout.definition": "traced_order",
        "turnout.version": 1,
        "turnout.state": "waiting",
        "turnout.status": "running",
        "turnout.revision": 1,
        "turnout.history.seq": 1,
        "turnout.history.entries": 1,
    }
    event = traces.one("turnout.event submit")
    assert parent_id(event) == root
    assert event.attributes is not None and event.attributes["turnout.event"] == "submit"
    moved = traces.one("turnout.transition waiting -> reserve")
    assert parent_id(moved) == span_id(event)
    assert dict(moved.attributes or {}) == {
        "turnout.instance.id": instance.id,
        "turnout.state.from": "waiting",
        "turnout.state.to": "reserve",
        "turnout.trigger": "submit",
        "turnout.history.kind": "event",
        "turnout.history.seq": 2,
    }
    for name, state, following in [
        ("traced.reserve", "reserve", "charge"),
        ("traced.charge", "charge", "ship"),
        ("traced.ship", "ship", "shipped"),
    ]:
        attempt = traces.one(f"turnout.task {name}")
        assert parent_id(attempt) == root
        attributes = dict(attempt.attributes or {})
        assert attributes.pop("turnout.task.id")
        assert attributes == {
            "turnout.instance.id": instance.id,
            "turnout.task.name": name,
            "turnout.task.attempt": 1,
            "turnout.task.max_attempts": 2 if state == "charge" else 1,
            "turnout.state": state,
            "turnout.worker": traced.worker_id,
            "turnout.task.outcome": "done",
        }
        assert attempt.status.status_code == StatusCode.UNSET
        # The answer's step is applied inside the attempt's span, its transition inside it.
        result = traces.one(f"turnout.result {state}")
        assert parent_id(result) == span_id(attempt)
        assert result.attributes is not None and result.attributes["turnout.trigger"] == "done"
        transition = traces.one(f"turnout.transition {state} -> {following}")
        assert parent_id(transition) == span_id(result)
    last = traces.one("turnout.result ship").attributes
    assert last is not None and last["turnout.status"] == "succeeded"


def test_a_handlers_own_span_joins_the_trace_and_its_context_has_the_traceparent(
    traced: Engine, traces: Traces
) -> None:
    tracer = traces.provider.get_tracer("the application")
    seen: list[TaskContext] = []

    def charge(order: Any, context: TaskContext) -> Any:
        seen.append(context)
        with tracer.start_as_current_span("charge the card") as own:
            own.set_attribute("card", "visa")
        return {"charged": True}

    register(traced, charge)
    instance = traced.start("traced_order", {})
    traced.send(instance.id, "submit")
    traced.run_until_idle()
    own = traces.one("charge the card")
    attempt = traces.one("turnout.task traced.charge")
    assert own.context is not None and own.context.trace_id == int(instance.id, 16)
    assert parent_id(own) == span_id(attempt)
    (context,) = seen
    assert context.traceparent == f"00-{instance.id}-{span_id(attempt):016x}-01"


def test_a_failed_attempt_has_an_error_span_and_the_retry_joins_the_trace(
    traced: Engine, traces: Traces, clock: Any
) -> None:
    attempts: list[int] = []

    def charge(order: Any, context: TaskContext) -> Any:
        attempts.append(context.attempt)
        if context.attempt == 1:
            raise ConnectionError("the bank did not answer")
        return {"charged": True}

    register(traced, charge)
    instance = traced.start("traced_order", {})
    traced.send(instance.id, "submit")
    traced.run_until_idle()
    clock.advance(10)
    traced.run_until_idle()
    assert attempts == [1, 2] and traced.get(instance.id).status == "succeeded"
    assert trace_ids(traces.spans) == {int(instance.id, 16)}
    first, second = sorted(
        traces.named("turnout.task traced.charge"),
        key=lambda span: (span.attributes or {})["turnout.task.attempt"],
    )
    assert first.status.status_code == StatusCode.ERROR
    assert first.status.description == "ConnectionError"
    assert first.attributes is not None and first.attributes["turnout.task.outcome"] == "failed"
    (raised,) = [event for event in first.events if event.name == "exception"]
    assert raised.attributes is not None
    assert raised.attributes["exception.type"] == "ConnectionError"
    assert raised.attributes["exception.message"] == "the bank did not answer"
    # The failure recorded (a retry planned) is a step inside the failed attempt's span.
    retried, done = sorted(
        traces.named("turnout.result charge"),
        key=lambda span: (span.attributes or {})["turnout.history.seq"],
    )
    assert parent_id(retried) == span_id(first)
    assert retried.attributes is not None
    assert retried.attributes["turnout.history.kind"] == "retry"
    assert retried.attributes["turnout.trigger"] == "failed"
    assert second.status.status_code == StatusCode.UNSET
    assert second.attributes is not None and second.attributes["turnout.task.outcome"] == "done"
    assert parent_id(done) == span_id(second)


def test_an_instance_that_fails_ends_in_a_step_span_with_error_status(
    traced: Engine, traces: Traces, clock: Any
) -> None:
    def charge(order: Any) -> Any:
        raise ValueError("declined")

    register(traced, charge)
    instance = traced.start("traced_order", {})
    traced.send(instance.id, "submit")
    traced.run_until_idle()
    clock.advance(10)
    traced.run_until_idle()
    assert traced.get(instance.id).status == "failed"
    steps = sorted(
        traces.named("turnout.result charge"),
        key=lambda span: (span.attributes or {})["turnout.history.seq"],
    )
    assert [step.status.status_code for step in steps] == [StatusCode.UNSET, StatusCode.ERROR]
    assert steps[-1].status.description == "failed: ValueError"
    assert (steps[-1].attributes or {})["turnout.trigger"] == "failed"
    assert trace_ids(traces.spans) == {int(instance.id, 16)}


def test_a_timer_firing_is_a_span_of_the_instance(
    traced: Engine, traces: Traces, clock: Any
) -> None:
    instance = traced.start("traced_order", {})
    clock.advance(3600)
    assert traced.fire_due_timers() == 1
    fired = traces.one("turnout.timer after 1h")
    assert fired.context is not None and fired.context.trace_id == int(instance.id, 16)
    assert parent_id(fired) == root_span_id_of(instance.id)
    assert fired.attributes is not None and fired.attributes["turnout.timer"] == "after 1h"
    assert parent_id(traces.one("turnout.transition waiting -> reserve")) == span_id(fired)


def test_a_callers_span_is_linked_and_the_instance_keeps_its_own_trace(
    traced: Engine, traces: Traces
) -> None:
    tracer = traces.provider.get_tracer("the application")
    with tracer.start_as_current_span("POST /orders") as request:
        instance = traced.start("traced_order", {})
        traced.send(instance.id, "submit")
    caller = request.get_span_context()
    for name in ("turnout.instance traced_order", "turnout.event submit"):
        step = traces.one(name)
        assert step.context is not None and step.context.trace_id == int(instance.id, 16)
        assert parent_id(step) == root_span_id_of(instance.id)
        assert [link.context for link in step.links] == [caller]


def test_an_event_a_handler_sends_to_another_instance_is_linked_to_the_attempt(
    store_url: str, clock: Any, traces: Traces
) -> None:
    with Engine(store_url, clock=clock, tracer_provider=traces.provider) as engine:
        engine.deploy(DEFINITIONS / "traced_order.yaml")
        other = engine.start("traced_order", {})

        def reserve(order: Any) -> Any:
            engine.send(other.id, "submit")
            return {}

        engine.task("traced.reserve")(reserve)
        instance = engine.start("traced_order", {})
        engine.send(instance.id, "submit")
        [claimed] = engine.claim_tasks(["traced.reserve"], limit=5)
        assert claimed.instance_id == instance.id
        Worker(engine).run(claimed)
        attempt = traces.one("turnout.task traced.reserve")
        sent = [
            span
            for span in traces.named("turnout.event submit")
            if span.context is not None and span.context.trace_id == int(other.id, 16)
        ]
        assert len(sent) == 1
        assert parent_id(sent[0]) == root_span_id_of(other.id)
        assert [link.context for link in sent[0].links] == [attempt.context]


def test_the_async_worker_traces_async_and_def_handlers(
    store_url: str, clock: Any, traces: Traces
) -> None:
    tracer = traces.provider.get_tracer("the application")

    async def reserve(order: Any, context: TaskContext) -> Any:
        with tracer.start_as_current_span("async work"):
            await asyncio.sleep(0)
        return {"reserved": context.traceparent}

    def charge(order: Any) -> Any:
        with tracer.start_as_current_span("pooled work"):
            return {"charged": True}

    async def scenario() -> str:
        async with AsyncEngine(store_url, clock, tracer_provider=traces.provider) as engine:
            await engine.deploy(DEFINITIONS / "traced_order.yaml")
            register(engine)
            engine.task("traced.reserve")(reserve)
            engine.task("traced.charge")(charge)
            instance = await engine.start("traced_order", {})
            await engine.send(instance.id, "submit")
            assert await engine.run_until_idle() == 3
            assert (await engine.get(instance.id)).context["reserved"] == (
                f"00-{instance.id}-{span_id(traces.one('turnout.task traced.reserve')):016x}-01"
            )
            return instance.id

    instance_id = asyncio.run(scenario())
    assert trace_ids(traces.spans) == {int(instance_id, 16)}
    for own, task in [("async work", "traced.reserve"), ("pooled work", "traced.charge")]:
        assert parent_id(traces.one(own)) == span_id(traces.one(f"turnout.task {task}"))
    assert parent_id(traces.one("turnout.result charge")) == span_id(
        traces.one("turnout.task traced.charge")
    )


def test_without_a_provider_nothing_is_traced_and_everything_works(
    store_url: str, clock: Any, traces: Traces
) -> None:
    seen: list[TaskContext] = []

    def charge(order: Any, context: TaskContext) -> Any:
        seen.append(context)
        assert not trace.get_current_span().get_span_context().is_valid
        return {}

    with Engine(store_url, clock=clock) as engine:
        assert engine.tracing is None  # no global provider is set in the tests
        engine.deploy(DEFINITIONS / "traced_order.yaml")
        register(engine, charge)
        instance = engine.start("traced_order", {})
        engine.send(instance.id, "submit")
        assert engine.run_until_idle() == 3
        assert engine.get(instance.id).status == "succeeded"
        assert seen[0].traceparent is None
    assert traces.spans == []


def test_tracing_is_turned_on_and_off_on_a_running_engine(
    store_url: str, clock: Any, traces: Traces, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Engine(store_url, clock=clock) as engine:
        engine.deploy(DEFINITIONS / "traced_order.yaml")
        with pytest.raises(UsageError, match="no OpenTelemetry tracer provider is set"):
            engine.trace()
        engine.trace(traces.provider)
        first = engine.start("traced_order", {})
        engine.trace(enabled=False)
        engine.start("traced_order", {})
        assert trace_ids(traces.spans) == {int(first.id, 16)}
    # An engine made once the application has set its global provider traces with it.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", traces.provider)
    with Engine(store_url, clock=clock) as engine:
        assert engine.tracing is not None
        later = engine.start("traced_order", {})
    assert int(later.id, 16) in trace_ids(traces.spans)


def test_trace_ids_come_from_instance_ids() -> None:
    instance_id = "01a23d4377997d019412ca782624be84"
    assert trace_id_of(instance_id) == int(instance_id, 16)
    assert root_span_id_of(instance_id) == 0x9412CA782624BE84
    assert traceparent_of(instance_id) == f"00-{instance_id}-9412ca782624be84-01"
    # Not 32 hex digits, or zero: a hash, the same every time, never zero.
    for odd in ("order-1", "0" * 32, "z" * 32):
        assert trace_id_of(odd) == trace_id_of(odd) != 0
        assert 0 < root_span_id_of(odd) < 1 << 64
    assert root_span_id_of("0123456789abcdef" + "0" * 16) == 1


class FailingProcessor(SpanProcessor):
    """A span processor with a bug: every span it is handed at its end raises."""

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("the exporter is broken")


def test_a_broken_span_processor_does_not_fail_a_committed_step(
    store_url: str, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(FailingProcessor())
    with Engine(store_url, clock=clock, tracer_provider=provider) as engine:
        engine.deploy(DEFINITIONS / "traced_order.yaml")
        instance = engine.start("traced_order", {})
        assert engine.send(instance.id, "submit").state == "reserve"
        assert engine.get(instance.id).state == "reserve"
    assert "the spans of a committed step could not be made" in caplog.text
