"""The text of the hot path's SQL statements (`transaction.py` runs them), written once
from the table definitions: `?` for a parameter, `?j` for a JSON one, adapted per driver.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import sqlalchemy as sa

from .rows import InstanceRow, TaskRow, TimerRow
from .tables import UTCDateTime, history_t, instances_t, tasks_t, timers_t


def _columns(table: sa.Table, row_type: type, *, leave_out: tuple[str, ...] = ()) -> list[str]:
    """The columns of `table` that `row_type` reads, in its field order: one spelling of
    them (tables.py), checked against the row type when this module is imported."""
    columns = [c.name for c in table.c if c.name not in leave_out]
    fields = [f.name for f in dataclasses.fields(row_type)]
    if columns != fields:
        raise TypeError(f"{row_type.__name__} fields {fields} differ from {table.name} {columns}")
    return columns


def _placeholders(table: sa.Table, columns: Sequence[str]) -> str:
    """`?` for each column, `?j` for a JSON one."""
    return ", ".join("?j" if isinstance(table.c[c].type, sa.JSON) else "?" for c in columns)


_INSTANCE_FIELDS = ", ".join(_columns(instances_t, InstanceRow))
_TASK_COLUMNS = _columns(tasks_t, TaskRow, leave_out=("created_at",))
_TASK_FIELDS = ", ".join(_TASK_COLUMNS)
_TIMER_FIELDS = ", ".join(_columns(timers_t, TimerRow))
_HISTORY_COLUMNS = [c.name for c in history_t.c]


def _kinds(table: sa.Table, columns: Sequence[str]) -> tuple[list[int], list[int]]:
    """Where among `columns` the JSON values and the times are (each needs converting)."""
    json_at = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, sa.JSON)]
    times_at = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, UTCDateTime)]
    return json_at, times_at


_INSTANCE_JSON, _INSTANCE_TIMES = _kinds(instances_t, [c.name for c in instances_t.c])
_TASK_JSON, _TASK_TIMES = _kinds(tasks_t, _TASK_COLUMNS)
_TASK_INPUT = _TASK_COLUMNS.index("input")


def _update(name: str) -> str:
    """The form `name` of the instance row's update (see _UPDATE_FORMS)."""
    sets = [
        *(["state = ?"] if "_state" in name else []),
        *(["status = ?"] if "_status" in name else []),
        "active = ?j",
        *([] if "_context_kept" in name else ["context = ?j"]),
        "machine = ?j, revision = ?, history_seq = ?, updated_at = ?",
    ]
    return f"UPDATE turnout_instances SET {', '.join(sets)} WHERE id = ? AND revision = ?"


