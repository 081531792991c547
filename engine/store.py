"""The database: table definitions (SQLModel) and every SQL statement the engine runs.

Nothing else in turnout talks to the database. Writes run in explicit transactions: `BEGIN
IMMEDIATE` on SQLite (one writer at a time, waiting on a busy timeout instead of failing),
row locks with `FOR UPDATE` and claims with `FOR UPDATE SKIP LOCKED` on PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

from statemachines import DuplicateKey, TaskOrder, TimerOrder, TurnoutError

from .records import HistoryEntry
from .tables import (
    TABLES,
    UTCDateTime,
    definitions_t,
    history_t,
    idempotency_t,
    instances_t,
    tasks_t,
    timers_t,
)

BUSY_TIMEOUT_SECONDS = 60


class DatabaseUnavailable(TurnoutError):
    """The database cannot be reached or refused the operation; the call changed nothing.

    Retrying later is safe: every engine operation is one transaction.
    """


class ConcurrentUpdate(TurnoutError):
    """An instance changed between reading and writing it (the caller retries)."""


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


def _new_id() -> str:
    return uuid.uuid4().hex


# -- one transaction ---------------------------------------------------------------------------
class Transaction:
    """The statements of one database transaction; obtained from `Store.transaction()`."""

    def __init__(self, conn: Connection, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres

    # instances
    def lock_instance(self, instance_id: str) -> InstanceRow | None:
        query = sa.select(*_INSTANCE_COLUMNS).where(instances_t.c.id == instance_id)
        if self.postgres:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return None if row is None else _instance(row)

    def insert_instance(self, row: InstanceRow) -> None:
        try:
            self.conn.execute(instances_t.insert().values(**row.__dict__))
        except sa_exc.IntegrityError:
            raise DuplicateKey(row.definition, row.key or row.id) from None

    def update_instance(self, new: InstanceRow, expected_revision: int) -> None:
        values = {k: v for k, v in new.__dict__.items() if k not in ("id", "created_at")}
        done = self.conn.execute(
            instances_t.update()
            .where(instances_t.c.id == new.id, instances_t.c.revision == expected_revision)
            .values(**values)
        )
        if done.rowcount != 1:
            raise ConcurrentUpdate(f"instance {new.id} changed under this transaction")

    def find_by_key(self, definition: str, key: str) -> str | None:
        found = self.conn.execute(
            sa.select(instances_t.c.id).where(
                instances_t.c.definition == definition, instances_t.c.key == key
            )
        ).scalar()
        return None if found is None else str(found)

    def append_history(self, entries: Sequence[HistoryEntry]) -> None:
        if entries:
            self.conn.execute(
                history_t.insert(),
                [
                    {
                        "instance_id": e.instance_id,
                        "seq": e.seq,
                        "at": e.at,
                        "kind": e.kind,
                        "event": e.event,
                        "from_state": e.from_state,
                        "to_state": e.to_state,
                        "data": e.data,
                    }
                    for e in entries
                ],
            )

    def seen_idempotency(self, instance_id: str, key: str) -> bool:
        return (
            self.conn.execute(
                sa.select(idempotency_t.c.key).where(
                    idempotency_t.c.instance_id == instance_id, idempotency_t.c.key == key
                )
            ).first()
            is not None
        )

    def remember_idempotency(self, instance_id: str, key: str, now: datetime) -> None:
        self.conn.execute(idempotency_t.insert().values(instance_id=instance_id, key=key, at=now))

    # tasks and timers
    def insert_tasks(self, instance_id: str, orders: Iterable[TaskOrder], now: datetime) -> None:
        rows = [
            {
                "id": _new_id(),
                "instance_id": instance_id,
                "state_path": o.state_path,
                "activation": o.activation,
                "item": o.item,
                "name": o.name,
                "kind": o.kind,
                "input": o.input,
                "attempt": 0,
                "max_attempts": max(1, o.retry.attempts),
                "retry": o.retry.to_json(),
                "status": "ready",
                "ready_at": now,
                "created_at": now,
                "timeout_ms": None
                if o.timeout is None
                else round(o.timeout.total_seconds() * 1000),
            }
            for o in orders
        ]
        if rows:
            self.conn.execute(tasks_t.insert(), rows)

    def insert_timers(self, instance_id: str, orders: Iterable[TimerOrder]) -> None:
        rows = [
            {
                "id": _new_id(),
                "instance_id": instance_id,
                "state_path": o.state_path,
                "activation": o.activation,
                "key": o.key,
                "due_at": o.due,
            }
            for o in orders
        ]
        if rows:
            self.conn.execute(timers_t.insert(), rows)

    def drop_work(self, instance_id: str, pairs: Iterable[tuple[str, int]]) -> None:
        """Drop the unfinished tasks and the timers of the state entries `pairs`."""
        for path, activation in pairs:
            self.conn.execute(
                tasks_t.update()
                .where(
                    tasks_t.c.instance_id == instance_id,
                    tasks_t.c.state_path == path,
                    tasks_t.c.activation == activation,
                    tasks_t.c.status.in_(("ready", "claimed")),
                )
                .values(status="dropped")
            )
            self.conn.execute(
                timers_t.delete().where(
                    timers_t.c.instance_id == instance_id,
                    timers_t.c.state_path == path,
                    timers_t.c.activation == activation,
                )
            )

    def claim_tasks(
        self, names: Sequence[str] | None, worker: str, now: datetime, lease: timedelta, limit: int
    ) -> list[TaskRow]:
        """Take up to `limit` ready tasks (of `names`, or any) for `worker` until now + lease."""
        candidates = sa.select(tasks_t.c.id).where(
            tasks_t.c.status == "ready", tasks_t.c.ready_at <= now
        )
        if names is not None:
            candidates = candidates.where(tasks_t.c.name.in_(list(names)))
        candidates = candidates.order_by(tasks_t.c.ready_at).limit(limit)
        if self.postgres:
            candidates = candidates.with_for_update(skip_locked=True)
        ids = list(self.conn.execute(candidates).scalars())
        if not ids:
            return []
        claimed = self.conn.execute(
            tasks_t.update()
            .where(tasks_t.c.id.in_(ids), tasks_t.c.status == "ready")
            .values(
                status="claimed",
                worker=worker,
                claimed_at=now,
                lease_until=now + lease,
                attempt=tasks_t.c.attempt + 1,
            )
            .returning(*_TASK_COLUMNS)
        ).all()
        return sorted((_task(r) for r in claimed), key=lambda t: (t.ready_at, t.id))

    def lapsed_tasks(self, now: datetime, limit: int) -> list[TaskRow]:
        """Claimed tasks whose lease has run out (the holder died or hung)."""
        query = (
            sa.select(*_TASK_COLUMNS)
            .where(tasks_t.c.status == "claimed", tasks_t.c.lease_until <= now)
            .order_by(tasks_t.c.lease_until)
            .limit(limit)
        )
        if self.postgres:
            query = query.with_for_update(skip_locked=True)
        return [_task(r) for r in self.conn.execute(query)]

    def timed_out_tasks(self, now: datetime, limit: int) -> list[TaskRow]:
        """Claimed tasks with a timeout whose current attempt has run past it."""
        query = (
            sa.select(*_TASK_COLUMNS)
            .where(tasks_t.c.status == "claimed", tasks_t.c.timeout_ms.is_not(None))
            .order_by(tasks_t.c.claimed_at)
            .limit(limit)
        )
        if self.postgres:
            query = query.with_for_update(skip_locked=True)
        rows = [_task(r) for r in self.conn.execute(query)]
        return [
            t
            for t in rows
            if t.claimed_at is not None and t.timeout is not None and t.claimed_at + t.timeout < now
        ]

    def get_task(self, task_id: str, lock: bool = False) -> TaskRow | None:
        query = sa.select(*_TASK_COLUMNS).where(tasks_t.c.id == task_id)
        if lock and self.postgres:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return None if row is None else _task(row)

    def update_task(self, task_id: str, **values: Any) -> None:
        self.conn.execute(tasks_t.update().where(tasks_t.c.id == task_id).values(**values))

    def renew_lease(self, task_id: str, worker: str, until: datetime) -> bool:
        done = self.conn.execute(
            tasks_t.update()
            .where(
                tasks_t.c.id == task_id, tasks_t.c.worker == worker, tasks_t.c.status == "claimed"
            )
            .values(lease_until=until)
        )
        return bool(done.rowcount == 1)

    def due_timers(self, now: datetime, limit: int) -> list[TimerRow]:
        query = (
            sa.select(*timers_t.c)
            .where(timers_t.c.due_at <= now)
            .order_by(timers_t.c.due_at)
            .limit(limit)
        )
        return [TimerRow(*r) for r in self.conn.execute(query)]

    def take_timer(self, timer_id: str) -> bool:
        """Delete a timer about to fire; False when another worker already took it."""
        done = self.conn.execute(timers_t.delete().where(timers_t.c.id == timer_id))
        return bool(done.rowcount == 1)

    def next_due(self) -> datetime | None:
        """The earliest time a timer or a waiting task becomes due."""
        timer = self.conn.execute(sa.select(sa.func.min(timers_t.c.due_at))).scalar()
        task = self.conn.execute(
            sa.select(sa.func.min(tasks_t.c.ready_at)).where(tasks_t.c.status == "ready")
        ).scalar()
        found = [UTCDateTime().process_result_value(v, None) for v in (timer, task) if v]
        return min((f for f in found if f is not None), default=None)


# -- the store ---------------------------------------------------------------------------------
class Store:
    """The database of one Engine: its SQLAlchemy engine, its tables, its transactions."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.safe_url = self.url.render_as_string(hide_password=True)
        self.postgres = self.url.get_backend_name() == "postgresql"
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._create_engine()
        with self.transaction() as tx:
            if self.postgres:  # several processes may create the tables at once
                tx.conn.execute(sa.text("SELECT pg_advisory_xact_lock(7301)"))
            SQLModel.metadata.create_all(tx.conn, tables=TABLES)

    def _create_engine(self) -> Engine:
        kwargs: dict[str, Any] = {"json_serializer": _dumps}
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False}
            if self.url.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        try:
            engine = sa.create_engine(self.url, **kwargs)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise DatabaseUnavailable(f"cannot use the database {self.safe_url}: {exc}") from None
        if self.sqlite:
            sa_event.listen(engine, "connect", _sqlite_connect)
            sa_event.listen(engine, "begin", _sqlite_begin)
        return engine

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise DatabaseUnavailable(
                f"the database {self.safe_url} is unavailable: {reason}"
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._translated(), self.engine.connect() as conn, conn.begin():
            yield Transaction(conn, self.postgres)

    @contextmanager
    def reading(self) -> Iterator[Transaction]:
        """A read-only transaction (no write lock on SQLite)."""
        with self._translated(), self.engine.connect() as conn:
            conn = conn.execution_options(turnout_read=True)
            with conn.begin():
                yield Transaction(conn, self.postgres)

    # definitions
    def save_definition(
        self, name: str, version: int | None, digest: str, source: str, now: datetime
    ) -> tuple[str, int | None, bool]:
        """Store a definition; give (name, version, created), version None when refused.

        The same content as an existing version is that version; new content is the next
        version, unless `version` names an existing version with other content.
        """
        with self.transaction() as tx:
            if self.postgres:  # one deployer of a name at a time
                tx.conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            rows = tx.conn.execute(
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
            tx.conn.execute(
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
        with self.reading() as tx:
            row = tx.conn.execute(query).first()
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
        with self.reading() as tx:
            return [(str(n), int(v), str(d)) for n, v, d in tx.conn.execute(query)]

    # instances
    def get_instance(self, instance_id: str) -> InstanceRow | None:
        with self.reading() as tx:
            row = tx.conn.execute(
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
        with self.reading() as tx:
            return [_instance(r) for r in tx.conn.execute(query)]

    def count_by_state(self, definition: str) -> dict[str, int]:
        """How many running instances of `definition` are in each top-level state."""
        query = (
            sa.select(instances_t.c.state, sa.func.count())
            .where(instances_t.c.definition == definition)
            .group_by(instances_t.c.state)
        )
        with self.reading() as tx:
            return {str(s): int(n) for s, n in tx.conn.execute(query)}

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
        with self.reading() as tx:
            return [
                HistoryEntry(*row, instance_id=instance_id, definition=definition)
                for row in tx.conn.execute(query)
            ]

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        with self.reading() as tx:
            tx.conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, so writers can take the lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    read = conn.get_execution_options().get("turnout_read", False)
    conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")
