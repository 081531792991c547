"""turnout's runtime: durable instances on SQL, workers, the command line and the HTTP API.

`Engine` (and `AsyncEngine` for asyncio) is the entry point; every error is importable here.
"""

from __future__ import annotations

from statemachines.errors import (
    DefinitionError,
    DefinitionNotFound,
    DuplicateKey,
    EventRejected,
    InstanceNotFound,
    InvalidInput,
    TaskNotHeld,
    TurnoutError,
    ValueNotStorable,
)

from .async_engine import AsyncEngine
from .engine import Engine
from .records import ClaimedTask, Deployment, HistoryEntry, Instance
from .runtime import TaskNotFound
from .store import DatabaseUnavailable

__all__ = [
    "AsyncEngine",
    "ClaimedTask",
    "DatabaseUnavailable",
    "DefinitionError",
    "DefinitionNotFound",
    "Deployment",
    "DuplicateKey",
    "Engine",
    "EventRejected",
    "HistoryEntry",
    "Instance",
    "InstanceNotFound",
    "InvalidInput",
    "TaskNotFound",
    "TaskNotHeld",
    "TurnoutError",
    "ValueNotStorable",
]
