"""The JSON routes of SPEC 6: definitions, instances, events, external task workers, health.

Route functions are plain `def`s: FastAPI runs them in its thread pool, where the engine's
synchronous transactions belong. Deploying reads its raw body asynchronously and hands the
deployment itself to that pool.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from statemachines.durations import format_duration
from statemachines.errors import DatabaseUnavailable, InvalidInput

from ..engine import MAX_LIST_OFFSET, Engine
from ..records import Instance
from ..tracing import remote_parent, traceparent_of
from .guards import DEFINITION_TYPES

router = APIRouter()
MAX_PAGE = 500
MAX_DEPTH = 1_000  # diagrams.nesting.MAX_DEPTH: levels of nesting a drawing is asked for
DepthQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_DEPTH,
        description="Levels of nesting drawn: a compound or parallel state inside this many "
        "others is one box (0: only the top-level states; absent: every level).",
    ),
]

AtQuery = Annotated[
    int | None,
    Query(
        ge=1,
        description="A history entry's seq: the instance as it stood once the transaction that "
        "wrote that entry had committed (absent: now).",
    ),
]

TraceparentHeader = Annotated[
    str | None,
    Header(
        description="W3C trace context of the caller's span (a remote worker's): when the "
        "server traces, the step's span is its child if it is in the instance's trace, "
        "else linked to it."
    ),
]


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


# -- models ------------------------------------------------------------------------------------
class InstanceOut(BaseModel):
    id: str
    key: str | None
    definition: str
    version: int
    state: str
    active: list[str]
    status: str
    context: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    revision: int
    allowed: list[str] | None = Field(None, description="Events the instance accepts now.")
    last_error: dict[str, Any] | None = Field(
        None, description="The newest error in its history: type, message, traceback, seq, at."
    )
    error: dict[str, Any] | None = Field(
        None,
        description="Once failed, the error it ended with: type, message, the state where it "
        "arose, the seq of the history entry that records it (and details, if any).",
    )
    parent: str | None = Field(None, description="The instance whose call state started it.")
    children: list[str] = Field(
        default_factory=list,
        description="The instances its call states started, oldest first (on one instance).",
    )
    due_at: datetime | None = Field(
        None, description="While scheduled (a start with a time or a debounce): when it starts."
    )
    held: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Its ready tasks a flow-control limit holds back now: task, name, state "
        "and reason (on one instance).",
    )


class InstancePage(BaseModel):
    items: list[InstanceOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class HistoryOut(BaseModel):
    seq: int
    at: datetime
    kind: str
    event: str | None
    from_state: str | None
    to_state: str | None
    data: Any


class ChangedValue(BaseModel):
    old: Any
    new: Any


class ContextChangesOut(BaseModel):
    added: dict[str, Any] = Field(description="Keys the point added, with their values.")
    removed: dict[str, Any] = Field(description="Keys it removed, with the values they had.")
    changed: dict[str, ChangedValue] = Field(description="Keys whose value it changed.")


class TimelinePointOut(BaseModel):
    first: int = Field(description="The seq of the first history entry this commit wrote.")
    last: int = Field(description="The seq of the last one: `?at=` any of them shows this point.")
    at: datetime
    revision: int
    version: int | None
    state: str
    active: list[str]
    status: str
    context: ContextChangesOut = Field(
        description="How the context differs from the point before (the first: from {})."
    )


class TimelineOut(BaseModel):
    instance: str
    entries: int = Field(description="How many history entries the instance has.")
    complete: bool = Field(description="False when replay stopped before the last entry.")
    divergence: dict[str, Any] | None = Field(
        None, description="Where and why replay stopped: seq, recorded, replayed, reason."
    )
    points: list[TimelinePointOut]


class DeploymentOut(BaseModel):
    name: str
    version: int
    digest: str
    created: bool


class DefinitionOut(BaseModel):
    name: str
    version: int
    description: str | None
    source: str
    states: list[str]
    events: list[str]
    tasks: list[str]
    counts: dict[str, int] = Field(description="Unfinished instances per state.")
    retention: str | None = Field(
        None, description="How long a finished instance is kept (30d); null: for ever."
    )


class DiffOut(BaseModel):
    """What changed from version `from` of a definition to version `to` (as
    `statemachines.DefinitionDiff.to_json` gives it) and where instances of `from` are."""

    model_config = ConfigDict(populate_by_name=True)
    name: str
    from_version: int = Field(alias="from")
    to_version: int = Field(alias="to")
    initial: list[str] | None = Field(description="The top level's initial state: [old, new].")
    retention: list[str | None] | None = Field(
        None, description="The definition's retention, when it changed: [old, new]."
    )
    states: dict[str, list[Any]] = Field(description="added, removed, changed (path, aspects).")
    transitions: dict[str, list[Any]] = Field(description="added, removed, changed.")
    counts: dict[str, int] = Field(
        description="Unfinished instances of version `from` in each of its states (each "
        "counted in its active states and the compound and parallel states around them)."
    )


class StartIn(BaseModel):
    definition: str
    data: dict[str, Any] = Field(default_factory=dict)
    key: str | None = Field(None, max_length=200)
    at: str | None = Field(
        None, max_length=64, description="Start at this time (ISO 8601 with a zone)."
    )
    delay: str | float | None = Field(
        None, description="Start after this long: seconds, or a duration such as '10m'."
    )
    debounce: str | float | None = Field(
        None,
        description="With a key: start once no start of the key has come for this long; a "
        "start of a key still scheduled replaces its data and restarts the wait.",
    )
    debounce_max: str | float | None = Field(
        None,
        description="With debounce: start no later than this long after the key's first "
        "start, however many starts follow.",
    )
    deadline: str | float | None = Field(
        None, description="Fail the instance with DeadlineExceeded past this long after it starts."
    )


class EventIn(BaseModel):
    event: str = Field(min_length=1, max_length=200)
    data: Any = None
    idempotency_key: str | None = Field(None, max_length=200)


class CancelIn(BaseModel):
    reason: str | None = Field(None, max_length=2000)


class ClaimIn(BaseModel):
    tasks: list[str] = Field(min_length=1, max_length=100)
    worker: str = Field(min_length=1, max_length=200)
    lease: float = Field(30.0, gt=0, le=3600, description="Seconds the claim lasts.")
    limit: int = Field(1, ge=1, le=100)


class ClaimedOut(BaseModel):
    id: str
    name: str
    input: Any
    attempt: int
    max_attempts: int
    instance_id: str
    state: str
    kind: str
    lease_until: datetime
    timeout: float | None
    activation: int
    item: int | None
    deadline: datetime | None
    idempotency_key: str
    traceparent: str = Field(
        description="W3C trace context to parent the work on this task under: the task's "
        "spans then join its instance's trace."
    )


class CompleteIn(BaseModel):
    worker: str = Field(min_length=1, max_length=200)
    result: Any = None


class FailIn(BaseModel):
    worker: str = Field(min_length=1, max_length=200)
    error: str = Field("task failed", max_length=10_000)
    type: str = Field("TaskError", max_length=200)


class HeartbeatIn(BaseModel):
    worker: str = Field(min_length=1, max_length=200)
    lease: float = Field(30.0, gt=0, le=3600)


class Outcome(BaseModel):
    applied: bool = Field(description="False when the answer was stale (the lease was lost).")


def instance_out(engine: Engine, instance: Instance, with_allowed: bool = True) -> InstanceOut:
    allowed = engine.allowed(instance) if with_allowed else None
    return InstanceOut(**instance.__dict__, allowed=allowed)


def _svg(data: bytes) -> Response:
    return Response(data, media_type="image/svg+xml")


# -- definitions -------------------------------------------------------------------------------
@router.get("/api/definitions", response_model=list[DeploymentOut], tags=["definitions"])
def list_definitions(request: Request) -> list[DeploymentOut]:
    """The latest version of every deployed definition."""
    return [DeploymentOut(**deployment.__dict__) for deployment in engine_of(request).definitions()]


@router.post(
    "/api/definitions",
    response_model=DeploymentOut,
    status_code=201,
    tags=["definitions"],
    openapi_extra={
        "requestBody": {
            "content": {kind: {"schema": {"type": "string"}} for kind in DEFINITION_TYPES},
            "required": True,
        }
    },
)
async def deploy_definition(request: Request) -> JSONResponse:
    """Deploy a definition sent as YAML (or JSON) text; the same content again is not a new
    version. A body of another type (text/plain, a form) is refused with 415."""
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the definition must be UTF-8 YAML text") from None
    deployment = await run_in_threadpool(engine_of(request).deploy, text)
    return JSONResponse(
        DeploymentOut(**deployment.__dict__).model_dump(),
        status_code=201 if deployment.created else 200,
    )


@router.get("/api/definitions/{name}", response_model=DefinitionOut, tags=["definitions"])
def read_definition(
    request: Request, name: str, version: Annotated[int | None, Query(ge=1)] = None
) -> DefinitionOut:
    """A deployed definition: its source, states, events, tasks and where instances are."""
    engine = engine_of(request)
    definition = engine.definition(name, version)
    found_version = version or next(
        deployment.version for deployment in engine.definitions() if deployment.name == name
    )
    return DefinitionOut(
        name=definition.name,
        version=found_version,
        description=definition.description,
        source=definition.source,
        states=[state.path for state in definition.walk()],
        events=definition.events,
        tasks=definition.tasks,
        counts=engine.state_counts(name),
        retention=None if definition.retention is None else format_duration(definition.retention),
    )


@router.get("/api/definitions/{name}/diagram.svg", tags=["definitions"], response_class=Response)
def definition_diagram(
    request: Request,
    name: str,
    heat: bool = False,
    depth: DepthQuery = None,
    version: Annotated[
        int | None, Query(ge=1, description="A version; default the latest.")
    ] = None,
) -> Response:
    """The definition's diagram; `?heat=1` colours states by how many instances are there,
    `?depth=N` draws N levels of nesting, `?version=N` draws that version.

    A definition too large to lay out answers a small SVG that says so and why."""
    engine = engine_of(request)
    if heat:
        return _svg(engine.heat_diagram(name, fallback=True, depth=depth))
    return _svg(engine.definition_diagram(name, version=version, fallback=True, depth=depth))


FromQuery = Annotated[int, Query(alias="from", ge=1, description="The older version.")]
ToQuery = Annotated[
    int | None, Query(alias="to", ge=1, description="The newer version; default the latest.")
]


@router.get("/api/definitions/{name}/diff", response_model=DiffOut, tags=["definitions"])
def definition_diff(
    request: Request, name: str, from_version: FromQuery, to_version: ToQuery = None
) -> DiffOut:
    """What changed from version `from` to version `to` (default the latest): states and
    transitions added, removed and changed, and where the unfinished instances of `from` are."""
    compared = engine_of(request).version_diff(name, from_version, to_version)
    return DiffOut.model_validate(compared.to_json())


@router.get("/api/definitions/{name}/diff.svg", tags=["definitions"], response_class=Response)
def definition_diff_diagram(
    request: Request, name: str, from_version: FromQuery, to_version: ToQuery = None
) -> Response:
    """Version `from` against version `to` (default the latest) as one picture: added states
    and transitions green, removed red and dashed, changed amber, with a legend and the
    instances of `from` on their states. Too large to lay out: a small SVG that says so."""
    engine = engine_of(request)
    return _svg(engine.diff_diagram(name, from_version, to_version, fallback=True))


# -- instances ---------------------------------------------------------------------------------
@router.post("/api/instances", response_model=InstanceOut, status_code=201, tags=["instances"])
def start_instance(
    request: Request, body: StartIn, traceparent: TraceparentHeader = None
) -> InstanceOut:
    """Start an instance of a definition with `data`; `key` is an optional business key."""
    engine = engine_of(request)
    with remote_parent(engine.tracing, traceparent):
        instance = engine.start(
            body.definition,
            body.data,
            key=body.key,
            at=body.at,
            delay=body.delay,
            debounce=body.debounce,
            deadline=body.deadline,
            debounce_max=body.debounce_max,
        )
    return instance_out(engine, instance)


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        value = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(f"cursor {cursor!r} is not one this server gave") from None
    if not 0 <= value <= MAX_LIST_OFFSET:
        raise InvalidInput(f"cursor {cursor!r} is not one this server gave")
    return value


WHERE_HELP = (
    'A JSON object of context paths to values or to operators: {"customer.tier": "gold", '
    '"total": {">=": 100, "<": 500}}; operators ==, !=, <, <=, >, >=, in, exists.'
)


def _where(text: str | None) -> dict[str, Any] | None:
    """The `where` query parameter's JSON object; InvalidInput for anything else."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidInput("where is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("where must be a JSON object of context paths")
    return value


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


