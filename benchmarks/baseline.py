"""The baselines of `Engine.send`: one event persisted through SQLModel's ORM, no engine
(`Baseline`: load the row, look the next state up in a dict, update the row, insert a
history row, commit), and the engine's own statements on the bare driver (`RawBaseline`) —
on the same SQLite settings as the engine (WAL, synchronous=NORMAL).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlmodel import Field, Session, SQLModel, create_engine

from engine import Engine
from engine.changes import NOTIFY_CHANGES
from engine.rows import new_id
from engine.transaction import POSTGRES_SQL, SQLITE_SQL

NEXT = {"a": "b", "b": "a"}


class BaselineInstance(SQLModel, table=True):
    __tablename__ = "baseline_instances"
    id: int = Field(primary_key=True)
    state: str
    revision: int = 0


class BaselineHistory(SQLModel, table=True):
    __tablename__ = "baseline_history"
    id: int | None = Field(default=None, primary_key=True)
    instance_id: int = Field(index=True)
    event: str
    from_state: str
    to_state: str
    created_at: datetime


def sqlite_engine(url: str) -> Any:
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def pragmas(connection: Any, record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    return engine


class Baseline:
    """`instances` rows in a fresh database; `send(i)` flips row i as one transaction."""

    def __init__(self, url: str, instances: int) -> None:
        self.engine = sqlite_engine(url) if url.startswith("sqlite") else create_engine(url)
        SQLModel.metadata.create_all(
            self.engine,
            tables=[BaselineInstance.__table__, BaselineHistory.__table__],  # type: ignore[attr-defined]
        )
        with Session(self.engine) as session:
            session.add_all(BaselineInstance(id=number, state="a") for number in range(instances))
            session.commit()

    def send(self, instance_id: int) -> None:
        with Session(self.engine) as session:
            row = session.get(BaselineInstance, instance_id)
            assert row is not None
            before = row.state
            row.state = NEXT[before]
            row.revision += 1
            session.add(
                BaselineHistory(
                    instance_id=instance_id,
                    event="flip",
                    from_state=before,
                    to_state=row.state,
                    created_at=datetime.now(UTC),
                )
            )
            session.commit()

    def close(self) -> None:
        self.engine.dispose()


def bare_connection(url: str) -> tuple[bool, Any, dict[str, str]]:
    """Whether `url` is PostgreSQL, a driver connection to it in autocommit (BEGIN and COMMIT
    sent as statements, as the engine sends them) and the engine's SQL for that driver."""
    if url.startswith("postgresql"):
        import psycopg

        conn = psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        )
        return True, conn, POSTGRES_SQL
    import sqlite3

    sqlite = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    sqlite.execute("PRAGMA journal_mode = WAL")
    sqlite.execute("PRAGMA synchronous = NORMAL")
    return False, sqlite, SQLITE_SQL


class RawBaseline:
    """The statements `Engine.send` runs for one event, as SQL text on the driver itself
    (sqlite3 or psycopg), on the engine's own tables and indexes: the ceiling for that SQL
    on that database, with no library and no engine in between.

    Per event, like the engine and with the same transaction boundaries: BEGIN (IMMEDIATE on
    SQLite), the locking read of the instance row (every column; FOR UPDATE on PostgreSQL), the
    revision-checked UPDATE of the row (state, active states, machine data, revision, history
    counter, time: the toggle's event leaves the context, which the engine then does not write),
    the history entry, the change-feed row, COMMIT. On PostgreSQL the statements are pipelined
    as the engine's are, in two round trips (BEGIN with the read; the writes with COMMIT and the
    feed's NOTIFY). The statement texts are the engine's (`engine.statements`), the values what
    the engine writes for the toggle: only the Python between them differs.
    """

    def __init__(self, url: str, instances: int) -> None:
        Engine(url).close()  # the engine's tables and indexes (already there on a shared one)
        self.postgres, self.conn, self.sql = bare_connection(url)
        self.ids = [new_id() for _ in range(instances)]
        cursor = self.conn.cursor()
        cursor.execute("BEGIN")
        for instance_id in self.ids:
            now = self._now()
            cursor.execute(
                self.sql["insert_instance"],
                (instance_id, None, "bench_toggle", 1, "a", '["a"]', "running", "{}")
                + (_machine("a", 1), 1, 1, now, now, None),
            )
        cursor.execute("COMMIT")

    def _now(self) -> Any:
        """The time as the engine writes it: naive UTC, as text on SQLite."""
        now = datetime.now(UTC).replace(tzinfo=None)
        return now if self.postgres else now.isoformat(" ", "microseconds")

    def send(self, index: int) -> None:
        if self.postgres:
            with self.conn.pipeline():
                self._send(index)
        else:
            self._send(index)

    def _send(self, index: int) -> None:
        instance_id, sql = self.ids[index], self.sql
        cursor = self.conn.cursor()
        cursor.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
        reading = self.conn.cursor() if self.postgres else cursor
        reading.execute(sql["lock_instance"], (instance_id,))
        row = reading.fetchone()
        state, revision, seq = row[4], row[9], row[10]
        target, now = NEXT[state], self._now()
        cursor.execute(
            sql["update_instance_state_context_kept"],
            (target, f'["{target}"]', _machine(target, revision + 1), revision + 1)
            + (seq + 1, now, instance_id, revision),
        )
        if not self.postgres and cursor.rowcount != 1:
            raise RuntimeError("the revision moved")
        cursor.execute(
            sql["append_history"],
            (instance_id, seq + 1, now, "event", "flip", state, target, "null"),
        )
        cursor.execute(
            sql["insert_change"],
            (instance_id, None, "bench_toggle", 1, revision + 1, "event", "flip", state)
            + (target, "running", seq + 1, seq + 1, now),
        )
        cursor.execute("COMMIT")
        if self.postgres:
            cursor.execute(NOTIFY_CHANGES)

    def close(self) -> None:
        self.conn.close()


def _machine(state: str, counter: int) -> str:
    """The machine data the engine keeps for a toggle instance in `state`, as JSON text."""
    return (
        f'{{"active":{{"{state}":{counter}}},"counter":{counter},"results":{{}},'
        f'"foreach":{{}},"compensations":[],"state":"{state}"}}'
    )
