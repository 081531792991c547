"""OpenTelemetry tracing: one trace per instance, a span for each committed step, each
transition it took and each task attempt a worker runs (a part of `Engine`).

One trace per instance without storing anything: the trace id is the instance id (32 hex
digits, a UUIDv7: a valid 128-bit trace id) and every span of the instance descends from the
same remote parent, `root_of(instance_id)`, whose span id is derived from the instance id
too. So spans made by any process at any time (the start, an event over HTTP, a worker on
another machine) land in the one trace. That root span itself is never exported: it is the
trace's name, not a piece of work. A span the caller of a step is inside (an HTTP request the
application traces, say) belongs to another trace: the step's span is linked to it.

OpenTelemetry is optional (the `tracing` extra): nothing here imports it until tracing is
turned on, and with tracing off the engine's only cost is a check that `tracing` is None.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from statemachines import Status
from statemachines.errors import UsageError

from .records import ClaimedTask
from .rows import Written

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

    from .persist import Applied

TRACER_NAME = "turnout"
log = logging.getLogger("turnout.engine")
EXTRA = "pip install 'turnout[tracing]'"
EXPORTER_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
TRACES_PATH = "/v1/traces"
HEX_ID_LENGTH = 32
LOW_64_BITS = (1 << 64) - 1
# Entry kinds whose step answers a task (its result, a failed attempt retried, a late one).
RESULT_KINDS = {"task": "result", "retry": "result"}


# -- ids: plain arithmetic, no OpenTelemetry needed --------------------------------------------
def trace_id_of(instance_id: str) -> int:
    """The trace id of an instance: its id read as a 128-bit number (an id that is not 32
    hex digits, or is zero, hashed into one)."""
    if len(instance_id) == HEX_ID_LENGTH:
        try:
            number = int(instance_id, 16)
        except ValueError:
            number = 0
        if number:
            return number
    return int.from_bytes(hashlib.sha256(instance_id.encode()).digest()[:16], "big") or 1


def root_span_id_of(instance_id: str) -> int:
    """The span id every span of an instance descends from: the low 64 bits of its trace
    id (never zero, which no span id may be)."""
    return (trace_id_of(instance_id) & LOW_64_BITS) or 1


def traceparent_of(instance_id: str) -> str:
    """The W3C `traceparent` of an instance's root: the parent a remote worker gives the
    span of its work on a task, so that the work joins the instance's trace."""
    return f"00-{trace_id_of(instance_id):032x}-{root_span_id_of(instance_id):016x}-01"