@router.get("/api/instances", response_model=InstancePage, tags=["instances"])
def list_instances(
    request: Request,
    definition: str | None = None,
    state: str | None = None,
    status: str | None = None,
    key: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: str | None = None,
    parent: Annotated[str | None, Query(description="Only those this instance started.")] = None,
    where: Annotated[str | None, Query(description=WHERE_HELP)] = None,
) -> InstancePage:
    """Instances oldest first, filtered; follow `next_cursor` for the next page."""
    engine = engine_of(request)
    offset = _offset(cursor)
    filters = {"definition": definition, "state": state, "status": status, "key": key}
    context = _where(where)
    found = engine.instances(
        **filters, limit=limit + 1, offset=offset, parent=parent, where=context
    )
    more = len(found) > limit
    items = [instance_out(engine, instance, with_allowed=False) for instance in found[:limit]]
    return InstancePage(items=items, next_cursor=_cursor(offset + limit) if more else None)


@router.get("/api/instances/{instance_id}", response_model=InstanceOut, tags=["instances"])
def read_instance(request: Request, instance_id: str, at: AtQuery = None) -> InstanceOut:
    """One instance, with the events it accepts now; `?at=SEQ`, as it stood once the
    transaction that wrote history entry SEQ had committed (rebuilt from its history, without
    `allowed`); 409 when the history does not replay that far."""
    engine = engine_of(request)
    if at is not None:
        return instance_out(engine, engine.get(instance_id, at=at), with_allowed=False)
    return instance_out(engine, engine.get(instance_id))


