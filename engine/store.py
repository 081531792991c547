"""The database: table definitions (SQLModel) and every SQL statement the engine runs.

Nothing else in turnout talks to the database. Writes run in explicit transactions: `BEGIN
IMMEDIATE` on SQLite (one writer at a time, waiting on a busy timeout instead of failing),
row locks with `FOR UPDATE` and claims with `FOR UPDATE SKIP LOCKED` on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import select
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uuid6
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

from statemachines import DuplicateKey, InvalidInput, TaskOrder, TimerOrder, TurnoutError

from .records import HistoryEntry
from .tables import (
    TABLES,
    definitions_t,
    history_t,
    instances_t,
    tasks_t,
)

BUSY_TIMEOUT_SECONDS = 60  # how long an SQLite write waits for another process's lock
READ_BUSY_TIMEOUT_SECONDS = 5  # and a read (rare in WAL mode: reads do not wait for writes)
LAST_ERROR_WINDOW = 1000  # history entries looked through for an instance's last error
_PG_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE


class DatabaseUnavailable(TurnoutError):
    """The database cannot be reached, cannot be used, or refused the operation.

    `outcome_unknown` is False when the failure came before the commit was sent: the call
    changed nothing, and retrying it is safe. It is True when the connection was lost with
    the commit in flight: the change may or may not have committed, and only a retry that is
    idempotent is safe (an event with an idempotency key; a start with a business key, which
    raises DuplicateKey if the first one committed, so `get_by_key` finds it).
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        self.outcome_unknown = outcome_unknown
        outcome = ("the outcome is unknown: the change may have committed; retry only with a "
                   "business key or an idempotency key" if outcome_unknown
                   else "nothing was changed")  # fmt: skip
        super().__init__(f"{message} ({outcome})")


MAX_CONTEXT_BYTES = 4_000_000
PARKED_CONNECTIONS = 4  # of the pool's 5: deploys and listings take theirs from the pool


class ContextTooLarge(InvalidInput):
    """An operation would grow an instance's context past MAX_CONTEXT_BYTES; nothing of it is
    written (an event is refused, a task result fails its attempt)."""


class ConcurrentUpdate(TurnoutError):
    """An instance changed between reading and writing it (the caller retries)."""


@dataclass
class _Outcome:
    """How far a transaction got: `unknown` once its COMMIT may have reached the server;
    `wait`, how long SQLite was told to wait for a lock at that point."""

    unknown: bool = False
    wait: float = 0.0


# -- rows as the engine sees them --------------------------------------------------------------
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


_INSTANCE_COLUMNS = [c for c in instances_t.c]
_TASK_COLUMNS = [c for c in tasks_t.c if c.name != "created_at"]


def _instance(row: Any) -> InstanceRow:
    return InstanceRow(*row)


def _task(row: Any) -> TaskRow:
    return TaskRow(*row)


def new_id() -> str:
    """A new row id: a UUIDv7 as 32 hex digits. Ids made later sort later, so new rows go
    to the end of the primary-key index instead of to random pages of it (a start writes
    several pages fewer), and rows made in the same instant list in the order made.
    """
    return uuid6.uuid7().hex


