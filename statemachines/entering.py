"""Entering states by an operator's hand: every active state is left (its work dropped) and
the states named are entered afresh, as a transition from outside would enter them. A reset
moves an instance so within its version (`redrive.reset`); a migration's state map moves it
so into another version (`migration.migration_step`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .chart import TOP, Chart
from .errors import InvalidInput
from .regions import ChartMachine
from .run import Run
from .steps import Entry, Snapshot, Status, Step

# What a failure, a redrive's or a reset's past, leaves in the machine data: gone once the
# instance runs again.
FAILURE_KEYS = ("error", "redrive", "compensating", "outcome")


def enter_states(
    chart: Chart,
    picker: ChartMachine,
    snapshot: Snapshot,
    targets: Iterable[str],
    now: datetime,
    *,
    entry: Entry | None = None,
    context: dict[str, Any] | None = None,
) -> Step:
    """Leave every active state and enter the states at `targets` (full paths of `chart`'s
    states) with the states around them: timers start, tasks are scheduled, children are
    called, `always` runs; a parallel state's other regions start at their initial states.
    `entry` is written first (the operator's record of the move); `context` replaces the
    context. The instance runs again, whatever its status was.

    The snapshot may be another version's (a migration), whose states `chart` need not
    have: they are left all the same. The activation counter, the compensations owed and
    what history states remember of `chart`'s states are kept. InvalidInput when a target
    is not a state of `chart` or two cannot be active together."""
    wanted = list(dict.fromkeys(targets))
    for path in wanted:
        state = chart.states.get(path)
        if state is None or state.kind == "history":
            raise InvalidInput(f"{chart.definition.name!r} has no state {path!r} to enter")
    clash = chart.apart(wanted)
    if clash is not None:
        raise InvalidInput(f"states {clash[0]!r} and {clash[1]!r} cannot be active together")
    machine = {key: value for key, value in snapshot.machine.items() if key not in FAILURE_KEYS}
    if isinstance(machine.get("history"), dict):
        machine["history"] = {
            path: paths
            for path, paths in machine["history"].items()
            if path in chart.states and all(one in chart.states for one in paths)
        }
    kept = snapshot.context if context is None else context
    run = Run(chart, picker, Snapshot(machine, kept, Status.RUNNING, snapshot.seq), now)
    run.exit_inside(TOP, remember=False)
    if entry is not None:
        run.history.append(entry)
    run.enter_targets(TOP, wanted)
    return run.finish()
