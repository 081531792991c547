"""turnout's definition language: load YAML workflows, validate, compile and simulate them.

`load` gives a `Definition`; `simulate` runs one without a database; `compile_definition`
gives the machine the engine runs instances on.
"""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each public name and the module it comes from, imported on first use (PEP 562): `turnout
# validate` loads what reading a file takes, not the simulator, the replay of histories or the
# comparison of versions.
_SOURCES = {
    "CompiledMachine": ".compile",
    "compile_definition": ".compile",
    "DefinitionDiff": ".diff",
    "diff_definitions": ".diff",
    "DefinitionError": ".errors",
    "EventRejected": ".errors",
    "ExpressionError": ".errors",
    "InvalidInput": ".errors",
    "Problem": ".errors",
    "TurnoutError": ".errors",
    "ValueNotStorable": ".errors",
    "HistoryReport": ".histories",
    "HistoryResult": ".histories",
    "assert_replays": ".histories",
    "check_histories": ".histories",
    "load": ".loading",
    "Definition": ".model",
    "Region": ".model",
    "Retry": ".model",
    "RetryPolicy": ".model",
    "State": ".model",
    "Transition": ".model",
    "json_schema": ".schema",
    "Failure": ".simulate",
    "Run": ".simulate",
    "simulate": ".simulate",
    "Snapshot": ".steps",
    "Status": ".steps",
    "Step": ".steps",
    "storable": ".values",
}


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'statemachines' has no attribute {name!r}")
    value = getattr(import_module(source, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))


class _Package(ModuleType):
    """This package: importing its submodule `simulate` binds the package's name `simulate`
    to that module, and here it stays the function (as `from .simulate import simulate`
    made it when every name was imported at once)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "simulate" and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