# -- one transaction ---------------------------------------------------------------------------
_INSTANCE_FIELDS = (
    "id, key, definition, version, state, active, status, context, machine, "
    "revision, history_seq, created_at, updated_at"
)
_TASK_FIELDS = (
    "id, instance_id, state_path, activation, item, name, kind, input, attempt, "
    "max_attempts, retry, timeout_ms, status, worker, ready_at, claimed_at, "
    "lease_until"
)
_TIMER_FIELDS = "id, instance_id, state_path, activation, key, due_at"
SQL = {
    "lock_instance": f"SELECT {_INSTANCE_FIELDS} FROM turnout_instances WHERE id = ?",
    "insert_instance": f"INSERT INTO turnout_instances ({_INSTANCE_FIELDS}) "
                       "VALUES (?, ?, ?, ?, ?, ?j, ?, ?j, ?j, ?, ?, ?, ?)",
    # Four forms of the update: SQLite rewrites the index entries of every column in SET,
    # so state and status are only set when they change.
    "update_instance": "UPDATE turnout_instances SET active = ?j, context = ?j, machine = ?j, "
                       "revision = ?, history_seq = ?, updated_at = ? "
                       "WHERE id = ? AND revision = ?",
    "update_instance_state": "UPDATE turnout_instances SET state = ?, active = ?j, context = ?j, "
                             "machine = ?j, revision = ?, history_seq = ?, updated_at = ? "
                             "WHERE id = ? AND revision = ?",
    "update_instance_status": "UPDATE turnout_instances SET status = ?, active = ?j, "
                              "context = ?j, machine = ?j, revision = ?, history_seq = ?, "
                              "updated_at = ? WHERE id = ? AND revision = ?",
    "update_instance_state_status": "UPDATE turnout_instances SET state = ?, status = ?, "
                                    "active = ?j, context = ?j, machine = ?j, revision = ?, "
                                    "history_seq = ?, updated_at = ? "
                                    "WHERE id = ? AND revision = ?",
    "lock_instance_of_task": f"SELECT {_INSTANCE_FIELDS} FROM turnout_instances WHERE id = "
                             "(SELECT instance_id FROM turnout_tasks WHERE id = ?)",
    "latest_version": "SELECT MAX(version) FROM turnout_definitions WHERE name = ?",
    "find_by_key": "SELECT id FROM turnout_instances WHERE definition = ? AND key = ?",
    "append_history": "INSERT INTO turnout_history (instance_id, seq, at, kind, event, "
                      "from_state, to_state, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?j)",
    "seen_idempotency": "SELECT 1 FROM turnout_idempotency WHERE instance_id = ? AND key = ?",
    "remember_idempotency": "INSERT INTO turnout_idempotency (instance_id, key, at) "
                            "VALUES (?, ?, ?)",
    "insert_task": f"INSERT INTO turnout_tasks ({_TASK_FIELDS}, created_at) VALUES "
                   "(?, ?, ?, ?, ?, ?, ?, ?j, ?, ?, ?j, ?, ?, ?, ?, ?, ?, ?)",
    "insert_timer": f"INSERT INTO turnout_timers ({_TIMER_FIELDS}) VALUES (?, ?, ?, ?, ?, ?)",
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
}  # fmt: skip
_TASK_UPDATABLE = {"status", "worker", "claimed_at", "lease_until", "ready_at", "attempt"}


def _driver_sql(sql: str, postgres: bool) -> str:
    """Our statements use `?` for a parameter and `?j` for a JSON one; adapt to the driver."""
    if postgres:
        return sql.replace("?j", "%s::jsonb").replace("?", "%s")
    return sql.replace("?j", "?")


SQLITE_SQL = {name: _driver_sql(sql, False) for name, sql in SQL.items()}
POSTGRES_SQL = {name: _driver_sql(sql, True) for name, sql in SQL.items()}
POSTGRES_SQL["lock_task"] += " FOR UPDATE"  # tasks are locked under either kind of locking
OPTIMISTIC_SQL = dict(POSTGRES_SQL)  # no row lock: the revision check of the update decides
POSTGRES_SQL["lock_instance"] += " FOR UPDATE"
POSTGRES_SQL["lock_instance_of_task"] += " FOR UPDATE"


