"""turnout's definition language: load YAML workflows, validate, compile and simulate them.

`load` gives a `Definition`; `simulate` runs one without a database; `compile_definition`
gives the machine the engine runs instances on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from . import validate
from .build import DefinitionBuilder
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
from .loader import compose, read_source
from .model import Definition, Region, Retry, RetryPolicy, State, Transition
from .schema import json_schema
from .simulate import Failure, Run, simulate
from .steps import Snapshot, Status, Step
from .values import storable

EXAMPLES = Path(__file__).parent / "examples"


def load(source: str | Path | Definition) -> Definition:
    """Load a definition from a file path or YAML text; raise DefinitionError with every problem.

    Warnings (states from which no final state can be reached) are in `Definition.warnings`.
    """
    if isinstance(source, Definition):
        return source
    text, file = read_source(source)
    document = compose(text, file)
    builder = DefinitionBuilder(document)
    definition = builder.definition(text)
    problems = document.problems + builder.problems
    if definition is not None:
        problems.extend(validate.check(definition))
    errors = [problem for problem in problems if problem.severity == "error"]
    if errors or definition is None:
        raise DefinitionError(errors)
    warnings = tuple(str(problem) for problem in problems if problem.severity == "warning")
    return dataclasses.replace(definition, warnings=warnings)


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
    "compile_definition",
    "diff_definitions",
    "examples",
    "json_schema",
    "load",
    "simulate",
    "storable",
]
