"""What the engine hands back to callers: instance snapshots, history entries, deployments.

Plain frozen dataclasses with a `to_json()` that the CLI and the HTTP API print as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