def traceparent_of_span(span: Span) -> str:
    """The W3C `traceparent` naming `span` as the parent."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


# -- turning it on -----------------------------------------------------------------------------
def configured_provider() -> TracerProvider | None:
    """The global tracer provider if the application has set one, else None.

    OpenTelemetry is not imported for this: an application that has set a provider has
    imported it already.
    """
    module = sys.modules.get("opentelemetry.trace")
    if module is None:
        return None
    provider: TracerProvider = module.get_tracer_provider()
    if isinstance(provider, (module.ProxyTracerProvider, module.NoOpTracerProvider)):
        return None
    return provider


def tracing_for(provider: TracerProvider | None) -> Tracing | None:
    """The tracing of an engine given `provider` (None: the global one, if one is set)."""
    provider = provider if provider is not None else configured_provider()
    return None if provider is None else Tracing(provider)


class Traced:
    """Turning tracing on and off (a part of `Engine`)."""

    if TYPE_CHECKING:  # set by `Engine.__init__`: None while tracing is off
        tracing: Tracing | None

    def trace(self, provider: TracerProvider | None = None, *, enabled: bool = True) -> None:
        """Trace this engine's instances with `provider` (an OpenTelemetry `TracerProvider`;
        None: the global one), or, with `enabled=False`, stop tracing them.

        An engine made after the application set its global provider traces already;
        this is for one made before, or for a provider of its own. UsageError when
        OpenTelemetry is not installed or no provider is set.
        """
        if not enabled:
            self.tracing = None
            return
        if provider is None:
            try:
                from opentelemetry import trace
            except ImportError:
                raise UsageError(f"tracing needs OpenTelemetry: {EXTRA}") from None
            provider = trace.get_tracer_provider()
            if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
                raise UsageError(
                    "no OpenTelemetry tracer provider is set: pass one, or set the global "
                    "one first (opentelemetry.trace.set_tracer_provider)"
                )
        self.tracing = Tracing(provider)


# -- the spans ---------------------------------------------------------------------------------
class Tracing:
    """Makes an engine's spans with the tracer of one provider."""

    def __init__(self, provider: TracerProvider) -> None:
        self.tracer: Tracer = provider.get_tracer(TRACER_NAME)
        # Per thread: when its current transaction began, and the list of steps that
        # transaction wrote that was traced last (the Applied of one transaction share it).
        self.local = threading.local()

    def began(self) -> None:
        """A transaction begins in this thread: its steps' spans start now."""
        self.local.began = time.time_ns()

    def root(self, instance_id: str) -> SpanContext:
        """The span context every span of the instance descends from (see the module)."""
        from opentelemetry import trace

        return trace.SpanContext(
            trace_id_of(instance_id),
            root_span_id_of(instance_id),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )

    def parent(self, instance_id: str) -> tuple[Context, list[Any]]:
        """Where a span of the instance goes: under the current span when that is in the
        instance's trace (a worker's task span, a remote worker's), else under the root,
        linked to the current span if there is one (the caller's own trace)."""
        from opentelemetry import trace

        current = trace.get_current_span().get_span_context()
        trace_id = trace_id_of(instance_id)
        if current.is_valid and current.trace_id == trace_id:
            return trace.set_span_in_context(trace.NonRecordingSpan(current)), []
        root = trace.set_span_in_context(trace.NonRecordingSpan(self.root(instance_id)))
        return root, [trace.Link(current)] if current.is_valid else []

    def published(self, applied: Applied) -> None:
        """Spans for every step the committed transaction of `applied` wrote, once."""
        written = applied.written
        local = self.local
        if not written or getattr(local, "traced", None) is written:
            return
        local.traced = written
        began = getattr(local, "began", None) or time.time_ns()
        try:
            for step in written:
                if step.entries:
                    self.step(step, began)
        except Exception:  # the steps have committed: a tracing failure must not fail the caller
            log.exception("the spans of a committed step could not be made")

    def step(self, step: Written, began: int) -> None:
        """The span of one committed step, its transitions as child spans."""
        from opentelemetry import trace

        row = step.after
        context, links = self.parent(row.id)
        if step.before is None and row.parent_id is not None:
            links.append(trace.Link(self.root(row.parent_id), {"turnout.link": "parent"}))
        name, attributes = described(step)
        span = self.tracer.start_span(
            name, context, links=links, attributes=attributes, start_time=began
        )
        ended = time.time_ns()
        inside = trace.set_span_in_context(span)
        for entry in step.entries:
            if entry.kind == "error":
                error = entry.data if isinstance(entry.data, dict) else {"message": entry.data}
                span.add_event(
                    "turnout.error",
                    {
                        "turnout.error.type": str(error.get("type") or "Error"),
                        "turnout.error.message": str(error.get("message", "")),
                        "turnout.history.seq": entry.seq,
                    },
                    ended,
                )
            if entry.from_state is None or entry.to_state is None:
                continue
            transition = self.tracer.start_span(
                f"turnout.transition {entry.from_state} -> {entry.to_state}",
                inside,
                attributes={
                    "turnout.instance.id": row.id,
                    "turnout.state.from": entry.from_state,
                    "turnout.state.to": entry.to_state,
                    "turnout.trigger": entry.event or "",
                    "turnout.history.kind": entry.kind,
                    "turnout.history.seq": entry.seq,
                },
                start_time=ended,
            )
            transition.end(ended)
        was_failed = step.before is not None and step.before.status == Status.FAILED
        if row.status == Status.FAILED and not was_failed:
            ended_with = row.machine.get("error") if isinstance(row.machine, dict) else None
            kind = ended_with.get("type") if isinstance(ended_with, dict) else None
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"failed: {kind or 'Error'}"))
        span.end(ended)

    @contextlib.contextmanager
    def attempt(self, task: ClaimedTask, worker: str) -> Iterator[Attempt]:
        """The span of one attempt of a task, current while its handler runs and its answer
        is applied (so the answer's step is its child, and so is any span the handler
        makes); ended on leaving."""
        from opentelemetry import trace

        context, links = self.parent(task.instance_id)
        span = self.tracer.start_span(
            f"turnout.task {task.name}",
            context,
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "turnout.instance.id": task.instance_id,
                "turnout.task.id": task.id,
                "turnout.task.name": task.name,
                "turnout.task.attempt": task.attempt,
                "turnout.task.max_attempts": task.max_attempts,
                "turnout.state": task.state,
                "turnout.worker": worker,
            },
        )
        with trace.use_span(span, end_on_exit=True):
            yield Attempt(span)


