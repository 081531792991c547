"""What an instance waits for: its tasks not yet answered (waiting for a worker or held under a
lease, with the attempt and the last failed attempt's error) and its timers with their due
times (`Engine.pending`, a part of `Engine`). A read for the dashboard and the HTTP API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .records import HistoryEntry, last_error_of
from .tables import TaskState, history_t, tasks_t, timers_t

if TYPE_CHECKING:
    from .rows import InstanceRow
    from .store import Store

# How many of an instance's newest `retry` entries are looked through for its tasks' errors.
RETRY_WINDOW = 200


@dataclass(frozen=True)
class PendingTask:
    """A task of the instance that is not answered yet: `status` is "ready" (waiting for a
    worker, from `ready_at`) or "claimed" (held by `worker` until `lease_until`); `attempt` is
    the attempt claimed last (0 before the first claim); `last_error` is the error of its
    last failed attempt, as `Instance.last_error` shows one with the `attempt`, or None."""

    id: str
    name: str
    state: str
    kind: str
    item: int | None
    status: str
    attempt: int
    max_attempts: int
    worker: str | None
    ready_at: datetime
    claimed_at: datetime | None
    lease_until: datetime | None
    last_error: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "kind": self.kind,
            "item": self.item,
            "status": self.status,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "worker": self.worker,
            "ready_at": _iso(self.ready_at),
            "claimed_at": _iso(self.claimed_at),
            "lease_until": _iso(self.lease_until),
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class PendingTimer:
    """A timer of the instance: it fires `key` (an `after` delay or a data timer) in
    `state` at `due_at`."""

    id: str
    state: str
    key: str
    due_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "key": self.key, "due_at": _iso(self.due_at)}


@dataclass(frozen=True)
class Pending:
    """An instance's pending tasks (oldest first) and timers (soonest first), read at `at`
    (the engine's clock)."""

    instance_id: str
    revision: int
    at: datetime
    tasks: tuple[PendingTask, ...]
    timers: tuple[PendingTimer, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "revision": self.revision,
            "at": _iso(self.at),
            "tasks": [task.to_json() for task in self.tasks],
            "timers": [timer.to_json() for timer in self.timers],
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


class PendingReads:
    """`Engine.pending` (a part of `Engine`)."""

    if TYPE_CHECKING:  # the other parts of `Engine`
        store: Store
        clock: Callable[[], datetime]

        def _row(self, instance_id: str) -> InstanceRow: ...

    def pending(self, instance_id: str) -> Pending:
        """The instance's tasks not yet answered, each with its attempt, worker, lease and
        last failed attempt's error, and its timers with their due times; InstanceNotFound."""
        row = self._row(instance_id)
        t, h = tasks_t, history_t
        tasks_query = (
            sa.select(t)
            .where(
                t.c.instance_id == row.id,
                t.c.status.in_((TaskState.READY.value, TaskState.CLAIMED.value)),
            )
            .order_by(t.c.created_at, t.c.id)
        )
        timers_query = (
            sa.select(timers_t)
            .where(timers_t.c.instance_id == row.id)
            .order_by(timers_t.c.due_at, timers_t.c.id)
        )
        retries_query = (
            sa.select(h.c.seq, h.c.at, h.c.kind, h.c.event, h.c.from_state, h.c.to_state, h.c.data)
            .where(h.c.instance_id == row.id, h.c.kind == "retry")
            .order_by(h.c.seq.desc())
            .limit(RETRY_WINDOW)
        )
        with self.store.core() as conn:
            task_rows = conn.execute(tasks_query).mappings().all()
            timer_rows = conn.execute(timers_query).mappings().all()
            retries = [
                HistoryEntry(*entry, instance_id=row.id) for entry in conn.execute(retries_query)
            ]
        tasks = tuple(
            PendingTask(
                id=task["id"],
                name=task["name"],
                state=task["state_path"],
                kind=task["kind"],
                item=task["item"],
                status=task["status"],
                attempt=task["attempt"],
                max_attempts=task["max_attempts"],
                worker=task["worker"],
                ready_at=task["ready_at"],
                claimed_at=task["claimed_at"],
                lease_until=task["lease_until"],
                last_error=_error_of(_last_failure(retries, task)),
            )
            for task in task_rows
        )
        timers = tuple(
            PendingTimer(timer["id"], timer["state_path"], timer["key"], timer["due_at"])
            for timer in timer_rows
        )
        return Pending(row.id, row.revision, self.clock(), tasks, timers)


def _error_of(entry: HistoryEntry | None) -> dict[str, Any] | None:
    """The error of a `retry` entry as `last_error_of` gives it, with the failed attempt."""
    error = last_error_of(entry)
    if error is not None and entry is not None:
        error["attempt"] = entry.data["attempt"]
    return error


def _last_failure(retries: list[HistoryEntry], task: Any) -> HistoryEntry | None:
    """The newest `retry` entry (newest first in `retries`) of an earlier attempt of this task:
    same state and name (a foreach's items share them), an attempt below or at its current one."""
    for entry in retries:
        data = entry.data if isinstance(entry.data, dict) else {}
        if (
            entry.from_state == task["state_path"]
            and data.get("task") == task["name"]
            and isinstance(data.get("attempt"), int)
            and data["attempt"] <= task["attempt"]
        ):
            return entry
    return None
