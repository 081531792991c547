"""One region (the top level or a parallel branch) compiled to a `transitions.Machine`.

The machine only picks the transition an event fires from a state: file order, the first
whose guard holds. This is the only module that touches `transitions`; entering, exiting and
everything else the transition causes is `compile.py`'s.
"""

from __future__ import annotations

from typing import Any

from transitions import Machine

from .errors import ExpressionError
from .model import Region, Transition


class _Cursor:
    """A throwaway model for one trigger: the state, the names guards see, what fired."""

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


class RegionMachine:
    """One region compiled to a `transitions.Machine` (no auto transitions, no models)."""

    def __init__(self, region: Region) -> None:
        self.region = region
        self.machine = Machine(
            model=None,
            states=region.names() or ["_empty"],
            initial=region.initial if region.initial in region.names() else None,
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=True,
        )
        self.specs: dict[Any, Transition] = {}
        names = set(region.names())
        for state in region.states:
            for trigger, spec in state.all_transitions():
                if spec.target is not None and spec.target not in names:
                    continue
                conditions = [_guard(spec.guard)] if spec.guard is not None else []
                key = _trigger(trigger)
                self.machine.add_transition(
                    key, state.name, spec.target, conditions=conditions, before=[_record]
                )
                # The one just added: the last of this event's transitions from this state.
                self.specs[self.machine.events[key].transitions[state.name][-1]] = spec

    def choose(
        self, state: str, trigger: str, names: dict[str, Any]
    ) -> tuple[Transition | None, list[ExpressionError]]:
        """The transition `trigger` fires from `state` (None if none), and guard failures."""
        event = self.machine.events.get(_trigger(trigger))
        if event is None:
            return None, []
        cursor = _Cursor(state, names)
        event.trigger(cursor)
        spec = self.specs.get(cursor.fired) if cursor.fired is not None else None
        return spec, cursor.errors