class Transaction:
    """The statements of one database transaction; obtained from `Store.transaction()`.

    Statements go to the driver directly, as SQL text written once: they run for every event
    and every task, where SQLAlchemy's statement building would cost more than the database.
    """

    def __init__(self, cursor: Any, postgres: bool, optimistic: bool = False,
                 sync: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.cursor = cursor
        self.postgres = postgres
        self.optimistic = optimistic
        # On PostgreSQL statements are pipelined: `sync` waits for those sent so far, and is
        # called where a statement's effect must be known before going on (a row count, an
        # integrity error). Under row locks, an instance's revision cannot move once read.
        self._sync = sync or (lambda: None)
        self.sql = (OPTIMISTIC_SQL if optimistic else POSTGRES_SQL) if postgres else SQLITE_SQL

    def _run(self, name: str, params: Sequence[Any]) -> Any:
        self.cursor.execute(self.sql[name], params)
        return self.cursor

    def _read(self, name: str, params: Sequence[Any]) -> Any:
        """Run a statement whose rows are read. On PostgreSQL it gets a cursor of its own: a
        pipelined cursor takes every result sent for it, and an earlier statement's result
        the server sends early (as it does when it shuts down) must not stand in for rows.
        """
        cursor = self.cursor.connection.cursor() if self.postgres else self.cursor
        cursor.execute(self.sql[name], params)
        return cursor

    def _time(self, value: datetime | None) -> Any:
        if value is None:
            return None
        naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return naive if self.postgres else naive.isoformat(" ", "microseconds")

    def _read_time(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)

    def _read_json(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and not self.postgres else value

    def _task(self, row: Any) -> TaskRow:
        rj, rt = self._read_json, self._read_time
        return TaskRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], rj(row[7]),
                       row[8], row[9], rj(row[10]), row[11], row[12], row[13], rt(row[14]),
                       rt(row[15]), rt(row[16]))  # fmt: skip

    # instances
    def lock_instance(self, instance_id: str) -> InstanceRow | None:
        return self._instance(self._read("lock_instance", (instance_id,)).fetchone())

    def lock_task(self, task_id: str) -> tuple[TaskRow | None, InstanceRow | None]:
        """A task and its instance, both locked: the instance first, the order every writer
        follows. On PostgreSQL both statements travel in one round trip."""
        instance_cursor = self._read("lock_instance_of_task", (task_id,))
        task_cursor = self.cursor.connection.cursor()  # its own on SQLite too
        task_cursor.execute(self.sql["lock_task"], (task_id,))
        instance = self._instance(instance_cursor.fetchone())
        task = task_cursor.fetchone()
        return (None if task is None else self._task(task)), instance

    def _instance(self, row: Any) -> InstanceRow | None:
        if row is None:
            return None
        rj, rt = self._read_json, self._read_time
        return InstanceRow(row[0], row[1], row[2], row[3], row[4], rj(row[5]), row[6],
                           rj(row[7]), rj(row[8]), row[9], row[10], rt(row[11]),
                           rt(row[12]))  # fmt: skip

    def insert_instance(self, row: InstanceRow) -> None:
        t = self._time
        try:
            self._run("insert_instance", (
                row.id, row.key, row.definition, row.version, row.state, _dumps(row.active),
                row.status, _context_json(row.context), _dumps(row.machine), row.revision,
                row.history_seq, t(row.created_at), t(row.updated_at)))  # fmt: skip
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
        done = self._run(name, (
            *changed, _dumps(new.active), _context_json(new.context), _dumps(new.machine),
            new.revision, new.history_seq, self._time(new.updated_at), new.id,
            previous.revision))  # fmt: skip
        if self.postgres and not self.optimistic:
            return  # the row is locked FOR UPDATE since it was read: the revision held
        self._sync()
        if done.rowcount != 1:
            raise ConcurrentUpdate(f"instance {new.id} changed under this transaction")

    def latest_version(self, definition: str) -> int | None:
        """The latest deployed version of `definition`, None when there is none."""
        found = self._read("latest_version", (definition,)).fetchone()[0]
        return None if found is None else int(found)

    def find_by_key(self, definition: str, key: str) -> str | None:
        row = self._read("find_by_key", (definition, key)).fetchone()
        return None if row is None else str(row[0])

    def append_history(self, entries: Sequence[HistoryEntry]) -> None:
        t = self._time
        self._run_each("append_history", [
            (e.instance_id, e.seq, t(e.at), e.kind, e.event, e.from_state, e.to_state,
             _dumps(e.data)) for e in entries])  # fmt: skip

    def seen_idempotency(self, instance_id: str, key: str) -> bool:
        return self._read("seen_idempotency", (instance_id, key)).fetchone() is not None

    def remember_idempotency(self, instance_id: str, key: str, now: datetime) -> None:
        self._run("remember_idempotency", (instance_id, key, self._time(now)))

    # tasks and timers
    def insert_tasks(self, instance_id: str, orders: Iterable[TaskOrder], now: datetime,
                     claim: Claim | None = None) -> list[TaskRow]:  # fmt: skip
        """Write new ready tasks; with `claim`, the first one it names is written claimed
        instead (attempt 1), and returned: a claim with no statement of its own."""
        at = self._time(now)
        rows: list[tuple[Any, ...]] = []
        claimed: list[TaskRow] = []
        for o in orders:
            state: tuple[Any, ...]
            task_id, data, retry = new_id(), _dumps(o.input), o.retry.to_json()
            timeout_ms = None if o.timeout is None else round(o.timeout.total_seconds() * 1000)
            attempts = max(1, o.retry.attempts)
            if claim is not None and not claimed and o.name in claim.names:
                # The input as a claim would read it back: decoded from what is stored.
                claimed.append(TaskRow(task_id, instance_id, o.state_path, o.activation, o.item,
                                       o.name, o.kind, json.loads(data), 1, attempts, retry,
                                       timeout_ms, "claimed", claim.worker, now, now,
                                       claim.lease_until))  # fmt: skip
                state = (1, "claimed", claim.worker, at, at, self._time(claim.lease_until))
            else:
                state = (0, "ready", None, at, None, None)
            rows.append((task_id, instance_id, o.state_path, o.activation, o.item, o.name,
                         o.kind, data, state[0], attempts, _dumps(retry), timeout_ms,
                         *state[1:], at))  # fmt: skip
        self._run_each("insert_task", rows)
        return claimed

    def insert_timers(self, instance_id: str, orders: Iterable[TimerOrder]) -> None:
        rows = [(new_id(), instance_id, o.state_path, o.activation, o.key, self._time(o.due))
                for o in orders]  # fmt: skip
        self._run_each("insert_timer", rows)

    def drop_work(self, instance_id: str, tasks_of: Iterable[tuple[str, int]],
                  timers_of: Iterable[tuple[str, int]]) -> None:  # fmt: skip
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

    def claim_tasks(self, names: Sequence[str] | None, worker: str, now: datetime,
                    lease: timedelta, limit: int, instance_id: str | None = None
                    ) -> Callable[[], list[TaskRow]]:  # fmt: skip
        """Take up to `limit` ready tasks (of `names`, or any; of one instance, or any) for
        `worker` until now + lease; call the function returned, once the transaction has
        ended, for them (on PostgreSQL the claim then travels with the COMMIT).

        PostgreSQL skips rows another claimer holds; SQLite has one writer at a time.
        """
        p = "%s" if self.postgres else "?"
        params: list[Any] = [worker, self._time(now), self._time(now + lease), self._time(now)]
        where = f"status = 'ready' AND ready_at <= {p}"
        if instance_id is not None:
            where += f" AND instance_id = {p}"
            params.append(instance_id)
        if names is not None:
            if not names:
                return list
            where += f" AND name IN ({', '.join([p] * len(names))})"
            params.extend(names)
        params.append(limit)
        lock = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        sql = (f"UPDATE turnout_tasks SET status = 'claimed', worker = {p}, claimed_at = {p}, "
               f"lease_until = {p}, attempt = attempt + 1 WHERE id IN (SELECT id FROM "
               f"turnout_tasks WHERE {where} ORDER BY ready_at LIMIT {p}{lock}) "
               f"RETURNING {_TASK_FIELDS}")  # fmt: skip
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
        return [t for t in rows if t.claimed_at is not None and t.timeout is not None
                and t.claimed_at + t.timeout < now]  # fmt: skip

    def update_task(self, task_id: str, **values: Any) -> None:
        unknown = set(values) - _TASK_UPDATABLE
        assert not unknown, f"not a task column to update: {unknown}"
        p = "%s" if self.postgres else "?"
        names = sorted(values)
        params = [self._time(values[n]) if n.endswith(("_at", "_until")) else values[n]
                  for n in names]  # fmt: skip
        sets = ", ".join(f"{n} = {p}" for n in names)
        self.cursor.execute(f"UPDATE turnout_tasks SET {sets} WHERE id = {p}", [*params, task_id])

    def renew_lease(self, task_id: str, worker: str, until: datetime) -> bool:
        done = self._run("renew_lease", (self._time(until), task_id, worker))
        self._sync()
        return bool(done.rowcount == 1)

    def due_timers(self, now: datetime, limit: int) -> list[TimerRow]:
        rows = self._read("due_timers", (self._time(now), limit)).fetchall()
        return [TimerRow(r[0], r[1], r[2], r[3], r[4], self._read_time(r[5])) for r in rows]

    def take_timer(self, timer_id: str) -> bool:
        """Delete a timer about to fire; False when another worker already took it."""
        done = self._run("take_timer", (timer_id,))
        self._sync()
        return bool(done.rowcount == 1)

    def next_due(self) -> datetime | None:
        """The earliest time a timer or a waiting task becomes due."""
        found = [self._read_time(self._read(name, ()).fetchone()[0])
                 for name in ("next_timer", "next_task")]  # fmt: skip
        return min((f for f in found if f is not None), default=None)


