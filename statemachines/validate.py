"""Rules about a definition's graph: targets, ways out, reachability; each a small function.

Every rule returns problems rather than raising, so one load reports every defect at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator

from .build import suggest
from .errors import Problem
from .model import Definition, Position, Region, State

TASK_LIKE = ("task", "parallel", "foreach")


def _problem(position: Position, message: str, severity: str = "error") -> Problem:
    return Problem(message, position.line, position.column, position.file, severity)


def initial_names_a_state(region: Region) -> Iterator[Problem]:
    if region.initial and region.states and region.initial not in region.names():
        where = f" of branch {region.name!r}" if region.name else ""
        yield _problem(region.position, f"initial state {region.initial!r}{where} names no "
                       f"state{suggest(region.initial, region.names())}")  # fmt: skip


def targets_name_states(region: Region) -> Iterator[Problem]:
    names = region.names()
    known = set(names)
    for state in region.states:
        for trigger, transition in state.all_transitions():
            target = transition.target
            if target is not None and target not in known:
                scope = f" of branch {region.name!r}" if region.name else ""
                yield _problem(transition.position,
                               f"{_trigger(trigger)} of state {state.name!r} goes to {target!r}, "
                               f"which is not a state{scope}{suggest(target, names)}")  # fmt: skip


def every_state_has_a_way_out(region: Region) -> Iterator[Problem]:
    for state in region.states:
        if state.kind == "wait" and not state.on and not state.after and not state.always:
            yield _problem(state.position, f"state {state.name!r} has no way out: give it 'on', "
                           "'after' or 'always', or make it final")  # fmt: skip


def task_states_handle_done(region: Region) -> Iterator[Problem]:
    for state in region.states:
        if state.kind in TASK_LIKE and not state.transitions_for("done"):
            what = {"task": "task", "parallel": "parallel", "foreach": "foreach"}[state.kind]
            events = [event for event, _ in state.on]
            typo = difflib.get_close_matches("done", events, n=1, cutoff=0.6)
            hint = f" — is {typo[0]!r} meant to be 'done'?" if typo else ""
            yield _problem(state.position, f"{what} state {state.name!r} has no 'done' "
                           f"transition (add on: {{done: NEXT_STATE}}){hint}")  # fmt: skip


def done_and_failed_only_on_task_states(region: Region) -> Iterator[Problem]:
    for state in region.states:
        if state.kind in TASK_LIKE:
            continue
        for event, transitions in state.on:
            if event in ("done", "failed"):
                yield _problem(transitions[0].position if transitions else state.position,
                               f"state {state.name!r} has no task, parallel or foreach, so "
                               f"{event!r} never fires there")  # fmt: skip


def last_always_is_unguarded(region: Region) -> Iterator[Problem]:
    for state in region.states:
        if state.kind == "choice" and state.always and state.always[-1].guard is not None:
            yield _problem(state.always[-1].position,
                           f"the last 'always' entry of state {state.name!r} is guarded and the "
                           "state has no other way out; add an unguarded last entry")  # fmt: skip


def states_are_reachable(region: Region) -> Iterator[Problem]:
    if region.initial not in region.names():
        return
    # A misspelt target is already reported; follow it to its likely state so that state
    # is not reported a second time as unreachable.
    reached = _closure(region, {region.initial}, guess=True)
    for state in region.states:
        if state.name not in reached:
            yield _problem(state.position, f"state {state.name!r} cannot be reached from "
                           f"{region.initial!r}")  # fmt: skip


def final_states_reachable(region: Region) -> Iterator[Problem]:
    # Walk the transitions backwards from the final states once, rather than forwards from
    # every state: linear in the size of the graph, which matters for large definitions.
    sources: dict[str, set[str]] = {}
    for state in region.states:
        for _, transition in state.all_transitions():
            if transition.target is not None:
                sources.setdefault(transition.target, set()).add(state.name)
    finishing = {state.name for state in region.states if state.is_final}
    todo = list(finishing)
    while todo:
        for source in sources.get(todo.pop(), ()):
            if source not in finishing:
                finishing.add(source)
                todo.append(source)
    for state in region.states:
        if state.name not in finishing:
            yield _problem(state.position, f"no final state can be reached from state "
                           f"{state.name!r}", severity="warning")  # fmt: skip


RULES: tuple[Callable[[Region], Iterator[Problem]], ...] = (
    initial_names_a_state,
    targets_name_states,
    every_state_has_a_way_out,
    task_states_handle_done,
    done_and_failed_only_on_task_states,
    last_always_is_unguarded,
    states_are_reachable,
    final_states_reachable,
)


def check(definition: Definition) -> list[Problem]:
    """Every problem (errors and warnings) of the definition's graph, region by region."""
    problems: list[Problem] = []
    for region in definition.regions():
        for rule in RULES:
            problems.extend(rule(region))
    return problems


def _closure(region: Region, start: set[str], guess: bool = False) -> set[str]:
    by_name = {state.name: state for state in region.states}
    seen, todo = set(start), list(start)
    while todo:
        state: State | None = by_name.get(todo.pop())
        if state is None:
            continue
        for _, transition in state.all_transitions():
            target = transition.target
            if guess and target is not None and target not in by_name:
                close = difflib.get_close_matches(target, list(by_name), n=1, cutoff=0.6)
                target = close[0] if close else target
            if target and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _trigger(trigger: str) -> str:
    if trigger == "always":
        return "an 'always' transition"
    if trigger.startswith("after:"):
        return f"the timer 'after {trigger[6:]}'"
    return f"event {trigger!r}"
