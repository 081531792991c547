"""turnout's runtime: durable instances on SQL, workers, the command line and the HTTP API.

`Engine` is the entry point; every error class is importable from here.
"""

from __future__ import annotations

from statemachines.errors import (
    DefinitionError,
    DefinitionNotFound,
    DuplicateKey,
    EventRejected,
    InstanceNotFound,
    InvalidInput,
    TurnoutError,
)

__all__ = [
    "DefinitionError", "DefinitionNotFound", "DuplicateKey", "EventRejected",
    "InstanceNotFound", "InvalidInput", "TurnoutError",
]  # fmt: skip
