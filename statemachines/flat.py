"""The quick way of an event: a plain transition between two plain top-level states, read
off the transition table (regions.py) once per compiled machine, applied without a `Run`.

A move is plain when the event's first transition from the state has no guard and no
`assign` and goes to another top-level state (or the same) that starts nothing on entry: no
task, call, foreach, timer or `always`, not final, compound, parallel or history. The step
is then known in advance: the state left, the state entered, one history entry. Anything
else returns None, and the full run (run.py) decides; both make the same step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .chart import Chart
from .model import SEPARATOR, State
from .regions import ChartMachine
from .steps import Entry, Snapshot, Status, Step


def plain_source(state: State) -> bool:
    """Whether leaving `state` is only leaving it: a top-level state with nothing inside."""
    return (
        SEPARATOR not in state.path
        and state.kind != "history"
        and state.region is None
        and not state.parallel
        and state.final is None
    )


def plain_target(state: State) -> bool:
    """Whether entering `state` is only entering it: a top-level state that starts nothing."""
    return (
        plain_source(state)
        and state.task is None
        and state.call is None
        and state.foreach is None
        and not state.after
        and not state.always
    )


class FlatMoves:
    """For each (state, external event) whose transition is plain, the state it goes to."""

    def __init__(self, chart: Chart, picker: ChartMachine, reserved: Iterable[str]) -> None:
        self.moves: dict[tuple[str, str], str] = {}
        # A chart with history pseudo-states anywhere gives every exit a history book.
        self.books_history = bool(chart.histories)
        states = chart.states
        excluded = tuple(reserved)
        for event, by_node in picker.table.items():
            # `after:` and `always` triggers are the engine's, and their entries are labelled
            # otherwise (run.py's `fire`).
            if event in excluded or event.startswith(("after:", "always")):
                continue
            for path, candidates in by_node.items():
                source = states.get(path)
                if source is None or not candidates or not plain_source(source):
                    continue
                guard, spec, target = candidates[0]  # without a guard, the one chosen
                if guard is not None or spec.assign or target is None:
                    continue
                entered = states.get(target)
                if entered is not None and plain_target(entered):
                    self.moves[(path, event)] = target

    def send(self, snapshot: Snapshot, event: str, payload: Any) -> Step | None:
        """The step of `event` when its move is plain; None when the full run must decide.
        Reads `snapshot` without changing it: the step shares what it leaves as it was."""
        if snapshot.status != Status.RUNNING or not self.moves:
            return None
        machine = snapshot.machine
        active = machine.get("active")
        if not isinstance(active, dict) or len(active) != 1:
            return None
        ((source, activation),) = active.items()
        target = self.moves.get((source, event))
        if target is None:
            return None
        new = dict(machine)
        # As the run leaves `source`: its foreach book and results go with it.
        for book in ("foreach", "results"):
            kept = machine.get(book)
            if isinstance(kept, dict) and kept:
                inside = source + SEPARATOR
                left = [key for key in kept if key == source or key.startswith(inside)]
                if left:
                    new[book] = {k: v for k, v in kept.items() if k not in left}
        new["active"] = entered = {}
        if self.books_history:
            new.setdefault("history", {})
        new["counter"] = counter = int(machine.get("counter", 0)) + 1
        entered[target] = counter
        new["state"] = target
        return Step(
            new,
            snapshot.context,
            snapshot.status,
            history=[Entry("event", event, source, target, payload)],
            cancelled=[(source, activation)],
            seq=snapshot.seq + 1,
        )
