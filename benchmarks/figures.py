"""A benchmark figure beside its baseline, and how rates are measured (median of repeats)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

REPEATS = 5


@dataclass
class Figure:
    name: str
    unit: str
    value: float
    baseline_name: str
    baseline: float
    target: str
    baseline_unit: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


def shown(value: float) -> str:
    """A figure with as many digits as it needs: 9,300 or 0.238."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def median_rate(run: Callable[[], int], repeats: int = REPEATS) -> float:
    """Median of `repeats` runs of (work done / seconds)."""
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        done = run()
        rates.append(done / (time.perf_counter() - began))
    return statistics.median(rates)
