"""One section of `make bench` alone, its figures written as JSON:
`python -m benchmarks.run_section SECTION OUT.json`.

A section is a function of benchmarks/__main__.py that `main()` calls with the run's working
directory or PostgreSQL URL (see `sections`). `benchmarks.compare` runs this file in a tree
of another revision too, so it imports nothing of the package at the top, and finds the
section's arguments by their names, which have stayed the same across revisions.
"""

from __future__ import annotations

import ast
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The arguments main() gives the sections, by the names of their parameters.
WORKDIR = ("workdir",)
POSTGRES = ("url", "postgres")


def sections(source: str) -> list[str]:
    """The sections `main()` of benchmarks/__main__.py (its `source`) runs, in order: the
    functions it calls with the working directory or the PostgreSQL URL."""
    tree = ast.parse(source)
    main = next(
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"
    )
    calls = sorted(
        (node.lineno, node.col_offset, node.func.id)
        for node in ast.walk(main)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and {arg.id for arg in node.args if isinstance(arg, ast.Name)} & {*WORKDIR, "postgres"}
    )
    return list(dict.fromkeys(name for _, _, name in calls))


def figures_of(result: Any) -> list[dict[str, Any]]:
    """A section's figures as plain dicts, whatever it returns: a Figure, a list of them, or
    (figures, names of what was skipped)."""
    if isinstance(result, tuple):
        result = result[0]
    if not isinstance(result, list):
        result = [result]
    fields = ("name", "unit", "value", "baseline_name", "baseline", "baseline_unit")
    return [{field: getattr(figure, field, None) for field in fields} for figure in result]


def arguments(function: Callable[..., Any], workdir: Path, postgres: str | None) -> list[Any]:
    """The arguments main() would give `function` (an unknown send rate is NaN: it is only
    ever the baseline of a figure)."""
    import inspect

    given: list[Any] = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            break
        if name in WORKDIR:
            given.append(workdir)
        elif name in POSTGRES:
            if name == "url" and not postgres:
                raise SystemExit("this section needs PostgreSQL: set TURNOUT_BENCH_POSTGRES_URL")
            given.append(postgres)
        elif name == "console":
            from rich.console import Console

            given.append(Console(stderr=True))
        elif name == "send_rate":
            given.append(math.nan)
        else:
            raise SystemExit(f"no argument known for {name!r} of {function.__name__}")
    return given


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.run_section SECTION OUT.json", file=sys.stderr)
        return 2
    section, out = argv
    import benchmarks.__main__ as bench

    source = Path(bench.__file__).read_text()
    if section not in sections(source) or not callable(getattr(bench, section, None)):
        print(f"no section {section!r} in this tree's benchmarks", file=sys.stderr)
        return 3
    postgres = os.environ.get("TURNOUT_BENCH_POSTGRES_URL") or os.environ.get(
        "TURNOUT_TEST_POSTGRES_URL"
    )
    function = getattr(bench, section)
    with tempfile.TemporaryDirectory(prefix="turnout-bench-") as tmp:
        result = function(*arguments(function, Path(tmp), postgres))
    Path(out).write_text(json.dumps(figures_of(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
