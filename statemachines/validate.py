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
ENGINE_EVENTS = ("done", "failed")  # the events the engine fires on a task-like state


def _problem(position: Position, message: str, severity: str = "error") -> Problem:
    return Problem(message, position.line, position.column, position.file, severity)


def initial_names_a_state(region: Region) -> Iterator[Problem]:
    if region.initial and region.states and region.initial not in region.names():
        where = f" of branch {region.name!r}" if region.name else ""
        hint = suggest(region.initial, region.names())
        yield _problem(
            region.position, f"initial state {region.initial!r}{where} names no state{hint}"
        )


def targets_name_states(region: Region) -> Iterator[Problem]:
    names = region.names()
    known = set(names)
    for state in region.states:
        for trigger, transition in state.all_transitions():
            target = transition.target
            if target is not None and target not in known:
                scope = f" of branch {region.name!r}" if region.name else ""
                yield _problem(
                    transition.position,
                    f"{_trigger(trigger)} of state {state.name!r} goes to {target!r}, "
                    f"which is not a state{scope}{suggest(target, names)}",
                )


def every_state_has_a_way_out(region: Region) -> Iterator[Problem]:
    for state in region.states:
        if state.kind == "wait" and not state.on and not state.after and not state.always:
            yield _problem(
                state.position,
                f"state {state.name!r} has no way out: give it 'on', "
                "'after' or 'always', or make it final",
            )


def task_states_handle_done(region: Region) -> Iterator[Problem]:
    for state in region.states:
        if state.kind in TASK_LIKE and not state.transitions_for("done"):
            what = {"task": "task", "parallel": "parallel", "foreach": "foreach"}[state.kind]
            events = [event for event, _ in state.on]
            typo = difflib.get_close_matches("done", events, n=1, cutoff=0.6)
            hint = f" — is {typo[0]!r} meant to be 'done'?" if typo else ""
            yield _problem(
                state.position,
                f"{what} state {state.name!r} has no 'done' "
                f"transition (add on: {{done: NEXT_STATE}}){hint}",
            )


def done_and_failed_only_on_task_states(region: Region) -> Iterator[Problem]:
    for state in region.states:
        if state.kind in TASK_LIKE:
            continue
        for event, transitions in state.on:
            if event in ("done", "failed"):
                yield _problem(
                    transitions[0].position if transitions else state.position,
                    f"state {state.name!r} has no task, parallel or foreach, so "
                    f"{event!r} never fires there",
                )


def engine_events_are_not_misspelt(region: Region) -> Iterator[Problem]:
    """A task, parallel or foreach state with an event a few letters from `done` or `failed`
    (`faild`, `fialed`, `Failed`) and no transition for the engine's own: most likely a typo,
    which leaves the state's outcome unhandled. A warning: the event may be meant as sent."""
    for state in region.states:
        if state.kind not in TASK_LIKE:
            continue
        for event, transitions in state.on:
            for engine_event in ENGINE_EVENTS:
                # Other capitals only: `events_are_spelt_one_way` says so.
                if (
                    not state.transitions_for(engine_event)
                    and 0 < _distance(_folded(event), engine_event) <= 2
                ):
                    yield _problem(
                        transitions[0].position if transitions else state.position,
                        f"event {event!r} of {state.kind} state {state.name!r} "
                        f"looks like a misspelt {engine_event!r}: the engine fires "
                        f"{engine_event!r}, and this state has no transition for it",
                        severity="warning",
                    )
                    break


def last_always_is_unguarded(region: Region) -> Iterator[Problem]:
    for state in region.states:
        if state.kind == "choice" and state.always and state.always[-1].guard is not None:
            yield _problem(
                state.always[-1].position,
                f"the last 'always' entry of state {state.name!r} is guarded and the "
                "state has no other way out; add an unguarded last entry",
            )


def states_are_reachable(region: Region) -> Iterator[Problem]:
    if region.initial not in region.names():
        return
    # A misspelt target is already reported; follow it to its likely state so that state
    # is not reported a second time as unreachable.
    reached = _closure(region, {region.initial}, guess=True)
    for state in region.states:
        if state.name not in reached:
            yield _problem(
                state.position, f"state {state.name!r} cannot be reached from {region.initial!r}"
            )


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
            yield _problem(
                state.position,
                f"no final state can be reached from state {state.name!r}",
                severity="warning",
            )


RULES: tuple[Callable[[Region], Iterator[Problem]], ...] = (
    initial_names_a_state,
    targets_name_states,
    every_state_has_a_way_out,
    task_states_handle_done,
    done_and_failed_only_on_task_states,
    last_always_is_unguarded,
    states_are_reachable,
    final_states_reachable,
    engine_events_are_not_misspelt,
)


def check(definition: Definition) -> list[Problem]:
    """Every problem (errors and warnings) of the definition's graph, region by region."""
    problems: list[Problem] = []
    for region in definition.regions():
        for rule in RULES:
            problems.extend(rule(region))
    problems.extend(events_are_spelt_one_way(definition))
    return problems


def events_are_spelt_one_way(definition: Definition) -> Iterator[Problem]:
    """An event spelt with other capitals than elsewhere in the definition, or than an engine
    event (`Done`): events match exactly, so one spelling is most likely a typo. A warning, at
    each spelling other than the engine's or the most used one."""
    uses: dict[str, dict[str, list[Position]]] = {}
    for state in definition.walk():
        for event, transitions in state.on:
            position = transitions[0].position if transitions else state.position
            uses.setdefault(_folded(event), {}).setdefault(event, []).append(position)
    for folded, spellings in uses.items():
        if folded in ENGINE_EVENTS:
            usual = folded  # the engine's spelling is the one meant
        elif len(spellings) > 1:
            usual = max(spellings, key=lambda name: (len(spellings[name]), name == folded))
        else:
            continue
        for event, positions in spellings.items():
            if event == usual:
                continue
            for position in positions:
                yield _problem(
                    position,
                    f"event {event!r} differs from {usual!r} only in "
                    "capitals; events match exactly",
                    severity="warning",
                )


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


def _folded(event: str) -> str:
    return event.casefold()


def _distance(left: str, right: str) -> int:
    """Edits (insert, delete, replace, swap of neighbours) from `left` to `right`; 3 stands
    for three or more."""
    if abs(len(left) - len(right)) > 2:
        return 3
    # rows[row][column]: the edits from left[:row] to right[:column].
    rows = [list(range(len(right) + 1))]
    rows += [[row] + [0] * len(right) for row in range(1, len(left) + 1)]
    for row in range(1, len(left) + 1):
        for column in range(1, len(right) + 1):
            replaced = rows[row - 1][column - 1] + (left[row - 1] != right[column - 1])
            rows[row][column] = min(rows[row - 1][column] + 1, rows[row][column - 1] + 1, replaced)
            swapped = left[row - 2 : row] == right[column - 2 : column][::-1]
            if row > 1 and column > 1 and swapped:
                rows[row][column] = min(rows[row][column], rows[row - 2][column - 2] + 1)
    return min(rows[-1][-1], 3)


def _trigger(trigger: str) -> str:
    if trigger == "always":
        return "an 'always' transition"
    if trigger.startswith("after:"):
        return f"the timer 'after {trigger[6:]}'"
    return f"event {trigger!r}"
