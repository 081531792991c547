"""The hand-written baseline: one event persisted through SQLModel's ORM, no engine.

Load the row, look the next state up in a dict, update the row, insert a history row,
commit — on the same SQLite settings as the engine (WAL, synchronous=NORMAL).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlmodel import Field, Session, SQLModel, create_engine

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


class RawBaseline:
    """The same work as `Baseline` as SQL text on the driver itself (sqlite3 or psycopg):
    the ceiling for this SQL on this database, with no library in between."""

    def __init__(self, url: str, instances: int) -> None:
        self.postgres = url.startswith("postgresql")
        if self.postgres:
            import psycopg

            self.conn: Any = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
            self.placeholder = "%s"
            lock = " FOR UPDATE"
        else:
            import sqlite3

            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.placeholder = "?"
            lock = ""
        mark = self.placeholder
        cursor = self.conn.cursor()
        cursor.execute(
            "CREATE TABLE raw_instances (id INTEGER PRIMARY KEY, state TEXT, revision INTEGER)"
        )
        cursor.execute(
            "CREATE TABLE raw_history (instance_id INTEGER, seq INTEGER, event TEXT, "
            "from_state TEXT, to_state TEXT, created_at TEXT, PRIMARY KEY (instance_id, seq))"
        )
        for instance_id in range(instances):
            cursor.execute(f"INSERT INTO raw_instances VALUES ({mark}, 'a', 0)", (instance_id,))
        self.conn.commit()
        self.select = f"SELECT state, revision FROM raw_instances WHERE id = {mark}{lock}"
        self.update = (
            f"UPDATE raw_instances SET state = {mark}, revision = {mark} WHERE id = {mark}"
        )
        self.insert = (
            f"INSERT INTO raw_history VALUES ({mark}, {mark}, 'flip', {mark}, {mark}, {mark})"
        )

    def send(self, instance_id: int) -> None:
        cursor = self.conn.cursor()
        if not self.postgres:
            cursor.execute("BEGIN IMMEDIATE")
        cursor.execute(self.select, (instance_id,))
        state, revision = cursor.fetchone()
        cursor.execute(self.update, (NEXT[state], revision + 1, instance_id))
        now = datetime.now(UTC).isoformat()
        cursor.execute(self.insert, (instance_id, revision + 1, state, NEXT[state], now))
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
