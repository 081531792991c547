"""`statemachines` is the bottom layer: it imports neither `engine` nor `diagrams`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import statemachines

PACKAGE = Path(statemachines.__file__).parent
FORBIDDEN = ("engine", "diagrams")


def test_importing_statemachines_loads_neither_engine_nor_diagrams() -> None:
    code = (
        "import sys, statemachines\n"
        "statemachines.simulate(statemachines.load(statemachines.examples()[1]))\n"
        "statemachines.json_schema()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('engine', 'diagrams')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_no_statemachines_source_imports_engine_or_diagrams() -> None:
    offenders = []
    for source in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(source.read_text(), str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{source.name}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in FORBIDDEN
            ]
    assert offenders == []
