"""Fixtures of the engine tests: an `Engine` on each database, with the fake clock.

Definitions used by the tests are YAML files in `definitions/`, deployed by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import Engine

DEFINITIONS = Path(__file__).parent / "definitions"


@pytest.fixture
def engine(store_url: str, clock: Any) -> Iterator[Engine]:
    """An `Engine` on an empty database, driven by the fake clock; closed after the test."""
    eng = Engine(store_url, clock=clock)
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture
def deploy(engine: Engine) -> Callable[[str], Any]:
    """Deploy `definitions/<name>.yaml` on the engine fixture; returns the Deployment."""

    def deploy_definition(name: str) -> Any:
        return engine.deploy(DEFINITIONS / f"{name}.yaml")

    return deploy_definition


@pytest.fixture
def deploy_on() -> Callable[[Engine, str], Any]:
    """Deploy `definitions/<name>.yaml` on a given engine (one on the real clock, say)."""

    def deploy_definition(engine: Engine, name: str) -> Any:
        return engine.deploy(DEFINITIONS / f"{name}.yaml")

    return deploy_definition
