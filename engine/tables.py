"""The tables of turnout's database, declared with SQLModel.

History is append-only; tasks and timers are the work waiting for workers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from statemachines.model import MAX_NAME_LENGTH, MAX_PATH_LENGTH, MAX_TIMER_KEY_LENGTH


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; stored as naive UTC everywhere."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# Business keys and idempotency keys are kept in columns of this many characters, ids in
# ID_LENGTH (32 hex digits); the engine refuses longer ones before anything is written.
KEY_LENGTH = 200
ID_LENGTH = 32
# A webhook receiver's URL, as the delivery log keeps it.
WEBHOOK_URL_LENGTH = 2000


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


# -- tables ------------------------------------------------------------------------------------
class TurnoutTable(SQLModel, registry=registry()):
    """The base of turnout's tables: a registry and metadata of their own, so that an
    application's `SQLModel.metadata.create_all()` neither sees nor creates them (the engine
    creates and upgrades its own, with their migration record)."""


METADATA: sa.MetaData = TurnoutTable.metadata


class DefinitionTable(TurnoutTable, table=True):
    __tablename__ = "turnout_definitions"
    name: str = Field(primary_key=True, max_length=MAX_NAME_LENGTH)
    version: int = Field(primary_key=True)
    digest: str = Field(max_length=64, index=True)
    source: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(sa_type=UTCDateTime)


class InstanceTable(TurnoutTable, table=True):
    __tablename__ = "turnout_instances"
    __table_args__ = (
        sa.UniqueConstraint("definition", "key", name="uq_turnout_instances_key"),
        # Each listing filter, then the "oldest first" order, so a page is an index range scan.
        # One index for the state filter (every event may move it): with the definition it is
        # a range scan in order; on its own, a range scan and a sort of what matched.
        sa.Index("ix_turnout_instances_state", "state", "definition", "created_at", "id"),
        sa.Index("ix_turnout_instances_definition", "definition", "status", "created_at", "id"),
        sa.Index("ix_turnout_instances_status", "status", "created_at", "id"),
        sa.Index("ix_turnout_instances_by_definition", "definition", "created_at", "id"),
        sa.Index("ix_turnout_instances_created", "created_at", "id"),
        # A caller's children, in the order they were started (added to older databases).
        sa.Index("ix_turnout_instances_parent", "parent_id", "created_at", "id"),
    )
    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    key: str | None = Field(default=None, max_length=KEY_LENGTH)
    definition: str = Field(max_length=MAX_NAME_LENGTH)
    version: int
    state: str = Field(max_length=MAX_PATH_LENGTH)
    active: list[str] = Field(sa_type=_json())
    status: str = Field(max_length=20)
    context: dict[str, Any] = Field(sa_type=_json())
    machine: dict[str, Any] = Field(sa_type=_json())
    revision: int
    history_seq: int
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    # The instance whose call state started this one (None: started by a caller).
    parent_id: str | None = Field(default=None, max_length=ID_LENGTH)


class HistoryTable(TurnoutTable, table=True):
    """Append-only: rows are inserted, never updated or deleted by the engine."""

    __tablename__ = "turnout_history"
    # On SQLite the rows are stored in primary-key order: one page written per entry.
    __table_args__ = ({"sqlite_with_rowid": False},)
    instance_id: str = Field(primary_key=True, max_length=32)
    seq: int = Field(primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    kind: str = Field(max_length=20)
    event: str | None = Field(default=None, max_length=MAX_PATH_LENGTH)
    from_state: str | None = Field(default=None, max_length=MAX_PATH_LENGTH)
    to_state: str | None = Field(default=None, max_length=MAX_PATH_LENGTH)
    data: Any = Field(default=None, sa_type=_json())


class IdempotencyTable(TurnoutTable, table=True):
    __tablename__ = "turnout_idempotency"
    instance_id: str = Field(primary_key=True, max_length=ID_LENGTH)
    key: str = Field(primary_key=True, max_length=KEY_LENGTH)
    at: datetime = Field(sa_type=UTCDateTime)


class TaskState(StrEnum):
    """Where a task is: waiting for a worker, held by one under a lease, answered, or
    dropped with the state entry it belonged to."""

    READY = "ready"
    CLAIMED = "claimed"
    DONE = "done"
    DROPPED = "dropped"


class TaskTable(TurnoutTable, table=True):
    """One task of one state entry; `status` is a TaskState."""

    __tablename__ = "turnout_tasks"
    __table_args__ = (
        sa.Index("ix_turnout_tasks_ready", "status", "ready_at"),
        sa.Index("ix_turnout_tasks_instance", "instance_id", "state_path", "activation"),
    )
    id: str = Field(primary_key=True, max_length=32)
    instance_id: str = Field(max_length=32)
    state_path: str = Field(max_length=MAX_PATH_LENGTH)
    activation: int
    item: int | None = None
    name: str = Field(max_length=MAX_NAME_LENGTH)
    kind: str = Field(max_length=20)
    input: Any = Field(default=None, sa_type=_json())
    attempt: int = 0
    max_attempts: int = 1
    retry: dict[str, Any] = Field(sa_type=_json())
    timeout_ms: int | None = None
    status: str = Field(max_length=20)
    worker: str | None = Field(default=None, max_length=200)
    ready_at: datetime = Field(sa_type=UTCDateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)


class TimerTable(TurnoutTable, table=True):
    __tablename__ = "turnout_timers"
    __table_args__ = (sa.Index("ix_turnout_timers_instance", "instance_id", "state_path"),)
    id: str = Field(primary_key=True, max_length=32)
    instance_id: str = Field(max_length=32)
    state_path: str = Field(max_length=MAX_PATH_LENGTH)
    activation: int
    key: str = Field(max_length=MAX_TIMER_KEY_LENGTH)
    due_at: datetime = Field(sa_type=UTCDateTime, index=True)


class ChangeTable(TurnoutTable, table=True):
    """The outbox: one row per committed revision of an instance, written in the step's own
    transaction. `seq` is taken when the row is written; `position`, the feed's order, is
    given on PostgreSQL once the row has committed (see changes.py); on SQLite, where one
    writer commits at a time, `seq` is the order and `position` stays empty."""

    __tablename__ = "turnout_changes"
    __table_args__ = (
        # Only PostgreSQL places rows (on SQLite `position` stays empty): no index there.
        sa.Index("ix_turnout_changes_position", "position", unique=True).ddl_if(
            dialect="postgresql"
        ),
        sa.Index(
            "ix_turnout_changes_unplaced", "seq", postgresql_where=sa.text("position IS NULL")
        ).ddl_if(dialect="postgresql"),
    )
    seq: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    position: int | None = Field(default=None, sa_type=sa.BigInteger)
    instance_id: str = Field(max_length=ID_LENGTH)
    key: str | None = Field(default=None, max_length=KEY_LENGTH)
    definition: str = Field(max_length=MAX_NAME_LENGTH)
    version: int
    revision: int
    kind: str = Field(max_length=20)
    event: str | None = Field(default=None, max_length=MAX_PATH_LENGTH)
    from_state: str | None = Field(default=None, max_length=MAX_PATH_LENGTH)
    to_state: str = Field(max_length=MAX_PATH_LENGTH)
    status: str = Field(max_length=20)
    first_entry: int
    last_entry: int
    at: datetime = Field(sa_type=UTCDateTime)


class ChangeCursorTable(TurnoutTable, table=True):
    """How far each named reader of the change feed (a relay, the hooks) has gone."""

    __tablename__ = "turnout_change_cursors"
    name: str = Field(primary_key=True, max_length=KEY_LENGTH)
    position: int = Field(sa_type=sa.BigInteger)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class WebhookDeliveryTable(TurnoutTable, table=True):
    """The webhooks' delivery log: one row per change and receiver URL, saying whether the
    change was delivered, is still being tried, or failed for good (then `body` keeps what
    was sent, so it can be sent again after the change itself is pruned)."""

    __tablename__ = "turnout_webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("url", "change_id", name="uq_turnout_webhook_deliveries"),
        sa.Index("ix_turnout_webhook_deliveries_status", "status", "url", "position"),
    )
    seq: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    url: str = Field(max_length=WEBHOOK_URL_LENGTH)
    change_id: str = Field(max_length=ID_LENGTH + 21)
    position: int = Field(sa_type=sa.BigInteger)
    instance_id: str = Field(max_length=ID_LENGTH)
    revision: int
    status: str = Field(max_length=20)
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    body: str | None = Field(default=None, sa_type=sa.Text)
    first_attempt_at: datetime = Field(sa_type=UTCDateTime)
    last_attempt_at: datetime = Field(sa_type=UTCDateTime)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# A schedule's name is part of the business key of every instance it starts.
SCHEDULE_NAME_LENGTH = 100
CRON_LENGTH = 200
TIMEZONE_LENGTH = 64


class ScheduleTable(TurnoutTable, table=True):
    """A schedule: when to start instances of a definition (a cron expression in a time zone,
    or a fixed interval), what to do about overlaps and missed ticks, and where it stands.
    Workers claim a due row under a lock and start its tick's instance in that transaction."""

    __tablename__ = "turnout_schedules"
    __table_args__ = (sa.Index("ix_turnout_schedules_due", "paused", "next_tick_at"),)
    name: str = Field(primary_key=True, max_length=SCHEDULE_NAME_LENGTH)
    definition: str = Field(max_length=MAX_NAME_LENGTH)
    version: int | None = None
    data: dict[str, Any] = Field(sa_type=_json())
    cron: str | None = Field(default=None, max_length=CRON_LENGTH)
    every_seconds: int | None = None
    timezone: str = Field(max_length=TIMEZONE_LENGTH)
    overlap: str = Field(max_length=20)
    catch_up: str = Field(max_length=20)
    paused: bool
    next_tick_at: datetime = Field(sa_type=UTCDateTime)
    last_tick_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_instance_id: str | None = Field(default=None, max_length=ID_LENGTH)
    buffered_tick: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class TaskLimitTable(TurnoutTable, table=True):
    """The flow control of one task name (flow_control.py): its limits, and when the rate
    limit lets the next task start. Claims of the name lock this row."""

    __tablename__ = "turnout_task_limits"
    name: str = Field(primary_key=True, max_length=MAX_NAME_LENGTH)
    concurrency: int | None = None
    rate_count: int | None = None
    rate_period_ms: int | None = None
    partition: str | None = Field(default=None, max_length=500)
    partition_limit: int = 1
    next_start_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class PriorityTable(TurnoutTable, table=True):
    """The priority an instance was started with, when not 0: it orders the claims of the
    flow-controlled tasks of the instance."""

    __tablename__ = "turnout_priorities"
    instance_id: str = Field(primary_key=True, max_length=ID_LENGTH)
    priority: int


