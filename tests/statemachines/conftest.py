"""Fixtures for the definition-language tests: loading a file of `invalid/` for its problems."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import statemachines
from statemachines import DefinitionError, Problem

HERE = Path(__file__).parent
INVALID = HERE / "invalid"


def problems_of(source: str | Path) -> list[Problem]:
    """The problems loading `source` reports; fails the test if it loads."""
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(source)
    return caught.value.problems


@pytest.fixture
def invalid() -> Callable[[str], list[Problem]]:
    """Load `tests/statemachines/invalid/NAME.yaml` and return its problems."""
    return lambda name: problems_of(INVALID / f"{name}.yaml")
