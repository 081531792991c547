"""What changed between two versions of a definition, as data: the states and transitions
added, removed and changed, each change naming its aspects.

A state is known by its full dotted path. A transition is known by its source node (a state,
or a parallel state's region), its trigger (an event, a timer by its name such as `after 2d`,
or `always`) and the full path of its target (None: internal); two transitions alike in all
three are told apart by their order among them. Transitions of one source and trigger left
unmatched on both sides are then paired in file order, so a transition that only moved to
another target is one change (`target`), not a removal and an addition. Descriptions and
positions are not compared: they do not change what an instance does. The definition's
`retention` and `deadline` are: they change how long a finished instance is kept and how
long one may run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .chart import TOP, Chart
from .durations import format_duration
from .model import Definition, Reactions, State, Transition

# What a state is compared by: each aspect's name and how to read it from a state.
STATE_ASPECTS: tuple[tuple[str, Callable[[State], Any]], ...] = (
    ("kind", lambda state: state.kind),
    ("task", lambda state: state.task.name if state.task else None),
    ("input", lambda state: _text(state.task.input) if state.task else None),
    ("result", lambda state: state.task.result if state.task else None),
    ("retry", lambda state: state.task.retry.to_json() if state.task else None),
    ("timeout", lambda state: state.task.timeout if state.task else None),
    ("compensate", lambda state: state.task.compensate if state.task else None),
    ("call", lambda state: state.call),
    ("foreach", lambda state: state.foreach),
    ("final", lambda state: state.final),
    ("error", lambda state: state.error),
    ("initial", lambda state: state.region.initial if state.region else None),
    ("regions", lambda state: tuple(branch.name for branch in state.parallel)),
    ("history", lambda state: state.history),
    ("default", lambda state: _plain(state.default) if state.default else None),
)
TASK_PARTS = frozenset({"input", "result", "retry", "timeout", "compensate"})


@dataclass(frozen=True)
class StateChange:
    """A state in both versions whose `aspects` differ (`kind`, `retry`, `timers`, ...)."""

    path: str
    aspects: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "aspects": list(self.aspects)}


@dataclass(frozen=True)
class TransitionRef:
    """One transition as a diff names it: from `source` on `trigger` to `target` (a full
    path; None: internal), with its `guard` as written (a caught error type as `catch`)."""

    source: str
    trigger: str
    target: str | None
    guard: str | None = None
    catch: str | None = None

    @property
    def label(self) -> str:
        return f"{self.source or '(top)'} --{self.trigger}--> {self.target or '(internal)'}"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "trigger": self.trigger,
            "target": self.target,
            "guard": self.guard,
            "catch": self.catch,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TransitionRef:
        return cls(data["source"], data["trigger"], data["target"], data["guard"], data["catch"])


@dataclass(frozen=True)
class TransitionChange:
    """A transition in both versions (`old`, `new`) whose `aspects` differ: `target`,
    `guard`, `assign`, `catch`."""

    old: TransitionRef
    new: TransitionRef
    aspects: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old.to_json(), "new": self.new.to_json(), "aspects": list(self.aspects)}


@dataclass(frozen=True)
class DefinitionDiff:
    """The difference from an old version of a definition to a new one. Every tuple is
    sorted (states by path, transitions by source, trigger and target), so equal diffs
    print and serialise alike."""

    states_added: tuple[str, ...] = ()
    states_removed: tuple[str, ...] = ()
    states_changed: tuple[StateChange, ...] = ()
    transitions_added: tuple[TransitionRef, ...] = ()
    transitions_removed: tuple[TransitionRef, ...] = ()
    transitions_changed: tuple[TransitionChange, ...] = ()
    initial: tuple[str, str] | None = None  # the top level's initial state: (old, new)
    # The definition's `retention`, as written (None: kept for ever): (old, new).
    retention: tuple[str | None, str | None] | None = None
    # The definition's `deadline`, as written (None: none): (old, new).
    deadline: tuple[str | None, str | None] | None = None

    @property
    def empty(self) -> bool:
        """Whether the two versions behave alike: nothing added, removed or changed."""
        return self == DefinitionDiff()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping; `from_json` gives the diff back."""
        return {
            "initial": None if self.initial is None else list(self.initial),
            "retention": None if self.retention is None else list(self.retention),
            "deadline": None if self.deadline is None else list(self.deadline),
            "states": {
                "added": list(self.states_added),
                "removed": list(self.states_removed),
                "changed": [change.to_json() for change in self.states_changed],
            },
            "transitions": {
                "added": [ref.to_json() for ref in self.transitions_added],
                "removed": [ref.to_json() for ref in self.transitions_removed],
                "changed": [change.to_json() for change in self.transitions_changed],
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DefinitionDiff:
        states, transitions = data["states"], data["transitions"]
        retention = data.get("retention")  # absent from diffs saved before it was compared
        deadline = data.get("deadline")  # likewise
        return cls(
            states_added=tuple(states["added"]),
            states_removed=tuple(states["removed"]),
            states_changed=tuple(
                StateChange(item["path"], tuple(item["aspects"])) for item in states["changed"]
            ),
            transitions_added=tuple(TransitionRef.from_json(item) for item in transitions["added"]),
            transitions_removed=tuple(
                TransitionRef.from_json(item) for item in transitions["removed"]
            ),
            transitions_changed=tuple(
                TransitionChange(
                    TransitionRef.from_json(item["old"]),
                    TransitionRef.from_json(item["new"]),
                    tuple(item["aspects"]),
                )
                for item in transitions["changed"]
            ),
            initial=None if data["initial"] is None else (data["initial"][0], data["initial"][1]),
            retention=None if retention is None else (retention[0], retention[1]),
            deadline=None if deadline is None else (deadline[0], deadline[1]),
        )

    def summary(self) -> str:
        """Counts, then one line per element: `+` added, `-` removed, `~` changed."""
        if self.empty:
            return "no changes"
        states = (len(self.states_added), len(self.states_removed), len(self.states_changed))
        transitions = (
            len(self.transitions_added),
            len(self.transitions_removed),
            len(self.transitions_changed),
        )
        lines = [
            "states: {} added, {} removed, {} changed".format(*states),
            "transitions: {} added, {} removed, {} changed".format(*transitions),
        ]
        if self.initial is not None:
            lines.append(f"~ initial: {self.initial[0]} -> {self.initial[1]}")
        if self.retention is not None:
            old, new = (kept or "(kept for ever)" for kept in self.retention)
            lines.append(f"~ retention: {old} -> {new}")
        if self.deadline is not None:
            old, new = (limit or "(none)" for limit in self.deadline)
            lines.append(f"~ deadline: {old} -> {new}")
        lines.extend(f"+ state {path}" for path in self.states_added)
        lines.extend(f"- state {path}" for path in self.states_removed)
        lines.extend(
            f"~ state {item.path}: {', '.join(item.aspects)}" for item in self.states_changed
        )
        lines.extend(f"+ transition {ref.label}" for ref in self.transitions_added)
        lines.extend(f"- transition {ref.label}" for ref in self.transitions_removed)
        for change in self.transitions_changed:
            was = (
                f" (was {change.old.target or '(internal)'})" if "target" in change.aspects else ""
            )
            lines.append(f"~ transition {change.new.label}{was}: {', '.join(change.aspects)}")
        return "\n".join(lines)


def diff_definitions(old: Definition, new: Definition) -> DefinitionDiff:
    """What changed from `old` to `new` (see the module's documentation for how states and
    transitions are matched)."""
    old_chart, new_chart = Chart(old), Chart(new)
    states_changed = []
    for path in sorted(old_chart.states.keys() & new_chart.states.keys()):
        aspects = _state_aspects(old_chart.states[path], new_chart.states[path])
        if aspects:
            states_changed.append(StateChange(path, aspects))
    added, removed, changed = _transitions(old_chart, new_chart)
    return DefinitionDiff(
        states_added=tuple(sorted(new_chart.states.keys() - old_chart.states.keys())),
        states_removed=tuple(sorted(old_chart.states.keys() - new_chart.states.keys())),
        states_changed=tuple(states_changed),
        transitions_added=tuple(sorted(added, key=_order)),
        transitions_removed=tuple(sorted(removed, key=_order)),
        transitions_changed=tuple(sorted(changed, key=lambda change: _order(change.new))),
        initial=None if old.initial == new.initial else (old.initial, new.initial),
        retention=_durations(old.retention, new.retention),
        deadline=_durations(old.deadline, new.deadline),
    )


def _durations(
    before: timedelta | None, after: timedelta | None
) -> tuple[str | None, str | None] | None:
    """A top-level duration of each version (retention, deadline), when they differ, in
    compact spelling (`30d`)."""
    if before == after:
        return None
    return (
        None if before is None else format_duration(before),
        None if after is None else format_duration(after),
    )


def _state_aspects(old: State, new: State) -> tuple[str, ...]:
    """The aspects that differ; a task gained or lost is `task` alone, not each of its parts."""
    both_tasks = (old.task is None) == (new.task is None)
    aspects = [
        name
        for name, read in STATE_ASPECTS
        if (both_tasks or name not in TASK_PARTS) and read(old) != read(new)
    ]
    if _timers(old) != _timers(new):
        aspects.append("timers")
    return tuple(aspects)


def _timers(node: Reactions) -> list[str]:
    return sorted(timer.label for timer in node.after)


# -- transitions ----------------------------------------------------------------------------
Key = tuple[str, str, str | None]  # source, trigger, target


def _transitions(
    old: Chart, new: Chart
) -> tuple[list[TransitionRef], list[TransitionRef], list[TransitionChange]]:
    old_items, new_items = dict(_keyed(old)), dict(_keyed(new))
    changed = []
    for key in old_items.keys() & new_items.keys():
        aspects = _transition_aspects(old_items[key], new_items[key])
        if aspects:
            changed.append(TransitionChange(old_items[key][0], new_items[key][0], aspects))
    # Left over on both sides for one source and trigger: paired in file order.
    old_left = [old_items[key] for key in old_items if key not in new_items]
    new_left = [new_items[key] for key in new_items if key not in old_items]
    removed: list[TransitionRef] = []
    for item in old_left:
        partner = next(
            (
                other
                for other in new_left
                if other[0].source == item[0].source and other[0].trigger == item[0].trigger
            ),
            None,
        )
        if partner is None:
            removed.append(item[0])
            continue
        new_left.remove(partner)
        changed.append(TransitionChange(item[0], partner[0], _transition_aspects(item, partner)))
    return [item[0] for item in new_left], removed, changed


def _keyed(chart: Chart) -> Iterator[tuple[tuple[Key, int], tuple[TransitionRef, Transition]]]:
    """Every transition of every node by its key and its order among those alike, in file
    order (nodes in document order, then `on`, timers, `always`)."""
    nodes: list[tuple[str, Reactions]] = [(TOP, chart.definition.root)]
    nodes += [(path, chart.node(path)) for path in chart.order]  # in document order
    for source, node in nodes:
        seen: dict[Key, int] = {}
        for trigger, transition in _triggered(node):
            target = None
            if transition.target is not None:
                target = chart.target(source, transition) or transition.target
            key: Key = (source, trigger, target)
            seen[key] = seen.get(key, -1) + 1
            ref = TransitionRef(source, trigger, target, _guard(transition), transition.catch)
            yield (key, seen[key]), (ref, transition)


def _guard(transition: Transition) -> str | None:
    """The guard as written: a caught error type's own test (`failed: {Timeout: ...}`) is
    its `catch`, not part of its guard."""
    text = _text(transition.guard)
    if text is None or transition.catch in (None, "*"):
        return text
    matches = f"event.error.type == {transition.catch!r}"
    if text == matches:
        return None
    return text.removeprefix(f"({matches}) and (").removesuffix(")")


def _triggered(node: Reactions) -> Iterator[tuple[str, Transition]]:
    """(trigger, transition) pairs in file order, a timer named as it reads (`after 2d`)."""
    for trigger, transition in node.all_transitions():
        timer = node.timer(trigger)
        yield (timer.label if timer is not None else trigger), transition


def _transition_aspects(
    old: tuple[TransitionRef, Transition], new: tuple[TransitionRef, Transition]
) -> tuple[str, ...]:
    (old_ref, old_transition), (new_ref, new_transition) = old, new
    aspects = []
    if old_ref.target != new_ref.target:
        aspects.append("target")
    if old_ref.guard != new_ref.guard:
        aspects.append("guard")
    if _plain(old_transition)["assign"] != _plain(new_transition)["assign"]:
        aspects.append("assign")
    if old_ref.catch != new_ref.catch:
        aspects.append("catch")
    return tuple(aspects)


def _order(ref: TransitionRef) -> tuple[str, str, str, str, str]:
    return (ref.source, ref.trigger, ref.target or "", ref.guard or "", ref.catch or "")


def _plain(transition: Transition) -> dict[str, Any]:
    return {
        "target": transition.target,
        "guard": _text(transition.guard),
        "assign": [(key, value.text) for key, value in transition.assign],
        "catch": transition.catch,
    }


def _text(expression: Any) -> str | None:
    return None if expression is None else str(expression.text)


__all__ = ["DefinitionDiff", "StateChange", "TransitionChange", "TransitionRef", "diff_definitions"]