@router.get(
    "/api/instances/{instance_id}/history", response_model=list[HistoryOut], tags=["instances"]
)
def read_history(request: Request, instance_id: str) -> list[HistoryOut]:
    """Every history entry of an instance, oldest first."""
    return [
        HistoryOut(
            seq=entry.seq,
            at=entry.at,
            kind=entry.kind,
            event=entry.event,
            from_state=entry.from_state,
            to_state=entry.to_state,
            data=entry.data,
        )
        for entry in engine_of(request).history(instance_id)
    ]


@router.get("/api/instances/{instance_id}/timeline", response_model=TimelineOut, tags=["instances"])
def read_timeline(request: Request, instance_id: str) -> dict[str, Any]:
    """Every commit of the instance's history, oldest first: the entries it wrote, its time,
    revision, state, active states, status, and how it changed the context."""
    return engine_of(request).timeline(instance_id).to_json()


@router.get("/api/instances/{instance_id}/diagram.svg", tags=["instances"], response_class=Response)
def instance_diagram(
    request: Request, instance_id: str, depth: DepthQuery = None, at: AtQuery = None
) -> Response:
    """The instance's definition with its current state and path drawn; `?depth=N` draws N
    levels of nesting; `?at=SEQ` draws it as it stood after history entry SEQ's commit."""
    return _svg(engine_of(request).diagram(instance_id, fallback=True, depth=depth, at=at))


