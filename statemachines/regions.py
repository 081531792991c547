"""A chart's transitions compiled to one flat `transitions.Machine` over every node's full
name: it picks the transition a trigger fires from one node (file order, the first whose
guard holds) and the full name it goes to.

The machine is the source of truth (validation and the diagrams read the chart it is built
from); every event reads a table derived from it once, at compile time: for each trigger and
node, the transitions the machine would try, in its order, with their guards. Trying them
from the table takes a fraction of a trigger through `transitions` (its event data, its
callbacks and its logging), and a test holds the two to the same choice on generated charts.

This is the only module that touches `transitions`. The hierarchy (which nodes are offered
an event, in which order; what is exited and entered) is `compile.py`'s: a flat machine
over full names keeps the choice of a transition as cheap on a nested chart as on a flat
one, where `transitions`' hierarchical machine resolves nesting on every trigger.
"""

from __future__ import annotations

from typing import Any

from transitions import Machine

from .chart import Chart
from .errors import ExpressionError
from .expressions import Expression
from .model import Transition

# A trigger's transitions from one node, in the order the machine tries them: the guard (None:
# none), the transition and the full name it goes to (None: internal).
Candidates = tuple[tuple[Expression | None, Transition, str | None], ...]
Choice = tuple[Transition | None, str | None, list[ExpressionError]]


class _Cursor:
    """A throwaway model for one trigger: the node, the names guards see, what fired."""

    __slots__ = ("state", "names", "fired", "errors")

    def __init__(self, state: str, names: dict[str, Any]) -> None:
        self.state = state
        self.names = names
        self.fired: Any = None
        self.errors: list[ExpressionError] = []


def _guard(expression: Any) -> Any:
    def holds(event_data: Any) -> bool:
        cursor: _Cursor = event_data.model
        try:
            return bool(expression.holds(cursor.names))
        except ExpressionError as exc:
            cursor.errors.append(exc)
            return False

    return holds


def _record(event_data: Any) -> None:
    event_data.model.fired = event_data.transition


def _trigger(event: str) -> str:
    # Event names may be anything `transitions` reserves for itself (`state` is its model
    # attribute); a space never occurs in an event name, so prefixed names cannot clash.
    return f"on {event}"


class ChartMachine:
    """Every node's transitions in one `transitions.Machine` (no auto transitions, no
    models); a transition whose target names no node (validation says so) is left out."""

    def __init__(self, chart: Chart) -> None:
        paths = list(chart.order)
        self.machine = Machine(
            model=None,
            states=paths or ["_empty"],
            initial=None,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=True,
        )
        self.specs: dict[Any, tuple[Transition, str | None]] = {}
        for path in paths:
            for trigger, spec in chart.node(path).all_transitions():
                target = chart.target(path, spec)
                if spec.target is not None and target is None:
                    continue
                conditions = [_guard(spec.guard)] if spec.guard is not None else []
                key = _trigger(trigger)
                self.machine.add_transition(
                    key, path, target, conditions=conditions, before=[_record]
                )
                # The one just added: the last of this trigger's transitions from this node.
                self.specs[self.machine.events[key].transitions[path][-1]] = (spec, target)
        self.table = self._table()

    def _table(self) -> dict[str, dict[str, Candidates]]:
        """For each trigger, each node's candidates, read off the machine's events."""
        table: dict[str, dict[str, Candidates]] = {}
        for key, event in self.machine.events.items():
            by_node = table.setdefault(key.removeprefix(_trigger("")), {})
            for path, transitions in event.transitions.items():
                chosen = [self.specs[transition] for transition in transitions]
                by_node[path] = tuple((spec.guard, spec, target) for spec, target in chosen)
        return table

    def choose(self, path: str, trigger: str, names: dict[str, Any]) -> Choice:
        """The transition `trigger` fires from the node at `path` (None if none), the full
        name it goes to (None: internal), and guard failures: the first of the table's
        candidates whose guard holds, a guard that fails to evaluate counting as false."""
        by_node = self.table.get(trigger)
        candidates = by_node.get(path) if by_node is not None else None
        if candidates is None:
            return None, None, []
        errors: list[ExpressionError] = []
        for guard, spec, target in candidates:
            if guard is not None:
                try:
                    if not guard.holds(names):
                        continue
                except ExpressionError as exc:
                    errors.append(exc)
                    continue
            return spec, target, errors
        return None, None, errors

    def choose_by_machine(self, path: str, trigger: str, names: dict[str, Any]) -> Choice:
        """`choose` as the `transitions` machine itself makes it: a trigger on a throwaway
        model. What the table must always agree with."""
        event = self.machine.events.get(_trigger(trigger))
        if event is None or path not in event.transitions:
            # Not offered to `transitions` at all: it would log a warning for every node
            # without the trigger, and an event is offered to many such nodes.
            return None, None, []
        cursor = _Cursor(path, names)
        event.trigger(cursor)
        if cursor.fired is None:
            return None, None, cursor.errors
        spec, target = self.specs[cursor.fired]
        return spec, target, cursor.errors