class Attempt:
    """What a worker tells the span of a task attempt: how the attempt ended."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.traceparent = traceparent_of_span(span)

    def failed(self, exc: BaseException, error_type: str) -> None:
        """The handler raised `exc`: the span records it and ends in error."""
        self.span.set_attribute("turnout.task.outcome", "failed")
        self.span.record_exception(exc)
        from opentelemetry import trace

        self.span.set_status(trace.Status(trace.StatusCode.ERROR, error_type))

    def ended(self, outcome: str) -> None:
        """The result was answered: "done" (applied), "stale" (recorded as late: the lease
        was lost) or "not held" (refused: another attempt has the task)."""
        self.span.set_attribute("turnout.task.outcome", outcome)


def described(step: Written) -> tuple[str, dict[str, Any]]:
    """The name and attributes of the span of a committed step: named after what caused it
    (the first of its entries that is not an error)."""
    row = step.after
    attributes: dict[str, Any] = {
        "turnout.instance.id": row.id,
        "turnout.definition": row.definition,
        "turnout.version": row.version,
        "turnout.state": str(row.state),
        "turnout.status": str(row.status),
        "turnout.revision": row.revision,
        "turnout.history.seq": step.entries[0].seq,
        "turnout.history.entries": len(step.entries),
    }
    if step.before is None:
        if row.key is not None:
            attributes["turnout.instance.key"] = row.key
        if row.parent_id is not None:
            attributes["turnout.instance.parent"] = row.parent_id
        return f"turnout.instance {row.definition}", attributes
    cause = next((entry for entry in step.entries if entry.kind != "error"), step.entries[0])
    attributes["turnout.history.kind"] = cause.kind
    if cause.kind == "event":
        attributes["turnout.event"] = cause.event or ""
        return f"turnout.event {cause.event}", attributes
    if cause.kind == "timer":
        attributes["turnout.timer"] = cause.event or ""
        return f"turnout.timer {cause.event}", attributes
    what = RESULT_KINDS.get(cause.kind, cause.kind)
    if cause.event is not None:
        attributes["turnout.trigger"] = cause.event
    return (f"turnout.{what} {cause.from_state}" if cause.from_state else f"turnout.{what}"), (
        attributes
    )


# -- the HTTP worker API -----------------------------------------------------------------------
@contextlib.contextmanager
def remote_parent(tracing: Tracing | None, traceparent: str | None) -> Iterator[None]:
    """While a request's engine call runs, the span its `traceparent` header names (a remote
    worker's, say) is the current one, unless the request is traced already in that trace.
    Nothing when tracing is off or the header is missing or malformed."""
    if tracing is None or not traceparent:
        yield
        return
    from opentelemetry import context as context_api
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    extracted = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    remote = trace.get_current_span(extracted).get_span_context()
    current = trace.get_current_span().get_span_context()
    if not remote.is_valid or (current.is_valid and current.trace_id == remote.trace_id):
        yield
        return
    token = context_api.attach(extracted)
    try:
        yield
    finally:
        context_api.detach(token)


# -- exporting with OTLP -----------------------------------------------------------------------
def otlp_endpoint(option: str | None) -> str | None:
    """Where `turnout serve` and `turnout worker` export spans: the `--otlp` option, else the
    standard OTLP environment (None: nowhere)."""
    if option:
        return option
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if os.environ.get(name):
            return ""  # the exporter reads the environment itself
    return None


def otlp_provider(endpoint: str) -> sdk_trace.TracerProvider:
    """A tracer provider exporting in batches to the OTLP/HTTP
    collector at `endpoint` (its base URL, as OTEL_EXPORTER_OTLP_ENDPOINT gives it; "": as
    the environment says). UsageError naming the extra when the exporter is not installed.
    The service is named by OTEL_SERVICE_NAME, else "turnout"."""
    try:
        exporters = importlib.import_module(EXPORTER_MODULE)
    except ImportError:
        raise UsageError(f"exporting traces with OTLP needs the tracing extra: {EXTRA}") from None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "turnout"}
    provider = SdkTracerProvider(resource=Resource.create(named))
    if endpoint:
        url = endpoint.rstrip("/")
        exporter = exporters.OTLPSpanExporter(
            endpoint=url if url.endswith(TRACES_PATH) else url + TRACES_PATH
        )
    else:
        exporter = exporters.OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
