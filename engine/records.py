"""What the engine hands back to callers: instance snapshots, history entries, deployments.

Plain frozen dataclasses with a `to_json()` that the CLI and the HTTP API print as they are.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from statemachines.errors import ValueNotStorable
from statemachines.model import MAX_NAME_LENGTH
from statemachines.reading import ERROR_TYPE_RE
from statemachines.values import storable

Built = TypeVar("Built")
TRACEBACK_LINES = 15
MAX_ERROR_CHARS = 2000
MAX_DETAILS_BYTES = 10_000  # a TaskFailure's details, as JSON


class TaskFailure(Exception):
    """Raise it from a task handler to fail the attempt with an error `type` of your choosing
    (what `retry` policies and `failed: {TYPE: ...}` match), a `message`, and `details`: a
    JSON value kept with the error (`event.error.details`). Any other exception's type is
    its class name.

        raise TaskFailure("Refused", "card declined", details={"code": 51})
    """

    def __init__(self, type: str, message: str = "", details: Any = None) -> None:
        if not (
            isinstance(type, str) and ERROR_TYPE_RE.match(type) and len(type) <= MAX_NAME_LENGTH
        ):
            raise ValueError(f"a TaskFailure's type must be a name like 'Refused', not {type!r}")
        super().__init__(message)
        self.type = type
        self.message = str(message)
        self.details = details


def error_details(exc: BaseException) -> dict[str, Any]:
    """An exception as history keeps it: `type`, `message`, and the head of its traceback
    (its last lines, where it was raised; at most MAX_ERROR_CHARS characters each). A
    TaskFailure gives its own type and message, and its `details` when it has some."""
    lines = "".join(traceback.format_exception(exc)).splitlines()
    failure = exc if isinstance(exc, TaskFailure) else None
    error = {
        "type": failure.type if failure else type(exc).__name__,
        "message": (failure.message if failure else str(exc))[:MAX_ERROR_CHARS],
        "traceback": "\n".join(lines[-TRACEBACK_LINES:])[-MAX_ERROR_CHARS:],
    }
    if failure is not None and failure.details is not None:
        error["details"] = _details(failure.details)
    return error


def _details(details: Any) -> Any:
    """A TaskFailure's details as stored; a note saying why instead when they cannot be."""
    try:
        value = storable(details, "details")
    except ValueNotStorable as exc:
        return f"<details not stored: {exc}>"[:MAX_ERROR_CHARS]
    size = len(json.dumps(value))
    if size > MAX_DETAILS_BYTES:
        return f"<details not stored: {size} bytes of JSON, over the limit of {MAX_DETAILS_BYTES}>"
    return value


def positional(cls: type[Built]) -> Callable[..., Built]:
    """A constructor of the frozen dataclass `cls` taking every field, in order, positionally:
    the object `cls(...)` makes, its fields set in one update of its `__dict__`. For the
    objects built on every event: a frozen dataclass's own `__init__` sets each field
    through `object.__setattr__`, which costs more than the rest of building it."""
    names = [item.name for item in fields(cls)]  # type: ignore[arg-type]
    new = object.__new__

    def build(*values: Any) -> Built:
        built = new(cls)
        built.__dict__.update(zip(names, values, strict=True))
        return built

    return build


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Deployment:
    """A deployed definition version; `created` is False when the content was already there."""

    name: str
    version: int
    digest: str
    created: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "created": self.created,
        }


@dataclass(frozen=True)
class Instance:
    """A snapshot of one instance as it was when the call committed."""

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
    # The newest error in the instance's history (type, message, traceback head), read by
    # `Engine.get`; None in the snapshots other calls return, so it is left out of equality:
    # two snapshots of one revision are equal whichever call made them.
    last_error: dict[str, Any] | None = field(default=None, compare=False)
    # Once failed: the error it ended with (`type`, `message`, the `state` where it arose,
    # the `seq` of the history entry that records it, `details` when there are any).
    error: dict[str, Any] | None = None
    # The instance whose call state started this one, and (read by `Engine.get`, like
    # `last_error`) the ids of those this one's call states started, oldest first.
    parent: str | None = None
    children: list[str] = field(default_factory=list, compare=False)
    # While `scheduled` (a start with a time, a delay or a debounce): when it starts.
    due_at: datetime | None = None
    # Read by `Engine.get`: the ready tasks a flow-control limit holds back now, each
    # {task, name, state, reason} (see flow_control.py).
    held: list[dict[str, Any]] = field(default_factory=list, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "definition": self.definition,
            "version": self.version,
            "state": self.state,
            "active": list(self.active),
            "status": self.status,
            "context": self.context,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "revision": self.revision,
            "last_error": self.last_error,
            "error": self.error,
            "parent": self.parent,
            "children": list(self.children),
            "due_at": None if self.due_at is None else _iso(self.due_at),
            "held": list(self.held),
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One appended change of an instance; `seq` counts 1, 2, ... per instance."""

    seq: int
    at: datetime
    kind: str
    event: str | None
    from_state: str | None
    to_state: str | None
    data: Any
    instance_id: str = ""
    definition: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": _iso(self.at),
            "kind": self.kind,
            "event": self.event,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "data": self.data,
        }


class InputMismatch(TaskFailure):
    """A handler's input does not fit the type its first parameter declares (a pydantic
    model or a dataclass): the attempt fails with error type `InputMismatch`, whose
    `details` list the problems. A retry policy retries it only if it names it in `errors`:
    the same input would not fit the next time either."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__("InputMismatch", message, details)


