"""A chart's transitions compiled to one flat `transitions.Machine` over every node's full
name: it picks the transition a trigger fires from one node (file order, the first whose
guard holds) and the full name it goes to.

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
from .model import Transition


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

    def choose(
        self, path: str, trigger: str, names: dict[str, Any]
    ) -> tuple[Transition | None, str | None, list[ExpressionError]]:
        """The transition `trigger` fires from the node at `path` (None if none), the full
        name it goes to (None: internal), and guard failures."""
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