@router.post("/api/instances/{instance_id}/events", response_model=InstanceOut, tags=["instances"])
def send_event(
    request: Request, instance_id: str, body: EventIn, traceparent: TraceparentHeader = None
) -> InstanceOut:
    """Send an event; 409 with the allowed events when no transition takes it."""
    engine = engine_of(request)
    with remote_parent(engine.tracing, traceparent):
        instance = engine.send(
            instance_id, body.event, body.data, idempotency_key=body.idempotency_key
        )
    return instance_out(engine, instance)


@router.post("/api/instances/{instance_id}/cancel", response_model=InstanceOut, tags=["instances"])
def cancel_instance(
    request: Request, instance_id: str, body: Annotated[CancelIn | None, Body()] = None
) -> InstanceOut:
    """Cancel a running instance: its work is dropped and compensations run."""
    engine = engine_of(request)
    return instance_out(engine, engine.cancel(instance_id, body.reason if body else None))


# -- external task workers ---------------------------------------------------------------------
@router.post("/api/tasks/claim", response_model=list[ClaimedOut], tags=["tasks"])
def claim_tasks(request: Request, body: ClaimIn) -> list[ClaimedOut]:
    """Claim up to `limit` ready tasks named in `tasks` for `lease` seconds."""
    claimed = engine_of(request).claim_tasks(body.tasks, body.worker, body.lease, body.limit)
    return [
        ClaimedOut(
            **task.__dict__,
            deadline=task.deadline,
            idempotency_key=task.idempotency_key,
            traceparent=traceparent_of(task.instance_id),
        )
        for task in claimed
    ]


@router.post("/api/tasks/{task_id}/complete", response_model=Outcome, tags=["tasks"])
def complete_task(
    request: Request, task_id: str, body: CompleteIn, traceparent: TraceparentHeader = None
) -> Outcome:
    """Answer a claimed task with its result."""
    engine = engine_of(request)
    with remote_parent(engine.tracing, traceparent):
        return Outcome(applied=engine.complete_task(task_id, body.worker, body.result))


@router.post("/api/tasks/{task_id}/fail", response_model=Outcome, tags=["tasks"])
def fail_task(
    request: Request, task_id: str, body: FailIn, traceparent: TraceparentHeader = None
) -> Outcome:
    """Report a failed attempt; the task is retried while attempts are left."""
    error = {"type": body.type, "message": body.error}
    engine = engine_of(request)
    with remote_parent(engine.tracing, traceparent):
        return Outcome(applied=engine.fail_task(task_id, body.worker, error))


@router.post("/api/tasks/{task_id}/heartbeat", response_model=Outcome, tags=["tasks"])
def heartbeat(request: Request, task_id: str, body: HeartbeatIn) -> Outcome:
    """Extend the lease of a claimed task; `applied` is False when the lease was lost."""
    return Outcome(applied=engine_of(request).heartbeat(task_id, body.worker, body.lease))


# -- health ------------------------------------------------------------------------------------
@router.get("/healthz", tags=["health"])
def healthz(request: Request) -> JSONResponse:
    """Liveness, and whether the database answers."""
    try:
        engine_of(request).check_health()
    except DatabaseUnavailable as exc:
        return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
