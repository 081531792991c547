"""turnout's runtime: durable instances on SQL, workers, the command line and the HTTP API.

`Engine` (and `AsyncEngine` for asyncio) is the entry point; every error is importable here.
"""

from __future__ import annotations

from statemachines.errors import (
    ConcurrentUpdate,
    Conflict,
    ContextTooLarge,
    DatabaseUnavailable,
    DefinitionError,
    DefinitionNotFound,
    DiagramTooLarge,
    DuplicateKey,
    EventRejected,
    ExpressionError,
    InstanceNotFound,
    InvalidInput,
    NotFound,
    RedriveRefused,
    RenderError,
    ResetRefused,
    SchemaMismatch,
    SchemaOutdated,
    TaskNotFound,
    TaskNotHeld,
    TurnoutError,
    UnknownState,
    UsageError,
    ValueNotStorable,
)
from statemachines.migration_plan import MigrationPlan

from .async_engine import AsyncEngine
from .changes import Change
from .engine import Engine
from .flow_control import TaskLimit
from .handlers import TaskContext
from .hooks import HookContext
from .migration_result import MigrationResult
from .records import (
    ClaimedTask,
    Deployment,
    EventOutcome,
    HistoryEntry,
    InputMismatch,
    Instance,
    RedriveOutcome,
    TaskFailure,
)
from .retention import ArchivedInstance, PurgeResult, read_archive
from .schedule_times import Schedule, ScheduleExists, ScheduleNotFound
from .versions import VersionDiff

__all__ = [
    "ArchivedInstance",
    "AsyncEngine",
    "Change",
    "ClaimedTask",
    "ConcurrentUpdate",
    "Conflict",
    "ContextTooLarge",
    "DatabaseUnavailable",
    "DefinitionError",
    "DefinitionNotFound",
    "Deployment",
    "DiagramTooLarge",
    "DuplicateKey",
    "Engine",
    "EventOutcome",
    "EventRejected",
    "ExpressionError",
    "HistoryEntry",
    "HookContext",
    "InputMismatch",
    "Instance",
    "InstanceNotFound",
    "InvalidInput",
    "MigrationPlan",
    "MigrationResult",
    "PurgeResult",
    "NotFound",
    "RedriveOutcome",
    "RedriveRefused",
    "RenderError",
    "ResetRefused",
    "Schedule",
    "ScheduleExists",
    "ScheduleNotFound",
    "SchemaMismatch",
    "SchemaOutdated",
    "TaskNotFound",
    "TaskContext",
    "TaskFailure",
    "TaskLimit",
    "TaskNotHeld",
    "TurnoutError",
    "UnknownState",
    "UsageError",
    "ValueNotStorable",
    "VersionDiff",
    "read_archive",
]
