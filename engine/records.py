"""What the engine hands back to callers: instance snapshots, history entries, deployments.

Plain frozen dataclasses with a `to_json()` that the CLI and the HTTP API print as they are.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TRACEBACK_LINES = 15
MAX_ERROR_CHARS = 2000


def error_details(exc: BaseException) -> dict[str, Any]:
    """An exception as history keeps it: `type`, `message`, and the head of its traceback
    (its last lines, where it was raised; at most MAX_ERROR_CHARS characters each)."""
    lines = "".join(traceback.format_exception(exc)).splitlines()
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:MAX_ERROR_CHARS],
        "traceback": "\n".join(lines[-TRACEBACK_LINES:])[-MAX_ERROR_CHARS:],
    }


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
    # The instance whose call state started this one, and (read by `Engine.get`, like
    # `last_error`) the ids of those this one's call states started, oldest first.
    parent: str | None = None
    children: list[str] = field(default_factory=list, compare=False)

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
            "parent": self.parent,
            "children": list(self.children),
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


@dataclass(frozen=True)
class ClaimedTask:
    """A task held by a worker until `lease_until`: run `name` on `input`, then answer."""

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
        }


def last_error_of(entry: HistoryEntry | None) -> dict[str, Any] | None:
    """The error a history entry reports, as `Instance.last_error` shows it: `type`,
    `message`, `traceback` (when one was kept), and the entry's `seq` and `at`."""
    if entry is None:
        return None
    data = entry.data if isinstance(entry.data, dict) else {"message": entry.data}
    error = data["error"] if isinstance(data.get("error"), dict) else data
    return {
        "type": str(error.get("type") or ("ExpressionError" if "expression" in error else "Error")),
        "message": str(error.get("message", "")),
        "traceback": error.get("traceback"),
        "seq": entry.seq,
        "at": entry.at.isoformat().replace("+00:00", "Z"),
    }
