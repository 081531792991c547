"""The rows the hot path reads and writes, as the engine sees them (their columns are
`tables.py`'s, in the same order: `transaction.py` checks it on import), and new row ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import uuid6

from statemachines.steps import Status

from .records import HistoryEntry, positional


@dataclass(frozen=True)
class InstanceRow:
    id: str
    key: str | None
    definition: str
    version: int
    state: str
    active: list[str]
    status: str
    context: dict[str, Any]
    machine: dict[str, Any]
    revision: int
    history_seq: int
    created_at: datetime
    updated_at: datetime
    parent_id: str | None = None

    @classmethod
    def new(
        cls,
        instance_id: str,
        key: str | None,
        definition: str,
        version: int,
        now: datetime,
        parent_id: str | None = None,
    ) -> InstanceRow:
        """The row of an instance about to start: empty until its start step is persisted."""
        return cls(
            id=instance_id,
            key=key,
            definition=definition,
            version=version,
            state="",
            active=[],
            status=Status.RUNNING,
            context={},
            machine={},
            revision=0,
            history_seq=0,
            created_at=now,
            updated_at=now,
            parent_id=parent_id,
        )


class Written(NamedTuple):
    """One instance's step as its transaction wrote it: the row before it (None for a new
    instance), the row after it and the history entries it appended. What a transaction
    wrote is handed to the in-process hooks once it has committed (hooks.py). A named
    tuple: one is made for every step, and a tuple is the cheapest to make."""

    before: InstanceRow | None
    after: InstanceRow
    entries: list[HistoryEntry]


@dataclass(frozen=True)
class TaskRow:
    id: str
    instance_id: str
    state_path: str
    activation: int
    item: int | None
    name: str
    kind: str
    input: Any
    attempt: int
    max_attempts: int
    retry: dict[str, Any]
    timeout_ms: int | None
    status: str
    worker: str | None
    ready_at: datetime
    claimed_at: datetime | None
    lease_until: datetime | None

    @property
    def ref(self) -> tuple[str, int, int | None]:
        return (self.state_path, self.activation, self.item)

    @property
    def timeout(self) -> timedelta | None:
        return None if self.timeout_ms is None else timedelta(milliseconds=self.timeout_ms)

    def timed_out(self, now: datetime) -> bool:
        """Whether the current attempt has run past the task's timeout by `now`."""
        timeout, claimed = self.timeout, self.claimed_at
        return timeout is not None and claimed is not None and now - claimed > timeout


@dataclass(frozen=True)
class Claim:
    """A worker going on with an instance: the first new task it has a handler for (named in
    `names`) is written already claimed by `worker` until `lease_until`, not as ready."""

    names: frozenset[str]
    worker: str
    lease_until: datetime


@dataclass(frozen=True)
class TimerRow:
    id: str
    instance_id: str
    state_path: str
    activation: int
    key: str
    due_at: datetime


new_row = positional(InstanceRow)  # every field, in order: for the rows built on every event


def new_id() -> str:
    """A new row id: a UUIDv7 as 32 hex digits. Ids made later sort later, so new rows go
    to the end of the primary-key index instead of to random pages of it (a start writes
    several pages fewer), and rows made in the same instant list in the order made.
    """
    return uuid6.uuid7().hex
