"""Loading a definition: its YAML read (`loader`), built (`build`) and checked (`validate`),
every problem reported at once. `statemachines.load` is this module's `load`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from . import validate
from .build import DefinitionBuilder
from .errors import DefinitionError
from .loader import compose, read_source
from .model import Definition


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