definitions_t: sa.Table = DefinitionTable.__table__  # type: ignore[attr-defined]
instances_t: sa.Table = InstanceTable.__table__  # type: ignore[attr-defined]
history_t: sa.Table = HistoryTable.__table__  # type: ignore[attr-defined]
# A history entry's columns in the order `HistoryEntry` takes them.
HISTORY_ENTRY_COLUMNS = tuple(
    history_t.c[name] for name in ("seq", "at", "kind", "event", "from_state", "to_state", "data")
)
idempotency_t: sa.Table = IdempotencyTable.__table__  # type: ignore[attr-defined]
tasks_t: sa.Table = TaskTable.__table__  # type: ignore[attr-defined]
timers_t: sa.Table = TimerTable.__table__  # type: ignore[attr-defined]
changes_t: sa.Table = ChangeTable.__table__  # type: ignore[attr-defined]
change_cursors_t: sa.Table = ChangeCursorTable.__table__  # type: ignore[attr-defined]
webhook_deliveries_t: sa.Table = WebhookDeliveryTable.__table__  # type: ignore[attr-defined]
schedules_t: sa.Table = ScheduleTable.__table__  # type: ignore[attr-defined]
task_limits_t: sa.Table = TaskLimitTable.__table__  # type: ignore[attr-defined]
priorities_t: sa.Table = PriorityTable.__table__  # type: ignore[attr-defined]
TABLES = [
    definitions_t,
    instances_t,
    history_t,
    idempotency_t,
    tasks_t,
    timers_t,
    changes_t,
    change_cursors_t,
    webhook_deliveries_t,
    schedules_t,
    task_limits_t,
    priorities_t,
]
