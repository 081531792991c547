"""turnout's runtime: durable instances on SQL, workers, the command line and the HTTP API.

`Engine` (and `AsyncEngine` for asyncio) is the entry point; every error is importable here.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from .ids import AmbiguousId
    from .listing import InstancePage
    from .migration_result import MigrationResult
    from .pending import Pending, PendingTask
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

# Each public name and the module it comes from. They are imported on first use (PEP 562), so
# that importing a light submodule (`engine.cli` for `turnout --help`) does not load the
# database layer, the HTTP API or the definition language with it.
_SOURCES = {
    "ConcurrentUpdate": "statemachines.errors",
    "Conflict": "statemachines.errors",
    "ContextTooLarge": "statemachines.errors",
    "DatabaseUnavailable": "statemachines.errors",
    "DefinitionError": "statemachines.errors",
    "DefinitionNotFound": "statemachines.errors",
    "DiagramTooLarge": "statemachines.errors",
    "DuplicateKey": "statemachines.errors",
    "EventRejected": "statemachines.errors",
    "ExpressionError": "statemachines.errors",
    "InstanceNotFound": "statemachines.errors",
    "InvalidInput": "statemachines.errors",
    "NotFound": "statemachines.errors",
    "RedriveRefused": "statemachines.errors",
    "RenderError": "statemachines.errors",
    "ResetRefused": "statemachines.errors",
    "SchemaMismatch": "statemachines.errors",
    "SchemaOutdated": "statemachines.errors",
    "TaskNotFound": "statemachines.errors",
    "TaskNotHeld": "statemachines.errors",
    "TurnoutError": "statemachines.errors",
    "UnknownState": "statemachines.errors",
    "UsageError": "statemachines.errors",
    "ValueNotStorable": "statemachines.errors",
    "MigrationPlan": "statemachines.migration_plan",
    "AsyncEngine": ".async_engine",
    "Change": ".changes",
    "Engine": ".engine",
    "TaskLimit": ".flow_control",
    "TaskContext": ".handlers",
    "HookContext": ".hooks",
    "AmbiguousId": ".ids",
    "InstancePage": ".listing",
    "Pending": ".pending",
    "PendingTask": ".pending",
    "MigrationResult": ".migration_result",
    "ClaimedTask": ".records",
    "Deployment": ".records",
    "EventOutcome": ".records",
    "HistoryEntry": ".records",
    "InputMismatch": ".records",
    "Instance": ".records",
    "RedriveOutcome": ".records",
    "TaskFailure": ".records",
    "ArchivedInstance": ".retention",
    "PurgeResult": ".retention",
    "read_archive": ".retention",
    "Schedule": ".schedule_times",
    "ScheduleExists": ".schedule_times",
    "ScheduleNotFound": ".schedule_times",
    "VersionDiff": ".versions",
}


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(import_module(source, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))


__all__ = [
    "AmbiguousId",
    "InstancePage",
    "Pending",
    "PendingTask",
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
