"""What version v of definition d means here: each deployed version parsed, compiled and its
input validator built once per process, loaded through the transaction that needs it.

A deployed version never changes (a new content is a new version), so what is built for it
is kept for the life of the process. Which version is the latest is asked of the database
every time: another process may have deployed one since.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import jsonschema

import statemachines
from statemachines import CompiledMachine, Definition, compile_definition
from statemachines.errors import DefinitionNotFound, InvalidInput

from .transaction import Transaction


@dataclass(frozen=True)
class Version:
    """One deployed version as the engine runs it."""

    number: int
    definition: Definition
    machine: CompiledMachine
    validator: jsonschema.protocols.Validator | None

    def check_input(self, data: dict[str, Any]) -> None:
        """InvalidInput, listing every mismatch, when `data` does not match the input schema."""
        if self.validator is None:
            return
        errors = sorted(
            self.validator.iter_errors(data), key=lambda e: [*map(str, e.absolute_path)]
        )
        if errors:
            problems = [
                f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors
            ]
            raise InvalidInput(
                f"the data does not match the input schema of {self.definition.name!r}: "
                + "; ".join(problems),
                problems,
            )


def build(number: int, definition: Definition) -> Version:
    """The version `number` of `definition`, compiled, with its input validator."""
    schema = definition.input_schema
    validator = None if schema is None else jsonschema.Draft202012Validator(schema)
    return Version(number, definition, compile_definition(definition), validator)


class Catalog:
    """The deployed versions this process has needed so far, by (name, version)."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, int], Version] = {}
        self._lock = threading.Lock()

    def version(self, tx: Transaction, name: str, number: int | None = None) -> Version:
        """Version `number` of `name` (the latest when None); DefinitionNotFound if it is not
        deployed. Read through `tx`, so that it is the version the transaction sees."""
        if number is None:
            number = tx.latest_version(name)
            if number is None:
                raise DefinitionNotFound(name, None)
        known = self._versions.get((name, number))
        if known is not None:
            return known
        source = tx.definition_source(name, number)
        if source is None:
            raise DefinitionNotFound(name, number)
        built = build(number, statemachines.load(source))
        with self._lock:  # two threads may build it; one of them is kept
            return self._versions.setdefault((name, number), built)

    def known(self, name: str, number: int) -> Version | None:
        """Version `number` of `name` if this process has loaded it already."""
        return self._versions.get((name, number))
