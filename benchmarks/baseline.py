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
    at: datetime


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
            tables=[BaselineInstance.__table__, BaselineHistory.__table__],  # type: ignore[list-item]
        )
        with Session(self.engine) as session:
            session.add_all(BaselineInstance(id=i, state="a") for i in range(instances))
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
                    at=datetime.now(UTC),
                )
            )
            session.commit()

    def close(self) -> None:
        self.engine.dispose()
