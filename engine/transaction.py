"""The hot path's SQL: one `Transaction` runs every statement an operation on an instance needs
(fixed text on the driver, no statement building), reading and writing the rows of `rows.py`.

`store.py` opens these transactions on its connections; the engine's operations
(`runtime.py`) run inside them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from statemachines.errors import ConcurrentUpdate, ContextTooLarge, DuplicateKey
from statemachines.steps import TaskOrder, TimerOrder

from .codec import dumps as _dumps
from .codec import loads as _loads
from .records import HistoryEntry
from .rows import Claim, InstanceRow, TaskRow, TimerRow, Written, new_id, new_row

# The statement texts live in statements.py; the names imported `as` themselves are read
# from here by modules building statements of their own (one_trip.py, batching.py, ...).
from .statements import _INSTANCE_FIELDS as _INSTANCE_FIELDS
from .statements import (
    _INSTANCE_JSON,
    _INSTANCE_TIMES,
    _TASK_INPUT,
    _TASK_JSON,
    _TASK_TIMES,
    OPTIMISTIC_SQL,
)
from .statements import _TASK_FIELDS as _TASK_FIELDS
from .statements import POSTGRES_SQL as POSTGRES_SQL
from .statements import SQLITE_SQL as SQLITE_SQL
from .statements import driver_sql as driver_sql
from .tables import TaskState

MAX_CONTEXT_BYTES = 4_000_000
_WRITTEN_TIME = len("2026-01-01 00:00:00.000000")  # a time as SQLite stores it


# `retry` keeps each policy's failures of a task retried by error type.
_TASK_UPDATABLE = {"status", "worker", "claimed_at", "lease_until", "ready_at", "attempt", "retry"}


class Transaction:
    """The statements of one database transaction; obtained from `Store.transaction()`.

    Statements go to the driver directly, as SQL text written once: they run for every event
    and every task, where SQLAlchemy's statement building would cost more than the database.
    """

    def __init__(
        self,
        cursor: Any,
        postgres: bool,
        optimistic: bool = False,
        sync: Callable[[], None] | None = None,
    ) -> None:
        self.cursor = cursor
        self.postgres = postgres
        self.optimistic = optimistic
        # On PostgreSQL statements are pipelined: `sync` waits for those sent so far, and is
        # called where a statement's effect must be known before going on (a row count, an
        # integrity error). Under row locks, an instance's revision cannot move once read.
        self._sync = sync or _nothing
        self.sql = (OPTIMISTIC_SQL if optimistic else POSTGRES_SQL) if postgres else SQLITE_SQL
        self.changed = False  # a change was written: its commit wakes the feed's listeners
        self._last_time: datetime | None = None
        self._last_encoded: Any = None
        self.written: list[Written] = []  # every step persisted, for the hooks after commit
        self.tallies: list[tuple[str, ...]] = []  # what it did, for the metrics (counts.py)
        # The priority of the instances this transaction starts (flow_control.py), which
        # the children their calls start take too.
        self.priority = 0

    def _run(self, name: str, params: Sequence[Any]) -> Any:
        self.cursor.execute(self.sql[name], params)
        return self.cursor

    def _read(self, name: str, params: Sequence[Any]) -> Any:
        """Run a statement whose rows are read, on PostgreSQL on a cursor of its own: a result
        the server sends early (as when it shuts down) must not stand in for its rows."""
        cursor = self.cursor.connection.cursor() if self.postgres else self.cursor
        cursor.execute(self.sql[name], params)
        return cursor

    def _time(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if value is self._last_time:  # a step writes its `now` to three tables
            return self._last_encoded
        if value.tzinfo is UTC:  # the engine's clock: no conversion to make
            naive = value.replace(tzinfo=None)
        else:
            naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        encoded = naive if self.postgres else naive.isoformat(" ", "microseconds")
        self._last_time, self._last_encoded = value, encoded
        return encoded

    def read_time(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            if len(value) == _WRITTEN_TIME:  # as `_time` writes it: read as UTC at once
                return datetime.fromisoformat(value + "+00:00")
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)

    def read_json(self, value: Any) -> Any:
        return _loads(value) if isinstance(value, str) and not self.postgres else value

    def _decoded(self, row: Any, json_at: Sequence[int], times_at: Sequence[int]) -> list[Any]:
        values = list(row)
        for index in json_at:
            values[index] = self.read_json(values[index])
        for index in times_at:
            values[index] = self.read_time(values[index])
        return values

    def _task(self, row: Any) -> TaskRow:
        return TaskRow(*self._decoded(row, _TASK_JSON, _TASK_TIMES))

    # instances
    def lock_instance(self, instance_id: str) -> InstanceRow | None:
        return self.instance_of(self._read("lock_instance", (instance_id,)).fetchone())

    def lock_task(self, task_id: str) -> tuple[TaskRow | None, InstanceRow | None]:
        """A task and its instance, both locked: the instance first, the order every writer
        follows. On PostgreSQL both statements travel in one round trip."""
        instance_cursor = self._read("lock_instance_of_task", (task_id,))
        task_cursor = self.cursor.connection.cursor()  # its own on SQLite too
        task_cursor.execute(self.sql["lock_task"], (task_id,))
        instance = self.instance_of(instance_cursor.fetchone())
        task = task_cursor.fetchone()
        return (None if task is None else self._task(task)), instance

    def instance_of(self, row: Any) -> InstanceRow | None:
        if row is None:
            return None
        return new_row(*self._decoded(row, _INSTANCE_JSON, _INSTANCE_TIMES))

    def insert_instance(self, row: InstanceRow) -> None:
        t = self._time
        try:
            self._run(
                "insert_instance",
                (
                    row.id,
                    row.key,
                    row.definition,
                    row.version,
                    row.state,
                    _dumps(row.active),
                    row.status,
                    _context_json(row.context),
                    _dumps(row.machine),
                    row.revision,
                    row.history_seq,
                    t(row.created_at),
                    t(row.updated_at),
                    row.parent_id,
                ),
            )
            if row.key is not None:
                self._sync()  # a taken key is an error to report now, not at COMMIT
        except Exception as exc:
            if _is_integrity_error(exc):
                raise DuplicateKey(row.definition, row.key or row.id) from None
            raise

    def update_instance(self, new: InstanceRow, previous: InstanceRow) -> None:
        """Write `new` over `previous`, unless the row's revision moved on since it was read."""
        changed: list[Any] = []
        name = "update_instance"
        if new.state != previous.state:
            name += "_state"
            changed.append(new.state)
        if new.status != previous.status:
            name += "_status"
            changed.append(new.status)
        changed.append(_dumps(new.active))
        if new.context is previous.context:  # the step did not touch it (statemachines/flat.py)
            name += "_context_kept"
        else:
            changed.append(_context_json(new.context))
        done = self._run(
            name,
            (
                *changed,
                _dumps(new.machine),
                new.revision,
                new.history_seq,
                self._time(new.updated_at),
                new.id,
                previous.revision,
            ),
        )
        if self.postgres and not self.optimistic:
            return  # the row is locked FOR UPDATE since it was read: the revision held
        self._sync()
        if done.rowcount != 1:
            raise ConcurrentUpdate(f"instance {new.id} changed under this transaction")

    def latest_version(self, definition: str) -> int | None:
        """The latest deployed version of `definition`, None when there is none."""
        found = self._read("latest_version", (definition,)).fetchone()[0]
        return None if found is None else int(found)

    def definition_source(self, name: str, version: int) -> str | None:
        """The YAML source of version `version` of definition `name`, None when there is none."""
        row = self._read("load_definition", (name, version)).fetchone()
        return None if row is None else str(row[0])

    def find_by_key(self, definition: str, key: str) -> str | None:
        row = self._read("find_by_key", (definition, key)).fetchone()
        return None if row is None else str(row[0])

    def append_history(self, entries: Sequence[HistoryEntry]) -> None:
        t = self._time
        self._run_each(
            "append_history",
            [
                (
                    e.instance_id,
                    e.seq,
                    t(e.at),
                    e.kind,
                    e.event,
                    e.from_state,
                    e.to_state,
                    _dumps(e.data),
                )
                for e in entries
            ],
        )

    def insert_change(
        self, new: InstanceRow, from_state: str | None, entries: Sequence[HistoryEntry]
    ) -> None:
        """The outbox row of the step that made `new` (read by changes.py)."""
        first = entries[0] if entries else None
        self._run(
            "insert_change",
            (
                new.id,
                new.key,
                new.definition,
                new.version,
                new.revision,
                first.kind if first else "update",
                first.event if first else None,
                from_state,
                new.state,
                new.status,
                new.history_seq - len(entries) + 1,
                new.history_seq,
                self._time(new.updated_at),
            ),
        )
        self.changed = True

    def seen_idempotency(self, instance_id: str, key: str) -> bool:
        return self._read("seen_idempotency", (instance_id, key)).fetchone() is not None

    def remember_idempotency(self, instance_id: str, key: str, now: datetime) -> None:
        self._run("remember_idempotency", (instance_id, key, self._time(now)))

    # tasks and timers
    def insert_tasks(
        self,
        instance_id: str,
        orders: Iterable[TaskOrder],
        now: datetime,
        claim: Claim | None = None,
    ) -> list[TaskRow]:
        """Write new ready tasks; with `claim`, the first one it names is written claimed
        instead (attempt 1), and returned: a claim with no statement of its own."""
        rows: list[tuple[Any, ...]] = []
        claimed: list[TaskRow] = []
        at = self._time(now)
        for order in orders:
            taken = claim is not None and not claimed and order.name in claim.names
            if taken and claim is not None:
                attempt, status, worker, lease = (
                    1,
                    TaskState.CLAIMED,
                    claim.worker,
                    claim.lease_until,
                )
            else:
                attempt, status, worker, lease = 0, TaskState.READY, None, None
            # TaskRow's fields in order; a TaskRow is built only for the claimed task, the
            # one that is returned (building one per task costs more than its insert).
            values: list[Any] = [
                new_id(),
                instance_id,
                order.state_path,
                order.activation,
                order.item,
                order.name,
                order.kind,
                order.input,
                attempt,
                max(1, order.retry.attempts),
                order.retry.to_json(),
                _milliseconds(order.timeout),
                status,
                worker,
                now,
                now if taken else None,
                lease,
            ]
            params = self._encoded(values, now, at)
            if taken:  # its input as a claim would read it back: decoded from what is stored
                values[_TASK_INPUT] = _loads(params[_TASK_INPUT])
                claimed.append(TaskRow(*values))
            rows.append(params)
        self._run_each("insert_task", rows)
        return claimed

    def _encoded(self, values: list[Any], now: datetime, at: Any) -> tuple[Any, ...]:
        """The values of `insert_task` for a task's `values` (TaskRow's fields in order),
        created `now`, which `at` is encoded (encoded once for every task it stamps)."""
        encoded = list(values)
        for index in _TASK_JSON:
            encoded[index] = _dumps(encoded[index])
        for index in _TASK_TIMES:
            value = encoded[index]
            encoded[index] = at if value is now else self._time(value)
        return (*encoded, at)

    def insert_timers(self, instance_id: str, orders: Iterable[TimerOrder]) -> None:
        rows = [
            (
                new_id(),
                instance_id,
                order.state_path,
                order.activation,
                order.key,
                self._time(order.due),
            )
            for order in orders
        ]
        self._run_each("insert_timer", rows)

    def drop_work(
        self,
        instance_id: str,
        tasks_of: Iterable[tuple[str, int]],
        timers_of: Iterable[tuple[str, int]],
    ) -> None:
        """Drop the unfinished tasks of the state entries `tasks_of` and the timers of
        `timers_of` (each a state path and its activation)."""
        for name, pairs in (("drop_tasks", tasks_of), ("drop_timers", timers_of)):
            self._run_each(name, [(instance_id, path, activation) for path, activation in pairs])

    def drop_all_work(self, instance_id: str) -> None:
        """Drop every unfinished task and every timer of the instance."""
        self._run("drop_all_tasks", (instance_id,))
        self._run("drop_all_timers", (instance_id,))

    def _run_each(self, name: str, rows: Sequence[Sequence[Any]]) -> None:
        """A statement for each of `rows`; a single row as a plain execute, the cheaper."""
        if len(rows) == 1:
            self.cursor.execute(self.sql[name], rows[0])
        elif rows:
            self.cursor.executemany(self.sql[name], rows)

    def claim_tasks(
        self,
        names: Sequence[str] | None,
        worker: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        instance_id: str | None = None,
    ) -> Callable[[], list[TaskRow]]:
        """Take up to `limit` ready tasks (of `names`, or any; of one instance, or any) for
        `worker` until now + lease; call the function returned, once the transaction has
        ended, for them (on PostgreSQL the claim then travels with the COMMIT).

        PostgreSQL skips rows another claimer holds; SQLite has one writer at a time.
        """
        mark = "%s" if self.postgres else "?"
        params: list[Any] = [worker, self._time(now), self._time(now + lease), self._time(now)]
        where = f"status = 'ready' AND ready_at <= {mark}"
        if instance_id is not None:
            where += f" AND instance_id = {mark}"
            params.append(instance_id)
        if names is not None:
            if not names:
                return list
            where += f" AND name IN ({', '.join([mark] * len(names))})"
            params.extend(names)
        params.append(limit)
        lock = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        sql = (
            f"UPDATE turnout_tasks SET status = 'claimed', worker = {mark}, claimed_at = {mark}, "
            f"lease_until = {mark}, attempt = attempt + 1 WHERE id IN (SELECT id FROM "
            f"turnout_tasks WHERE {where} ORDER BY ready_at LIMIT {mark}{lock}) "
            f"RETURNING {_TASK_FIELDS}"
        )
        cursor = self.cursor.connection.cursor()  # its own: later statements leave it alone
        cursor.execute(sql, params)

        def claimed() -> list[TaskRow]:
            rows = [self._task(r) for r in cursor.fetchall()]
            return sorted(rows, key=lambda t: (t.ready_at, t.id))

        if self.postgres:
            return claimed
        rows = claimed()  # SQLite steps a statement as it is read: read it in the transaction
        return lambda: rows

    def lapsed_tasks(self, now: datetime, limit: int) -> list[TaskRow]:
        """Claimed tasks whose lease has run out (the holder died or hung)."""
        rows = self._read("lapsed_tasks", (self._time(now), limit)).fetchall()
        return [self._task(r) for r in rows]

    def timed_out_tasks(self, now: datetime, limit: int) -> list[TaskRow]:
        """Claimed tasks with a timeout whose current attempt has run past it."""
        rows = [self._task(r) for r in self._read("timed_out_tasks", (limit,)).fetchall()]
        return [task for task in rows if task.timed_out(now)]

    def update_task(self, task_id: str, **values: Any) -> None:
        unknown = set(values) - _TASK_UPDATABLE
        assert not unknown, f"not a task column to update: {unknown}"
        mark = "%s" if self.postgres else "?"
        names = sorted(values)
        params = [
            self._time(values[n])
            if n.endswith(("_at", "_until"))
            else _dumps(values[n])
            if n == "retry"
            else values[n]
            for n in names
        ]
        cast = {"retry": "::jsonb"} if self.postgres else {}
        sets = ", ".join(f"{n} = {mark}{cast.get(n, '')}" for n in names)
        self.cursor.execute(
            f"UPDATE turnout_tasks SET {sets} WHERE id = {mark}", [*params, task_id]
        )

    def renew_lease(self, task_id: str, worker: str, until: datetime) -> bool:
        done = self._run("renew_lease", (self._time(until), task_id, worker))
        self._sync()
        return bool(done.rowcount == 1)

    def due_timers(self, now: datetime, limit: int) -> list[TimerRow]:
        rows = self._read("due_timers", (self._time(now), limit)).fetchall()
        return [TimerRow(r[0], r[1], r[2], r[3], r[4], self.read_time(r[5])) for r in rows]

    def take_timer(self, timer_id: str) -> bool:
        """Delete a timer about to fire; False when another worker already took it."""
        done = self._run("take_timer", (timer_id,))
        self._sync()
        return bool(done.rowcount == 1)

    def children(self, instance_id: str, running: bool = False) -> list[str]:
        """The ids of the instances the instance's call states started (only those still
        running with `running`), oldest first."""
        rows = self._read("running_children" if running else "children", (instance_id,))
        return [str(row[0]) for row in rows.fetchall()]

    def last_failure(self, instance_id: str) -> list[tuple[str, str | None, Any]]:
        """The instance's newest history entry that reports an error, as (kind, event,
        data); none when it has none."""
        rows = self._read("last_failure", (instance_id,)).fetchall()
        return [(str(kind), event, self.read_json(data)) for kind, event, data in rows]

    def next_due(self) -> datetime | None:
        """The earliest time a timer or a waiting task becomes due."""
        found = [
            self.read_time(self._read(name, ()).fetchone()[0])
            for name in ("next_timer", "next_task")
        ]
        return min((f for f in found if f is not None), default=None)


def _nothing() -> None:
    """No statements to wait for (SQLite runs each as it is sent)."""


def _context_json(context: dict[str, Any]) -> str:
    """The context as stored; ContextTooLarge before anything is written if it is too big."""
    text = _dumps(context)
    if len(text) > MAX_CONTEXT_BYTES:
        raise ContextTooLarge(
            f"the context would be {len(text)} bytes, over the limit of {MAX_CONTEXT_BYTES}"
        )
    return text


def _milliseconds(span: timedelta | None) -> int | None:
    return None if span is None else round(span.total_seconds() * 1000)


def _is_integrity_error(exc: Exception) -> bool:
    import sqlite3

    if isinstance(exc, sqlite3.IntegrityError):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.errors.IntegrityError)
