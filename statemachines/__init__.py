"""turnout's definition language: load YAML workflows, validate, compile and simulate them.

`load` gives a `Definition`; `simulate` runs one without a database; `compile_definition`
gives the machine the engine runs instances on.
"""

from __future__ import annotations

from pathlib import Path

from .compile import CompiledMachine, compile_definition
from .diff import DefinitionDiff, diff_definitions
from .errors import (
    DefinitionError,
    EventRejected,
    ExpressionError,
    InvalidInput,
    Problem,
    TurnoutError,
    ValueNotStorable,
)
from .histories import HistoryReport, HistoryResult, assert_replays, check_histories
from .loading import load
from .model import Definition, Region, Retry, RetryPolicy, State, Transition
from .schema import json_schema
from .simulate import Failure, Run, simulate
from .steps import Snapshot, Status, Step
from .values import storable

EXAMPLES = Path(__file__).parent / "examples"


def examples() -> list[Path]:
    """The bundled example definitions, sorted by file name."""
    return sorted(EXAMPLES.glob("*.yaml"))


__all__ = [
    "EXAMPLES",
    "CompiledMachine",
    "Definition",
    "DefinitionDiff",
    "DefinitionError",
    "EventRejected",
    "ExpressionError",
    "Failure",
    "HistoryReport",
    "HistoryResult",
    "InvalidInput",
    "Problem",
    "Region",
    "Retry",
    "RetryPolicy",
    "Run",
    "Snapshot",
    "State",
    "Status",
    "Step",
    "Transition",
    "TurnoutError",
    "ValueNotStorable",
    "assert_replays",
    "check_histories",
    "compile_definition",
    "diff_definitions",
    "examples",
    "json_schema",
    "load",
    "simulate",
    "storable",
]