# -- the store ---------------------------------------------------------------------------------
class Store:
    """The database of one Engine: its SQLAlchemy engine, its tables, its transactions."""

    def __init__(self, url: str, locking: str = "row",
                 busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:  # fmt: skip
        if locking not in ("row", "optimistic"):
            raise ValueError(f"locking must be 'row' or 'optimistic', not {locking!r}")
        self.optimistic = locking == "optimistic"
        # How long an SQLite transaction waits for a lock another process holds: a write
        # `busy_timeout` seconds, a read no longer than READ_BUSY_TIMEOUT_SECONDS.
        self.write_wait = busy_timeout
        self.read_wait = min(busy_timeout, READ_BUSY_TIMEOUT_SECONDS)
        self.url = make_url(url)
        self.safe_url = self.url.render_as_string(hide_password=True)
        self.postgres = self.url.get_backend_name() == "postgresql"
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._create_engine()
        # SQLite connections between transactions, kept out of the pool: taking one from the
        # pool and giving it back costs more than a short transaction's own statements. A
        # list's pop and append are atomic, so threads share it safely. (PostgreSQL
        # connections always go back to the pool, whose checkout notices a dropped one.)
        self._parked: list[Any] = []
        # Tables are created under the write lock only when one is missing: opening a database
        # to read it must not wait for another process's write lock.
        with self._core() as conn:
            inspector = sa.inspect(conn)
            missing = [t for t in TABLES if not inspector.has_table(t.name)]
        if missing:
            with self._core(write=True) as conn:
                if self.postgres:  # several processes may create the tables at once
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7301)"))
                SQLModel.metadata.create_all(conn, tables=TABLES)

    def _create_engine(self) -> Engine:
        # Every transaction ends in an explicit commit or rollback: no reset needed on return.
        kwargs: dict[str, Any] = {"json_serializer": _dumps, "pool_reset_on_return": None}
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": self.read_wait, "check_same_thread": False}
            if self.url.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool
        try:
            engine = sa.create_engine(self.url, **kwargs)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise DatabaseUnavailable(f"cannot use the database {self.safe_url}: {exc}") from None
        if self.sqlite:
            sa_event.listen(engine, "connect", self._sqlite_connect)
            sa_event.listen(engine, "begin", self._sqlite_begin)
        else:
            sa_event.listen(engine.pool, "checkout", _check_alive)
        return engine

    @contextmanager
    def _translated(self) -> Iterator[_Outcome]:
        """The one place driver errors are translated: the database failing or unusable is
        DatabaseUnavailable, said plainly and telling whether the commit was in flight (the
        block sets `_Outcome.unknown` before it commits); a value the database refuses (too
        long for its column, out of range, a NUL character) is InvalidInput."""
        outcome = _Outcome(wait=self.read_wait)  # a new connection waits as a read does
        try:
            yield outcome
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig else exc
            reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            if _is_data_error(cause):
                raise InvalidInput(f"the database refused a value: {reason}") from None
            if not (isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
                    or _is_operational_error(cause) or _is_unusable_file(cause)):  # fmt: skip
                raise
            raise DatabaseUnavailable(self._why(reason, outcome.wait),
                                      outcome_unknown=outcome.unknown) from None  # fmt: skip

    def _why(self, reason: str, wait: float) -> str:
        """What the database's failure means, said plainly: for an SQLite file, which file and
        what is wrong with it (locked, not a database, not readable or writable)."""
        database = (self.url.database or "").removeprefix("file:").split("?")[0]
        if not self.sqlite or database in ("", ":memory:"):
            return f"the database {self.safe_url} is unavailable: {reason}"
        path = Path(database).absolute()
        folder = path.parent
        beside = f"and SQLite must write {path.name}-wal and {path.name}-shm there"
        if "database is locked" in reason:
            return (f"the database file {path} is locked by another process; gave up after "
                    f"waiting {wait:g} s")  # fmt: skip
        if "file is not a database" in reason:
            return f"the file {path} is not an SQLite database"
        if "disk image is malformed" in reason:
            return f"the database file {path} is damaged ({reason})"
        if "unable to open database file" in reason:
            if not folder.is_dir():
                why = f"its directory {folder} does not exist"
            elif path.exists() and not os.access(path, os.R_OK):
                why = "the file is not readable by this process"
            elif not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
                why = f"it does not exist and its directory {folder} is not writable"
            elif not os.access(folder, os.W_OK | os.X_OK):
                why = f"its directory {folder} is not writable, {beside}"
            else:
                why = reason
            return f"cannot open the database file {path}: {why}"
        if "readonly" in reason:
            if not os.access(path, os.W_OK):
                why = "the file is read-only for this process"
            elif not os.access(folder, os.W_OK | os.X_OK):
                why = f"its directory {folder} is not writable, {beside}"
            else:
                why = "it was opened read-only"
            return f"cannot write the database file {path}: {why}"
        return f"the database {self.safe_url} is unavailable: {reason}"

    @contextmanager
    def transaction(self, read_only: bool = False) -> Iterator[Transaction]:
        """A transaction on a pooled driver connection: committed when the block ends,
        rolled back if it raises. SQLite takes the write lock up front unless `read_only`.
        """
        with self._translated() as outcome:
            if self.postgres:
                raw = self.engine.raw_connection()
                try:
                    yield from self._pipelined(raw.driver_connection, outcome)
                except Exception as exc:
                    # A broken connection must not go back to the pool, nor one whose pipeline
                    # an error aborted: the driver may count statements prepared that the
                    # server skipped ("prepared statement ... does not exist" on the next use).
                    # The engine's own refusals (a rejected event) leave it as good as new.
                    if _is_operational_error(exc) or not isinstance(exc, TurnoutError):
                        raw.invalidate()
                    raise
                finally:
                    raw.close()
                return
            try:
                raw = self._parked.pop()
            except IndexError:
                raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                outcome.wait = self._wait(raw, read_only)
                cursor.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
                try:
                    yield Transaction(cursor, False)
                except BaseException:
                    raw.rollback()
                    raise
                outcome.unknown = not read_only  # a failing COMMIT is not known to undo it
                raw.commit()
            except Exception as exc:
                if _is_operational_error(exc):
                    raw.invalidate()  # a broken connection must not go back to the pool
                    raw.close()
                else:  # rolled back: as good as new
                    self._park(raw)
                raise
            except BaseException:
                raw.close()
                raise
            self._park(raw)

    def _sqlite_connect(self, dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, so writers can take the lock up
        # front. Turning a file to WAL takes its lock: that wait is a read's, not a write's.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {round(self.read_wait * 1000)}")
        record.info["busy_wait"] = self.read_wait
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    def _sqlite_begin(self, conn: Connection) -> None:
        read = conn.get_execution_options().get("turnout_read", False)
        self._wait(conn.connection, read)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    def _wait(self, raw: Any, read: bool) -> float:
        """Set how long the SQLite connection `raw` waits for another process's lock (a
        write longer than a read), when it is not already set so; give that wait."""
        wait = self.read_wait if read else self.write_wait
        if raw.info.get("busy_wait") != wait:
            raw.driver_connection.execute(f"PRAGMA busy_timeout = {round(wait * 1000)}")
            raw.info["busy_wait"] = wait
        return wait

    def _park(self, raw: Any) -> None:
        if len(self._parked) < PARKED_CONNECTIONS:
            self._parked.append(raw)
        else:
            raw.close()

    def _pipelined(self, conn: Any, outcome: _Outcome) -> Iterator[Transaction]:
        """A PostgreSQL transaction in pipeline mode: statements whose results are not needed
        at once travel together, so an event costs two round trips (BEGIN with the first
        read; the writes with COMMIT) rather than one per statement.

        BEGIN and COMMIT are sent as statements, in autocommit mode, because the driver
        waits for the server after a BEGIN of its own. The writes travel with the COMMIT: a
        connection lost in that last round trip leaves the outcome unknown (`outcome`).
        """
        conn.autocommit = True
        try:
            with conn.pipeline() as pipeline:
                cursor = conn.cursor()
                cursor.execute("BEGIN")
                yield Transaction(cursor, True, self.optimistic, pipeline.sync)
                outcome.unknown = True
                cursor.execute("COMMIT")
        except BaseException as exc:
            import psycopg

            lost = _lost(conn)
            # An error the server answered with means the transaction was rolled back.
            outcome.unknown = outcome.unknown and lost
            if lost and isinstance(exc, psycopg.Error) and not _is_operational_error(exc):
                # A connection cut mid-pipeline can surface as a driver error about results
                # rather than about the connection: it is the connection's loss all the same.
                raise psycopg.OperationalError(f"the connection was lost ({exc})") from exc
            raise
        finally:
            if not conn.closed:
                if conn.info.transaction_status == _PG_IDLE:
                    conn.autocommit = False
                else:  # not rolled back: the pool's checkout check discards a closed one
                    conn.close()

    def reading(self) -> AbstractContextManager[Transaction]:
        """A read-only transaction (no write lock on SQLite)."""
        return self.transaction(read_only=True)

    @contextmanager
    def _core(self, write: bool = False) -> Iterator[Connection]:
        """A SQLAlchemy connection in a transaction, for statements built with Core."""
        with self._translated() as outcome, self.engine.connect() as conn:
            outcome.wait = self.write_wait if write else self.read_wait  # set at BEGIN
            if not write:
                conn = conn.execution_options(turnout_read=True)
            with conn.begin():
                yield conn
                outcome.unknown = write  # what is left is the COMMIT

    # definitions
    def save_definition(
        self, name: str, version: int | None, digest: str, source: str, now: datetime
    ) -> tuple[str, int | None, bool]:
        """Store a definition; give (name, version, created), version None when refused.

        The same content as an existing version is that version; new content is the next
        version, unless `version` names an existing version with other content.
        """
        with self._core(write=True) as conn:
            if self.postgres:  # one deployer of a name at a time
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            rows = conn.execute(
                sa.select(definitions_t.c.version, definitions_t.c.digest)
                .where(definitions_t.c.name == name)
                .order_by(definitions_t.c.version)
            ).all()
            by_version = {int(v): d for v, d in rows}
            if version is not None and version in by_version:
                if by_version[version] == digest:
                    return name, version, False
                return name, None, False
            if version is None:
                for existing, existing_digest in reversed(list(by_version.items())):
                    if existing_digest == digest:
                        return name, existing, False
                version = max(by_version, default=0) + 1
            conn.execute(
                definitions_t.insert().values(
                    name=name, version=version, digest=digest, source=source, created_at=now
                )
            )
            return name, version, True

    def load_definition(self, name: str, version: int | None) -> tuple[int, str] | None:
        query = sa.select(definitions_t.c.version, definitions_t.c.source).where(
            definitions_t.c.name == name
        )
        if version is not None:
            query = query.where(definitions_t.c.version == version)
        query = query.order_by(definitions_t.c.version.desc()).limit(1)
        with self._core() as conn:
            row = conn.execute(query).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def list_definitions(self) -> list[tuple[str, int, str]]:
        latest = (
            sa.select(definitions_t.c.name, sa.func.max(definitions_t.c.version).label("v"))
            .group_by(definitions_t.c.name)
            .subquery()
        )
        query = (
            sa.select(definitions_t.c.name, definitions_t.c.version, definitions_t.c.digest)
            .join(
                latest,
                sa.and_(
                    definitions_t.c.name == latest.c.name, definitions_t.c.version == latest.c.v
                ),
            )
            .order_by(definitions_t.c.name)
        )
        with self._core() as conn:
            return [(str(n), int(v), str(d)) for n, v, d in conn.execute(query)]

    # instances
    def get_instance(self, instance_id: str) -> InstanceRow | None:
        with self._core() as conn:
            row = conn.execute(
                sa.select(*_INSTANCE_COLUMNS).where(instances_t.c.id == instance_id)
            ).first()
        return None if row is None else _instance(row)

    def list_instances(
        self,
        *,
        definition: str | None = None,
        state: str | None = None,
        status: str | None = None,
        key: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[InstanceRow]:
        query = sa.select(*_INSTANCE_COLUMNS)
        if definition is not None:
            query = query.where(instances_t.c.definition == definition)
        if state is not None:
            query = query.where(instances_t.c.state == state)
        if status is not None:
            query = query.where(instances_t.c.status == status)
        if key is not None:
            query = query.where(instances_t.c.key == key)
        query = query.order_by(instances_t.c.created_at, instances_t.c.id)
        query = query.limit(limit).offset(offset)
        with self._core() as conn:
            return [_instance(r) for r in conn.execute(query)]

    def count_by_state(self, definition: str) -> dict[str, int]:
        """How many unfinished instances of `definition` are in each top-level state."""
        query = (
            sa.select(instances_t.c.state, sa.func.count())
            .where(instances_t.c.definition == definition,
                   instances_t.c.status.in_(("running", "compensating")))
            .group_by(instances_t.c.state)
        )  # fmt: skip
        with self._core() as conn:
            return {str(s): int(n) for s, n in conn.execute(query)}

    def count_by_status(self, definition: str) -> dict[str, int]:
        """How many instances of `definition` have each status."""
        query = (
            sa.select(instances_t.c.status, sa.func.count())
            .where(instances_t.c.definition == definition)
            .group_by(instances_t.c.status)
        )
        with self._core() as conn:
            return {str(s): int(n) for s, n in conn.execute(query)}

    def transition_counts(self, definition: str) -> dict[tuple[str, str | None, str], int]:
        """How often each (from_state, event, to_state) step was taken by `definition`'s
        instances, counted from their history."""
        h = history_t
        query = (
            sa.select(h.c.from_state, h.c.event, h.c.to_state, sa.func.count())
            .join(instances_t, instances_t.c.id == h.c.instance_id)
            .where(instances_t.c.definition == definition,
                   h.c.kind.in_(("event", "task", "timer", "always")),
                   h.c.from_state.is_not(None), h.c.to_state.is_not(None))
            .group_by(h.c.from_state, h.c.event, h.c.to_state)
        )  # fmt: skip
        with self._core() as conn:
            return {(str(f), e, str(t)): int(n) for f, e, t, n in conn.execute(query)}

    def history(self, instance_id: str, definition: str = "") -> list[HistoryEntry]:
        query = (
            sa.select(
                history_t.c.seq,
                history_t.c.at,
                history_t.c.kind,
                history_t.c.event,
                history_t.c.from_state,
                history_t.c.to_state,
                history_t.c.data,
            )
            .where(history_t.c.instance_id == instance_id)
            .order_by(history_t.c.seq)
        )
        with self._core() as conn:
            return [
                HistoryEntry(*row, instance_id=instance_id, definition=definition)
                for row in conn.execute(query)
            ]

    def last_error(self, instance_id: str, history_seq: int) -> HistoryEntry | None:
        """The newest history entry of the instance that reports an error (an `error`, a
        `retry`, a task's `failed`), looked for among its last LAST_ERROR_WINDOW entries: a
        range of the primary key, read backwards."""
        h = history_t
        query = (
            sa.select(h.c.seq, h.c.at, h.c.kind, h.c.event, h.c.from_state, h.c.to_state,
                      h.c.data)
            .where(h.c.instance_id == instance_id, h.c.seq > history_seq - LAST_ERROR_WINDOW,
                   sa.or_(h.c.kind.in_(("error", "retry")),
                          sa.and_(h.c.kind == "task", h.c.event == "failed")))
            .order_by(h.c.seq.desc())
            .limit(1)
        )  # fmt: skip
        with self._core() as conn:
            row = conn.execute(query).first()
        return None if row is None else HistoryEntry(*row, instance_id=instance_id)

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        with self._core() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        while self._parked:
            self._parked.pop().close()
        self.engine.dispose()


def _context_json(context: dict[str, Any]) -> str:
    """The context as stored; ContextTooLarge before anything is written if it is too big."""
    text = _dumps(context)
    if len(text) > MAX_CONTEXT_BYTES:
        raise ContextTooLarge(f"the context would be {len(text)} bytes, over the limit of "
                              f"{MAX_CONTEXT_BYTES}")  # fmt: skip
    return text


# One encoder for every write: json.dumps would build a new one per call. NaN and infinities
# are refused as PostgreSQL's jsonb refuses them, so SQLite cannot store what PostgreSQL would
# not (every value is made storable before it gets here: `statemachines.values.storable`).
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _is_integrity_error(exc: Exception) -> bool:
    import sqlite3

    if isinstance(exc, sqlite3.IntegrityError):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.errors.IntegrityError)


def _is_data_error(exc: BaseException) -> bool:
    """A value the database refused: too long for its column, out of range, a NUL character."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.DataError)


def _is_unusable_file(exc: BaseException) -> bool:
    """SQLite's answer when the file is something else (a text file, say) or damaged."""
    import sqlite3

    return isinstance(exc, sqlite3.DatabaseError) and (
        "file is not a database" in str(exc) or "disk image is malformed" in str(exc)
    )


def _is_operational_error(exc: Exception) -> bool:
    """A driver error raised on the direct path: the connection or the server failed."""
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


def _lost(conn: Any) -> bool:
    """Roll back what a failed pipelined transaction began; True when the connection is gone.

    The ROLLBACK is sent even when the driver believes no transaction is open: after a
    connection is cut mid-pipeline that belief cannot be trusted, and a failing ROLLBACK
    is what tells a lost connection from a refused statement.
    """
    import psycopg

    if conn.closed:
        return True
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        return True
    return bool(conn.closed)


def _check_alive(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Refuse a pooled PostgreSQL connection the server has dropped, without a round trip.

    An idle connection has nothing to read; if its socket is readable, the server has sent
    its goodbye (a restart, say) or closed it, and the pool opens a fresh one instead.
    """
    try:
        closed = dbapi_connection.closed or dbapi_connection.broken
        readable = closed or bool(select.select([dbapi_connection.fileno()], [], [], 0)[0])
    except (OSError, ValueError):
        readable = True
    if readable:
        raise sa_exc.DisconnectionError("the server closed this connection")