# The forms of the instance row's update: SQLite rewrites the index entries of every column
# in SET, so state and status are only set when they change; a context the step did not
# touch (the same object as read) is neither encoded nor written.
_UPDATE_FORMS = [
    f"update_instance{state}{status}{context}"
    for state in ("", "_state")
    for status in ("", "_status")
    for context in ("", "_context_kept")
]
SQL = {
    "lock_instance": f"SELECT {_INSTANCE_FIELDS} FROM turnout_instances WHERE id = ?",
    "insert_instance": f"INSERT INTO turnout_instances ({_INSTANCE_FIELDS}) "
    f"VALUES ({_placeholders(instances_t, [c.name for c in instances_t.c])})",
    **{name: _update(name) for name in _UPDATE_FORMS},
    "lock_instance_of_task": f"SELECT {_INSTANCE_FIELDS} FROM turnout_instances WHERE id = "
    "(SELECT instance_id FROM turnout_tasks WHERE id = ?)",
    "latest_version": "SELECT MAX(version) FROM turnout_definitions WHERE name = ?",
    "load_definition": "SELECT source FROM turnout_definitions WHERE name = ? AND version = ?",
    "find_by_key": "SELECT id FROM turnout_instances WHERE definition = ? AND key = ?",
    "append_history": f"INSERT INTO turnout_history ({', '.join(_HISTORY_COLUMNS)}) "
    f"VALUES ({_placeholders(history_t, _HISTORY_COLUMNS)})",
    "insert_change": "INSERT INTO turnout_changes (instance_id, key, definition, version, "
    "revision, kind, event, from_state, to_state, status, first_entry, last_entry, at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "seen_idempotency": "SELECT 1 FROM turnout_idempotency WHERE instance_id = ? AND key = ?",
    "remember_idempotency": "INSERT INTO turnout_idempotency (instance_id, key, at) "
    "VALUES (?, ?, ?)",
    "insert_task": f"INSERT INTO turnout_tasks ({_TASK_FIELDS}, created_at) "
    f"VALUES ({_placeholders(tasks_t, [*_TASK_COLUMNS, 'created_at'])})",
    "insert_timer": f"INSERT INTO turnout_timers ({_TIMER_FIELDS}) "
    f"VALUES ({_placeholders(timers_t, _TIMER_FIELDS.split(', '))})",
    "drop_tasks": "UPDATE turnout_tasks SET status = 'dropped' WHERE instance_id = ? "
    "AND state_path = ? AND activation = ? AND status IN ('ready', 'claimed')",
    "drop_timers": "DELETE FROM turnout_timers WHERE instance_id = ? AND state_path = ? "
    "AND activation = ?",
    "drop_all_tasks": "UPDATE turnout_tasks SET status = 'dropped' WHERE instance_id = ? "
    "AND status IN ('ready', 'claimed')",
    "drop_all_timers": "DELETE FROM turnout_timers WHERE instance_id = ?",
    "lock_task": f"SELECT {_TASK_FIELDS} FROM turnout_tasks WHERE id = ?",
    "renew_lease": "UPDATE turnout_tasks SET lease_until = ? WHERE id = ? AND worker = ? "
    "AND status = 'claimed'",
    "lapsed_tasks": f"SELECT {_TASK_FIELDS} FROM turnout_tasks WHERE status = 'claimed' "
    "AND lease_until <= ? ORDER BY lease_until LIMIT ?",
    "timed_out_tasks": f"SELECT {_TASK_FIELDS} FROM turnout_tasks WHERE status = 'claimed' "
    "AND timeout_ms IS NOT NULL ORDER BY claimed_at LIMIT ?",
    "due_timers": f"SELECT {_TIMER_FIELDS} FROM turnout_timers WHERE due_at <= ? "
    "ORDER BY due_at LIMIT ?",
    "take_timer": "DELETE FROM turnout_timers WHERE id = ?",
    "next_timer": "SELECT MIN(due_at) FROM turnout_timers",
    "next_task": "SELECT MIN(ready_at) FROM turnout_tasks WHERE status = 'ready'",
    "children": "SELECT id FROM turnout_instances WHERE parent_id = ? ORDER BY created_at, id",
    "running_children": "SELECT id FROM turnout_instances WHERE parent_id = ? "
    "AND status = 'running' ORDER BY created_at, id",
    "last_failure": "SELECT kind, event, data FROM turnout_history WHERE instance_id = ? "
    "AND (kind = 'error' OR (kind IN ('task', 'call') AND event = 'failed')) "
    "ORDER BY seq DESC LIMIT 1",
}


def driver_sql(sql: str, postgres: bool) -> str:
    """Our statements use `?` for a parameter and `?j` for a JSON one; adapt to the driver."""
    if postgres:
        return sql.replace("?j", "%s::jsonb").replace("?", "%s")
    return sql.replace("?j", "?")


SQLITE_SQL = {name: driver_sql(sql, False) for name, sql in SQL.items()}
POSTGRES_SQL = {name: driver_sql(sql, True) for name, sql in SQL.items()}
POSTGRES_SQL["lock_task"] += " FOR UPDATE"  # tasks are locked under either kind of locking
OPTIMISTIC_SQL = dict(POSTGRES_SQL)  # no row lock: the revision check of the update decides
POSTGRES_SQL["lock_instance"] += " FOR UPDATE"
POSTGRES_SQL["lock_instance_of_task"] += " FOR UPDATE"
