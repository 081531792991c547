"""The SQL of migrations (`migration.py`): the running instances of a version and all their
histories, read in one pass for a plan; and, inside the transaction that moves one instance,
its history, its tasks and timers, and the version written.

Statements go to the driver as `transaction.py`'s do (`?` on SQLite, `%s` on PostgreSQL),
each read on a cursor of its own; rows come back as the engine's row types.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .records import HistoryEntry
from .rows import InstanceRow
from .tables import TaskState, instances_t
from .transaction import Transaction, driver_sql

FETCHED = 2000  # history rows read from the driver at a time
_INSTANCE_FIELDS = ", ".join(column.name for column in instances_t.c)
_HISTORY_FIELDS = "h.instance_id, h.seq, h.at, h.kind, h.event, h.from_state, h.to_state, h.data"
LIVE = (TaskState.READY, TaskState.CLAIMED)


@dataclass(frozen=True)
class TaskKey:
    """What a migration reads of a task row: which state entry and item it is for, its
    name and status, and the policy it runs under."""

    id: str
    state_path: str
    activation: int
    item: int | None
    kind: str
    name: str
    status: str
    max_attempts: int
    retry: dict[str, Any]
    timeout_ms: int | None

    @property
    def key(self) -> tuple[str, int, int | None, str]:
        return (self.state_path, self.activation, self.item, self.kind)

    @property
    def live(self) -> bool:
        return self.status in LIVE


@dataclass(frozen=True)
class TimerKey:
    id: str
    state_path: str
    activation: int
    key: str
    due_at: datetime


def _read(tx: Transaction, text: str, params: Iterable[Any]) -> Any:
    cursor = tx.cursor.connection.cursor()
    cursor.execute(driver_sql(text, tx.postgres), tuple(params))
    return cursor


# -- a plan ------------------------------------------------------------------------------------
def running(tx: Transaction, definition: str, version: int) -> list[InstanceRow]:
    """The running instances of version `version` of `definition`, oldest first."""
    found = _read(
        tx,
        f"SELECT {_INSTANCE_FIELDS} FROM turnout_instances WHERE definition = ? AND version = ? "
        "AND status = 'running' ORDER BY created_at, id",
        (definition, version),
    )
    return [row for row in map(tx.instance_of, found.fetchall()) if row is not None]


def histories(
    tx: Transaction, definition: str, version: int
) -> Iterator[tuple[str, list[HistoryEntry]]]:
    """(instance id, its history oldest first) for every running instance of the version,
    read in one statement ordered by instance and seq, one instance at a time."""
    found = _read(
        tx,
        f"SELECT {_HISTORY_FIELDS} FROM turnout_history h JOIN turnout_instances i "
        "ON i.id = h.instance_id WHERE i.definition = ? AND i.version = ? "
        "AND i.status = 'running' ORDER BY h.instance_id, h.seq",
        (definition, version),
    )
    current: str | None = None
    entries: list[HistoryEntry] = []
    while rows := found.fetchmany(FETCHED):
        for instance_id, seq, at, kind, event, source, target, data in rows:
            if instance_id != current:
                if current is not None:
                    yield current, entries
                current, entries = instance_id, []
            entry = HistoryEntry(
                seq,
                tx.read_time(at),
                kind,
                event,
                source,
                target,
                tx.read_json(data),
                instance_id,
                definition,
            )
            entries.append(entry)
    if current is not None:
        yield current, entries


# -- one instance's move -----------------------------------------------------------------------
def history(tx: Transaction, row: InstanceRow) -> list[HistoryEntry]:
    """The history of the instance `row` (locked), up to its last entry, oldest first."""
    found = _read(
        tx,
        "SELECT seq, at, kind, event, from_state, to_state, data FROM turnout_history "
        "WHERE instance_id = ? AND seq <= ? ORDER BY seq",
        (row.id, row.history_seq),
    )
    return [
        HistoryEntry(
            seq,
            tx.read_time(at),
            kind,
            event,
            source,
            target,
            tx.read_json(data),
            row.id,
            row.definition,
        )
        for seq, at, kind, event, source, target, data in found.fetchall()
    ]


def tasks(tx: Transaction, instance_id: str) -> list[TaskKey]:
    """Every task row of the instance, whatever its status."""
    found = _read(
        tx,
        "SELECT id, state_path, activation, item, kind, name, status, max_attempts, retry, "
        "timeout_ms FROM turnout_tasks WHERE instance_id = ?",
        (instance_id,),
    )
    return [
        TaskKey(task_id, path, activation, item, kind, name, status, most, tx.read_json(retry), ms)
        for task_id, path, activation, item, kind, name, status, most, retry, ms in found.fetchall()
    ]


def timers(tx: Transaction, instance_id: str) -> list[TimerKey]:
    """Every waiting timer of the instance."""
    found = _read(
        tx,
        "SELECT id, state_path, activation, key, due_at FROM turnout_timers WHERE instance_id = ?",
        (instance_id,),
    )
    return [
        TimerKey(timer_id, path, activation, key, tx.read_time(due))
        for timer_id, path, activation, key, due in found.fetchall()
    ]


def _each(tx: Transaction, text: str, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        tx.cursor.executemany(driver_sql(text, tx.postgres), rows)


def drop_tasks(tx: Transaction, ids: list[str]) -> None:
    """Drop the unfinished tasks `ids` (a worker's answer to one is then stale)."""
    _each(
        tx,
        "UPDATE turnout_tasks SET status = 'dropped' WHERE id = ? "
        "AND status IN ('ready', 'claimed')",
        [(task_id,) for task_id in ids],
    )


def renew_policy(
    tx: Transaction, task_id: str, max_attempts: int, retry: dict[str, Any], timeout_ms: int | None
) -> None:
    """A kept task runs its next attempts under the new version's retry policy and timeout."""
    text = json.dumps(retry, separators=(",", ":"))
    _each(
        tx,
        "UPDATE turnout_tasks SET max_attempts = ?, retry = ?j, timeout_ms = ? WHERE id = ?",
        [(max_attempts, text, timeout_ms, task_id)],
    )


def delete_timers(tx: Transaction, ids: list[str]) -> None:
    _each(tx, "DELETE FROM turnout_timers WHERE id = ?", [(timer_id,) for timer_id in ids])


def set_version(tx: Transaction, instance_id: str, version: int) -> None:
    """The instance now runs on `version`; its revision moves with the step written next."""
    _each(tx, "UPDATE turnout_instances SET version = ? WHERE id = ?", [(version, instance_id)])