@dataclass(frozen=True)
class ClaimedTask:
    """A task held by a worker until `lease_until`: run `name` on `input`, then answer.

    `activation` counts the entries of the instance's states (a re-entry is a new one),
    `item` is a foreach item's index (None for a task state's task), `claimed_at` is when
    this attempt was claimed (the `timeout` runs from it).
    """

    id: str
    name: str
    input: Any
    attempt: int
    max_attempts: int
    instance_id: str
    state: str
    kind: str
    lease_until: datetime
    timeout: float | None = None
    activation: int = 0
    item: int | None = None
    claimed_at: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this task, whichever worker runs it; another for a
        new entry into its state or another foreach item: 32 hex digits of a SHA-256 over
        the instance id, state path, activation, item and task name."""
        parts = (self.instance_id, self.state, str(self.activation), str(self.item), self.name)
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]

    @property
    def deadline(self) -> datetime | None:
        """When this attempt runs past its `timeout` (None: the task has none)."""
        if self.timeout is None or self.claimed_at is None:
            return None
        return self.claimed_at + timedelta(seconds=self.timeout)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "input": self.input,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "instance_id": self.instance_id,
            "state": self.state,
            "kind": self.kind,
            "lease_until": _iso(self.lease_until),
            "timeout": self.timeout,
            "activation": self.activation,
            "item": self.item,
            "deadline": None if self.deadline is None else _iso(self.deadline),
            "idempotency_key": self.idempotency_key,
        }


def last_error_of(entry: HistoryEntry | None) -> dict[str, Any] | None:
    """The error a history entry reports, as `Instance.last_error` shows it: `type`,
    `message`, `traceback` (when one was kept), a TaskFailure's `details` (when it had
    some), and the entry's `seq` and `at`."""
    if entry is None:
        return None
    data = entry.data if isinstance(entry.data, dict) else {"message": entry.data}
    error = data["error"] if isinstance(data.get("error"), dict) else data
    details = {"details": error["details"]} if "details" in error else {}
    return {
        "type": str(error.get("type") or ("ExpressionError" if "expression" in error else "Error")),
        "message": str(error.get("message", "")),
        "traceback": error.get("traceback"),
        **details,
        "seq": entry.seq,
        "at": entry.at.isoformat().replace("+00:00", "Z"),
    }


@dataclass(frozen=True)
class RedriveOutcome:
    """What a bulk redrive did, or for a dry run would do, to one failed instance: `outcome`
    is 'redriven', 'would redrive' or 'refused' (`message` says why); `state` and
    `error_type` are the instance's error's."""

    REDRIVEN: ClassVar[str] = "redriven"
    WOULD_REDRIVE: ClassVar[str] = "would redrive"
    REFUSED: ClassVar[str] = "refused"

    instance_id: str
    outcome: str
    state: str
    error_type: str
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.instance_id,
            "outcome": self.outcome,
            "state": self.state,
            "error_type": self.error_type,
            "message": self.message,
        }


@dataclass(frozen=True)
class EventOutcome:
    """What `send_many` did with one event of its list (`index`, from 0, in input order):
    `outcome` is 'applied' (`instance` as the event left it), 'duplicate' (its idempotency
    key was applied before: `instance` as it is), 'rejected' (no transition takes it:
    `allowed` lists the events the instance accepts, `instance` is unchanged), 'not_found'
    (no such instance) or 'invalid' (the item itself is malformed, or its write was refused);
    `message` says why for the last three."""

    APPLIED: ClassVar[str] = "applied"
    DUPLICATE: ClassVar[str] = "duplicate"
    REJECTED: ClassVar[str] = "rejected"
    NOT_FOUND: ClassVar[str] = "not_found"
    INVALID: ClassVar[str] = "invalid"

    index: int
    outcome: str
    instance: Instance | None = None
    allowed: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether the instance has taken the event: now (applied) or before (duplicate)."""
        return self.outcome in (self.APPLIED, self.DUPLICATE)

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"index": self.index, "outcome": self.outcome}
        if self.instance is not None:
            found["instance"] = self.instance.to_json()
        if self.outcome == self.REJECTED:
            found["allowed"] = list(self.allowed)
        if self.message:
            found["message"] = self.message
        return found


new_instance = positional(Instance)
new_entry = positional(HistoryEntry)
