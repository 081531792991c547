"""Rules about a definition's graph: targets, ways out, reachability; each a small function.

Every rule returns problems rather than raising, so one load reports every defect at once.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterator

from .chart import TOP, Chart
from .errors import Problem
from .model import Definition, Position, Region, State
from .reading import suggest

TASK_LIKE = ("task", "call", "parallel", "foreach")
ENGINE_EVENTS = ("done", "failed")  # the events the engine fires on a task-like state


def _problem(position: Position, message: str, severity: str = "error") -> Problem:
    return Problem(message, position.line, position.column, position.file, severity)


def _scope(region: Region) -> str:
    if not region.name:
        return ""
    return f" of state {region.name!r}" if region.compound else f" of branch {region.name!r}"


def initial_names_a_state(region: Region, chart: Chart) -> Iterator[Problem]:
    names = [state.name for state in region.states if state.kind != "history"]
    if region.initial and region.states and region.initial not in names:
        where = _scope(region)
        hint = suggest(region.initial, names)
        yield _problem(
            region.position, f"initial state {region.initial!r}{where} names no state{hint}"
        )


def targets_name_states(region: Region, chart: Chart) -> Iterator[Problem]:
    names = region.names()
    sources: list[tuple[str, str, Region | State]] = [
        (state.path, f"state {state.name!r}", state) for state in region.states
    ]
    if region.path in chart.branches:
        sources.append((region.path, f"branch {region.name!r}", region))
    for path, what, node in sources:
        for trigger, transition in node.all_transitions():
            target = transition.target
            if target is None:
                continue
            resolved = chart.resolve(path, target)
            if resolved.path is not None:
                continue
            if len(resolved.candidates) > 1:
                yield _problem(
                    transition.position,
                    f"{_trigger(trigger, node)} of {what} goes to {target!r}, which names "
                    f"{len(resolved.candidates)} states: "
                    f"{', '.join(map(repr, resolved.candidates))}; write the full name",
                )
                continue
            hint = suggest(target, names) or suggest(target, chart.by_name)
            yield _problem(
                transition.position,
                f"{_trigger(trigger, node)} of {what} goes to {target!r}, "
                f"which is not a state{_scope(region)}{hint}",
            )


def history_stays_inside(region: Region, chart: Chart) -> Iterator[Problem]:
    """A history pseudo-state belongs inside a compound state or a region, and its
    default names a state inside the same parent."""
    for state in region.states:
        if state.kind != "history":
            continue
        if region.path == TOP:
            yield _problem(
                state.position,
                f"history state {state.name!r} is at the top level; a history state "
                "belongs among a compound state's (or a region's) states",
            )
            continue
        if state.default is None or state.default.target is None:
            continue
        target = chart.resolve(state.path, state.default.target).path
        if target is not None and not Chart.inside(target, region.path):
            yield _problem(
                state.default.position,
                f"the default of history state {state.name!r} is {target!r}, which is "
                f"not a state inside {region.path!r}",
            )


def every_state_has_a_way_out(region: Region, chart: Chart) -> Iterator[Problem]:
    # A state inside a compound state or a region leaves by their transitions too.
    if region.path:
        outer = [chart.node(path) for path in (region.path, *chart.ancestors(region.path))]
        if any(node.on or node.after or node.always for node in outer):
            return
    for state in region.states:
        if state.kind == "wait" and not state.on and not state.after and not state.always:
            yield _problem(
                state.position,
                f"state {state.name!r} has no way out: give it 'on', "
                "'after' or 'always', or make it final",
            )


def task_states_handle_done(region: Region, chart: Chart) -> Iterator[Problem]:
    for state in region.states:
        if _fires_done(state) and not state.transitions_for("done"):
            what = state.kind
            events = [event for event, _ in state.on]
            typo = difflib.get_close_matches("done", events, n=1, cutoff=0.6)
            hint = f" — is {typo[0]!r} meant to be 'done'?" if typo else ""
            yield _problem(
                state.position,
                f"{what} state {state.name!r} has no 'done' "
                f"transition (add on: {{done: NEXT_STATE}}){hint}",
            )


def done_and_failed_only_on_task_states(region: Region, chart: Chart) -> Iterator[Problem]:
    for state in region.states:
        if state.kind in TASK_LIKE or state.kind == "compound":
            continue
        timer_fails = any(timer.value is not None for timer in state.after)  # TimerError
        for event, transitions in state.on:
            if event == "done" or (event == "failed" and not timer_fails):
                yield _problem(
                    transitions[0].position if transitions else state.position,
                    f"state {state.name!r} has no task, parallel or foreach, so "
                    f"{event!r} never fires there",
                )


def engine_events_are_not_misspelt(region: Region, chart: Chart) -> Iterator[Problem]:
    """A task, parallel or foreach state with an event a few letters from `done` or `failed`
    (`faild`, `fialed`, `Failed`) and no transition for the engine's own: most likely a typo,
    which leaves the state's outcome unhandled. A warning: the event may be meant as sent."""
    for state in region.states:
        if state.kind not in TASK_LIKE and state.kind != "compound":
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


