"""The whole table against another revision, in the same run:
`python -m benchmarks.compare --base REV [--repeat N] [--only SECTION ...]`.

REV is checked out in a temporary git worktree. Each section of `make bench` (see
run_section.py) runs in a subprocess of its own for the base and for this tree in turn, the
one that goes first alternating between repeats, on the same database server (each run makes
its own fresh schemas and files). Every figure is the median of its runs on each side; the
table gives them with their ratio, counted so that above 1 is better whether the figure is a
rate (higher is better) or a time or a size (lower is better), and flags a ratio under
WORSE. Exit status: 0 when no figure is flagged, 1 when one is, 2 on an error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .run_section import sections

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "run_section.py"
WORSE = 0.95  # a figure under this share of its base value is flagged


class CompareError(Exception):
    """What stops the comparison: a revision git does not know, a section that failed."""


def higher_is_better(unit: str) -> bool:
    """Rates ("events/s") are better higher; times and sizes ("s", "ms", "MiB") lower."""
    return unit.endswith("/s")


@dataclass
class Row:
    """One figure on both sides: the values of each run, medians taken when shown."""

    name: str
    unit: str
    base: list[float]
    now: list[float]

    def median(self, values: list[float]) -> float | None:
        known = [value for value in values if not math.isnan(value)]
        return statistics.median(known) if known else None

    @property
    def ratio(self) -> float | None:
        """now against base, above 1 when now is better (see the module)."""
        base, now = self.median(self.base), self.median(self.now)
        if base is None or now is None or base == 0 or now == 0:
            return None
        return now / base if higher_is_better(self.unit) else base / now

    @property
    def worse(self) -> bool:
        ratio = self.ratio
        return ratio is not None and ratio < WORSE


def collect(runs: dict[str, list[list[dict[str, Any]]]]) -> list[Row]:
    """The rows of the table from each side's runs ("base", "now"; each a list of figures as
    run_section writes them), in the order figures first appear. A figure is known by its
    name; the rows beside one value in a section (one per baseline) give one row here."""
    rows: dict[str, Row] = {}
    for side in ("base", "now"):
        for figures in runs.get(side, []):
            seen: set[str] = set()
            for figure in figures:
                name = figure["name"]
                if name in seen:
                    continue
                seen.add(name)
                row = rows.setdefault(name, Row(name, figure["unit"], [], []))
                value = figure["value"]
                getattr(row, side).append(math.nan if value is None else float(value))
    return list(rows.values())


def shown(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(rows: list[Row]) -> list[list[str]]:
    """The printed table: figure | base | now | ratio | flag."""
    lines = [["figure", "base", "now", "ratio", ""]]
    for row in rows:
        ratio = row.ratio
        lines.append(
            [
                f"{row.name} ({row.unit}, {'higher' if higher_is_better(row.unit) else 'lower'}"
                " is better)",
                shown(row.median(row.base)),
                shown(row.median(row.now)),
                "-" if ratio is None else f"{ratio:.3f}x",
                f"WORSE (< {WORSE}x)" if row.worse else "",
            ]
        )
    return lines


def exit_status(rows: list[Row], errors: list[str]) -> int:
    if errors:
        return 2
    return 1 if any(row.worse for row in rows) else 0


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if done.returncode:
        raise CompareError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def run_section(tree: Path, section: str) -> list[dict[str, Any]] | None:
    """The section's figures run in `tree` by a fresh interpreter; None when the tree has no
    such section. CompareError when the run fails."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        environment = dict(os.environ, PYTHONPATH=str(tree))
        code = f"import runpy; runpy.run_path({str(RUNNER)!r}, run_name='__main__')"
        done = subprocess.run(
            [sys.executable, "-c", code, section, out.name],
            cwd=tree,
            env=environment,
            capture_output=True,
            text=True,
        )
        if done.returncode == 3:
            return None
        if done.returncode:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise CompareError(f"{section} failed in {tree}:\n{tail}")
        figures: list[dict[str, Any]] = json.loads(Path(out.name).read_text())
        return figures


def compare(base: Path, now: Path, chosen: list[str], repeat: int) -> tuple[list[Row], list[str]]:
    """Every chosen section run `repeat` times on each side, alternating; the rows, and the
    errors met (a failed section is left out, the others go on)."""
    runs: dict[str, list[list[dict[str, Any]]]] = {"base": [], "now": []}
    errors: list[str] = []
    for section in chosen:
        try:
            found = section_runs(base, now, section, repeat)
        except CompareError as error:
            errors.append(str(error))
            continue
        for side, figures in found.items():
            runs[side].extend(figures)
    return collect(runs), errors


def section_runs(
    base: Path, now: Path, section: str, repeat: int
) -> dict[str, list[list[dict[str, Any]]]]:
    """The section's runs on each side ("base", "now"), none when a tree has no such section."""
    found: dict[str, list[list[dict[str, Any]]]] = {"base": [], "now": []}
    for number in range(repeat):
        order = [("base", base), ("now", now)]
        if number % 2:
            order.reverse()
        for side, tree in order:
            print(f"{section}: {side} ({number + 1}/{repeat}) ...", file=sys.stderr, flush=True)
            figures = run_section(tree, section)
            if figures is None:
                print(f"{section}: not in the {side} tree, left out", file=sys.stderr)
                return {}
            found[side].append(figures)
    return found


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="Each figure of the benchmarks against its value at another revision.",
    )
    parser.add_argument("--base", required=True, help="the revision to compare with")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each section on each side (default 3)"
    )
    parser.add_argument("--only", nargs="+", metavar="SECTION", help="these sections only")
    arguments = parser.parse_args(argv)
    if arguments.repeat < 1:
        parser.error("--repeat must be at least 1")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse(sys.argv[1:] if argv is None else argv)
    known = sections((ROOT / "benchmarks" / "__main__.py").read_text())
    unknown = [name for name in arguments.only or [] if name not in known]
    if unknown:
        print(f"unknown sections: {', '.join(unknown)}; known: {', '.join(known)}")
        return 2
    try:
        commit = git("rev-parse", "--verify", f"{arguments.base}^{{commit}}")
    except CompareError as error:
        print(error)
        return 2
    with tempfile.TemporaryDirectory(prefix="turnout-compare-") as tmp:
        base = Path(tmp) / "base"
        try:
            git("worktree", "add", "--detach", str(base), commit)
        except CompareError as error:
            print(error)
            return 2
        try:
            rows, errors = compare(base, ROOT, arguments.only or known, arguments.repeat)
        finally:
            git("worktree", "remove", "--force", str(base))
    print(f"base {commit[:12]} against this tree, median of {arguments.repeat} runs each")
    widths = [max(len(line[column]) for line in table(rows)) for column in range(5)]
    for line in table(rows):
        print(" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    for failed in errors:
        print(f"error: {failed}")
    return exit_status(rows, errors)


if __name__ == "__main__":
    raise SystemExit(main())
