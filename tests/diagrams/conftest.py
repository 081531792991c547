"""Fixtures for the diagram tests: the bundled examples, each drawn once per session.

SVGs are drawn with `dot` hidden from PATH, so they come from the in-process WebAssembly Graphviz.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import diagrams
import statemachines
from statemachines import Definition

HERE = Path(__file__).parent


@pytest.fixture
def no_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH holds nothing, so the system `dot` (if any) cannot be found."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    assert shutil.which("dot") is None


@pytest.fixture(scope="session")
def examples() -> dict[str, Definition]:
    """The bundled example definitions by name."""
    loaded = [statemachines.load(path) for path in statemachines.examples()]
    return {definition.name: definition for definition in loaded}


@pytest.fixture(scope="session")
def example_svgs(examples: dict[str, Definition]) -> dict[str, bytes]:
    """Every bundled example drawn as SVG with no system Graphviz on PATH."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", "/nonexistent-turnout-test-path")
        assert shutil.which("dot") is None
        return {name: diagrams.render(definition) for name, definition in examples.items()}


@pytest.fixture(scope="session")
def loan() -> Definition:
    """A 46-state definition (40 at the top level) using every construct."""
    return statemachines.load(HERE / "loan_application.yaml")
