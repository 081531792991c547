"""How long `turnout` takes to start: the wall time of `turnout --help`, `turnout validate
FILE` and `turnout simulate FILE -e EVENT`, each the median of RUNS runs of a fresh process,
beside `python -c pass` (the interpreter alone) measured in the same run.

Run alone: `python -m benchmarks.startup`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from .figures import Figure

HERE = Path(__file__).parent
DEFINITION = HERE / "definitions" / "toggle.yaml"
RUNS = 10
TARGET_MS = 300


def turnout_command() -> list[str]:
    """The installed console script beside this interpreter, else the package run by it."""
    script = Path(sys.executable).with_name("turnout")
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]


def median_ms(command: list[str], runs: int = RUNS) -> float:
    """The median wall time of `runs` runs of `command` to its end, in milliseconds."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def startup_figures(runs: int = RUNS) -> list[Figure]:
    turnout = turnout_command()
    bare = median_ms([sys.executable, "-c", "pass"], runs)
    commands = {
        "turnout --help": [*turnout, "--help"],
        "turnout validate FILE": [*turnout, "validate", str(DEFINITION)],
        "turnout simulate FILE -e flip": [*turnout, "simulate", str(DEFINITION), "-e", "flip"],
    }
    figures = [
        Figure(
            f"start-up: {name} (median of {runs})",
            "ms",
            median_ms(command, runs),
            "python -c pass, same run",
            bare,
            f"< {TARGET_MS} ms",
        )
        for name, command in commands.items()
    ]
    language = median_ms([sys.executable, "-c", "import statemachines"], runs)
    figures.append(
        Figure(
            f"start-up: python -c 'import statemachines' (median of {runs})",
            "ms",
            language,
            "python -c pass, same run",
            bare,
            "reported (the floor of validate and simulate)",
        )
    )
    return figures


def main() -> int:
    for figure in startup_figures():
        print(
            f"{figure.name}: {figure.value:.0f} ms  "
            f"({figure.baseline_name}: {figure.baseline:.0f} ms; target {figure.target})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