def last_always_is_unguarded(region: Region, chart: Chart) -> Iterator[Problem]:
    for state in region.states:
        if state.kind == "choice" and state.always and state.always[-1].guard is not None:
            yield _problem(
                state.always[-1].position,
                f"the last 'always' entry of state {state.name!r} is guarded and the "
                "state has no other way out; add an unguarded last entry",
            )


def states_are_reachable(region: Region, chart: Chart) -> Iterator[Problem]:
    # Reported where the region itself is reached: the states inside a state that cannot be
    # reached are not reported a second time.
    if region.initial not in region.names():
        return  # reported as such
    reached = _reached(chart)
    if region.path and region.path not in reached:
        return
    for state in region.states:
        if state.path not in reached and state.kind != "history":
            yield _problem(
                state.position, f"state {state.name!r} cannot be reached from {region.initial!r}"
            )


def final_states_reachable(region: Region, chart: Chart) -> Iterator[Problem]:
    """Among a region's states, those from which no final state of the region can be
    reached, and no transition leaves the region: a warning."""
    if region.path:
        own = chart.node(region.path)
        if own.on or own.after or own.always:
            return  # the compound state (or region) itself has a way out
    # Walk the transitions backwards from the final states once, rather than forwards from
    # every state: linear in the size of the graph, which matters for large definitions.
    sources: dict[str, set[str]] = {}
    finishing = {state.name for state in region.states if state.is_final}
    for state in region.states:
        for target in _targets_from(chart, state.path):
            if not Chart.inside(target, region.path):
                finishing.add(state.name)  # it leaves the region
            else:
                sibling = target[len(region.path) + 1 if region.path else 0 :].split(".")[0]
                if sibling != state.name:
                    sources.setdefault(sibling, set()).add(state.name)
    todo = list(finishing)
    while todo:
        for source in sources.get(todo.pop(), ()):
            if source not in finishing:
                finishing.add(source)
                todo.append(source)
    for state in region.states:
        if state.name not in finishing and state.kind != "history":
            yield _problem(
                state.position,
                f"no final state can be reached from state {state.name!r}",
                severity="warning",
            )


def _targets_from(chart: Chart, path: str) -> Iterator[str]:
    """The targets of the transitions of the node at `path` and of the nodes inside it
    that lead out of it."""
    for node in (path, *chart.below(path)):
        for _, transition in chart.node(node).all_transitions():
            target = chart.target(node, transition)
            if target is not None and (node == path or not Chart.inside(target, path)):
                yield target


@functools.lru_cache(maxsize=4)  # every region's rule asks, for the same chart
def _reached(chart: Chart) -> set[str]:
    """Every node an instance can enter: from the initial state, by every transition of
    every node entered (a misspelt target followed to the state it most likely means, so
    that state is not reported a second time as unreachable)."""
    reached: set[str] = set()
    todo: list[str] = []

    def enter(path: str) -> None:
        for node in (path, *chart.ancestors(path)):
            if node not in reached:
                reached.add(node)
                todo.append(node)
        for inner in _defaults(chart, path):
            if inner not in reached:
                reached.add(inner)
                todo.append(inner)

    if chart.initial.get(TOP) in chart.states:
        enter(chart.initial[TOP])
    while todo:
        path = todo.pop()
        for _, transition in chart.node(path).all_transitions():
            target = chart.target(path, transition)
            if target is None and transition.target is not None:
                close = difflib.get_close_matches(transition.target, list(chart.by_name), n=1)
                found = chart.by_name.get(close[0], []) if close else []
                target = found[0] if len(found) == 1 else None
            if target is not None:
                enter(target)
        state = chart.states.get(path)
        if state is not None and state.default is not None:
            default = chart.target(path, state.default)
            if default is not None:
                enter(default)
    return reached


def _defaults(chart: Chart, path: str) -> Iterator[str]:
    """What entering `path` enters below it by default: initial children, every region of
    a parallel state, and for a history state its parent's initial child."""
    state = chart.states.get(path)
    if state is not None and state.history is not None:
        initial = chart.initial.get(Chart.parent(path))
        if initial is not None:
            yield initial
            yield from _defaults(chart, initial)
        return
    if state is not None and state.parallel:
        for region in state.parallel:
            yield region.path
            yield from _defaults(chart, region.path)
    elif chart.is_compound(path) and path in chart.initial:
        initial = chart.initial[path]
        if chart.is_node(initial):
            yield initial
            yield from _defaults(chart, initial)


RULES: tuple[Callable[[Region, Chart], Iterator[Problem]], ...] = (
    initial_names_a_state,
    targets_name_states,
    history_stays_inside,
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
    chart = Chart(definition)
    for region in definition.regions():
        for rule in RULES:
            problems.extend(rule(region, chart))
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


def _fires_done(state: State) -> bool:
    """Whether the engine fires `done` on the state: a task, parallel or foreach state, or a
    compound state with a (succeeded) final child."""
    if state.kind in TASK_LIKE:
        return True
    region = state.region
    return region is not None and any(child.final == "succeeded" for child in region.states)


def _trigger(trigger: str, node: Region | State) -> str:
    if trigger == "always":
        return "an 'always' transition"
    if trigger.startswith("after:"):
        return f"the timer {node.trigger_name(trigger)!r}"
    return f"event {trigger!r}"
