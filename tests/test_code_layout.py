"""The shape of the code, checked by `make lint`: imports run one way and never in a circle,
no module grows past 600 lines, and the formatter lays out all but a few data tables.

Imports are read from the source with `ast`, wherever they are: at module level, inside
functions and under `if TYPE_CHECKING:` alike. A package's `__init__` is a module of its own:
`from . import runtime` in `engine/engine.py` imports `engine.runtime`, while `import engine`
or `from engine import Engine` imports `engine/__init__.py`.
"""

from __future__ import annotations

import ast
import io
import itertools
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("statemachines", "engine", "diagrams")
# What each package may import, itself aside: the language is the bottom layer.
MAY_IMPORT = {
    "statemachines": set(),
    "diagrams": {"statemachines"},
    "engine": {"statemachines", "diagrams"},
}
MAX_LINES = 600
MAX_FORMATTER_OPT_OUTS = 20
OPT_OUT = re.compile(r"#\s*fmt:\s*(skip|off)\b")


def module_files() -> dict[str, Path]:
    """Every module of the three packages by dotted name; `engine/__init__.py` is `engine`."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def imported(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything module `name` imports, relative imports resolved and
    `from package import name` naming the submodule when `name` is one."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}" if origin else alias.name
                yield node.lineno, submodule if submodule in MODULES else origin


def known(target: str) -> str | None:
    """The module of the three packages that importing `target` runs last: `target` itself,
    or the longest of its prefixes that is a module (`a.b` of `import a.b.name`)."""
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: the first line importing it}, within the three packages."""
    graph: dict[str, dict[str, int]] = {name: {} for name in MODULES}
    for name, path in MODULES.items():
        for line, target in imported(name, path):
            module = known(target)
            if module is not None and module != name:
                graph[name].setdefault(module, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle through each strongly connected group of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowest[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                lowest[node] = min(lowest[node], lowest[target])
            elif target in on_stack:
                lowest[node] = min(lowest[node], index[target])
        if lowest[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [cycle_in(graph, group) for group in sorted(groups)]


def cycle_in(graph: dict[str, dict[str, int]], group: list[str]) -> list[str]:
    """The shortest path from the group's first module back to itself, inside the group."""
    start = group[0]
    paths = {start: [start]}
    queue = [start]
    for node in queue:
        for target in sorted(graph[node]):
            if target == start:
                return paths[node] + [start]
            if target in group and target not in paths:
                paths[target] = paths[node] + [target]
                queue.append(target)
    raise AssertionError(f"no cycle through {group}")


def described(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    pairs = itertools.pairwise(cycle)
    steps = [f"{source} (line {graph[source][target]})" for source, target in pairs]
    return " → ".join(steps + [cycle[-1]])


def test_no_import_cycle_between_modules() -> None:
    graph = import_graph()
    found = [described(graph, cycle) for cycle in cycles(graph)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_packages_import_only_the_layers_below_them() -> None:
    """`statemachines` imports neither `diagrams` nor `engine`; `diagrams` never `engine`."""
    offenders = []
    for name, path in MODULES.items():
        package = name.split(".")[0]
        for line, target in imported(name, path):
            top = target.split(".")[0]
            if top in PACKAGES and top != package and top not in MAY_IMPORT[package]:
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not offenders, "\n".join(offenders)


def test_no_module_is_over_600_lines() -> None:
    sizes = {path: len(path.read_text().splitlines()) for path in MODULES.values()}
    too_long = [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path, lines in sizes.items()
        if lines > MAX_LINES
    ]
    assert not too_long, "\n".join(too_long)


def test_the_formatter_lays_out_all_but_a_few_data_tables() -> None:
    """Fewer than 20 `# fmt: skip` (or `# fmt: off`) comments in the three packages."""
    opt_outs = []
    for path in MODULES.values():
        source = io.StringIO(path.read_text())
        for token in tokenize.generate_tokens(source.readline):
            if token.type == tokenize.COMMENT and OPT_OUT.search(token.string):
                opt_outs.append(f"{path.relative_to(ROOT)}:{token.start[0]}")
    assert len(opt_outs) < MAX_FORMATTER_OPT_OUTS, "\n".join(opt_outs)


def test_the_import_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The walk itself: relative, nested and TYPE_CHECKING imports, submodules named by
    `from package import name`, and a package's `__init__` as a module of its own."""
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from . import runtime, Problem\n"
        "from .store import Store\n"
        "import engine\n"
        "if TYPE_CHECKING:\n"
        "    from .worker import Worker\n"
        "def late():\n"
        "    import diagrams.render\n"
    )
    path = tmp_path / "engine.py"
    path.write_text(source)
    targets = [target for _, target in imported("engine.engine", path)]
    assert sorted(filter(None, map(known, targets))) == [
        "diagrams.render",
        "engine",
        "engine",
        "engine.runtime",
        "engine.store",
        "engine.worker",
    ]
    path.write_text(
        "from .. import runtime\nfrom ..records import Instance\nfrom . import guards\n"
    )
    targets = [target for _, target in imported("engine.api.routes", path)]
    assert targets == ["engine.runtime", "engine.records", "engine.api.guards"]
    graph = {
        "engine": {"engine.engine": 1},
        "engine.engine": {"engine.runtime": 3},
        "engine.runtime": {"engine": 5},
        "engine.store": {},
    }
    assert cycles(graph) == [["engine", "engine.engine", "engine.runtime", "engine"]]
    assert described(graph, cycles(graph)[0]) == (
        "engine (line 1) → engine.engine (line 3) → engine.runtime (line 5) → engine"
    )
