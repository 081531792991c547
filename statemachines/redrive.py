"""An operator's two repairs of an instance, each the `Step` it makes (the engine persists it,
as for any other operation): `redrive`, which restarts a failed instance where it failed
without running again what succeeded, and `reset`, which moves an instance to a state chosen
by hand.

A redrive restores the failure point the instance kept when it failed (`failures.py`): the
states that were active get new entries (their timers start again), and the atomic ones run
their work again: a task state its task, a call state a new child, a foreach state only its
items without a result (failed, interrupted, or not started), the results of the others
kept. A parallel state's regions that had finished stay finished. The failure point is the
first failure of the operation that ended the instance, so a `failed` transition into a
`final: failed` state is undone back to the state whose work failed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .chart import TOP, Chart
from .entering import FAILURE_KEYS, enter_states
from .errors import InvalidInput, RedriveRefused, ResetRefused, UnknownState
from .fanout import next_item
from .model import DEFAULT_FOREACH_CONCURRENCY, State
from .regions import ChartMachine
from .run import Run
from .steps import Entry, Snapshot, Status, Step, atomic, deadline_timer
from .values import copy_json, storable


def redrive_from(chart: Chart, snapshot: Snapshot) -> dict[str, Any]:
    """What a redrive of the instance restores; RedriveRefused, saying why, when it allows
    none. It is the failure point the instance kept; for an instance failed by an engine
    fault, which keeps its configuration as it was, that configuration; for one failed
    before failure points were kept, the failed state alone, entered afresh."""
    machine = snapshot.machine
    if snapshot.status != Status.FAILED:
        raise RedriveRefused(f"it is {snapshot.status}; only a failed instance can be redriven")
    error = machine.get("error") if isinstance(machine, dict) else None
    if not isinstance(error, dict):
        raise RedriveRefused("it keeps no error saying where it failed")
    if machine.get("compensating"):
        raise RedriveRefused("it failed while running its compensations")
    point = machine.get("redrive")
    if not isinstance(point, dict):
        state = str(error.get("state", ""))
        point = {"state": state, "active": machine.get("active") or {}}
        point["foreach"], point["results"] = machine.get("foreach"), machine.get("results")
    ran = [str(step.get("task")) for step in point.get("compensations") or ()]
    if ran:
        raise RedriveRefused(
            f"compensation ran for its failure ({', '.join(ran)}); a redrive would go on as "
            "if the compensated steps still held: reset it to the state to run again instead"
        )
    paths = list(point["active"]) or [point["state"]]
    if not all(paths):
        raise RedriveRefused("its error does not say in which state it arose")
    unknown = [path for path in paths if path not in chart.states]
    if unknown:
        raise RedriveRefused(f"its version has no state {unknown[0]!r}")
    chosen = [path for path in paths if chart.states[path].final == "failed"]
    if chosen:
        raise RedriveRefused(
            f"it ended in its `final: failed` state {chosen[0]!r}, as its definition chose; "
            "no work failed to run again: reset it to the state to run again instead"
        )
    return point


def redrive(
    chart: Chart, picker: ChartMachine, snapshot: Snapshot, reason: str | None, now: datetime
) -> Step:
    """Restart a failed instance from its failure point (module docstring); a `redrive`
    entry records the reason, the error redriven from, the states whose work runs again
    and, for a foreach, the items started before that run again."""
    point = redrive_from(chart, snapshot)
    error = snapshot.machine["error"]
    machine = {k: v for k, v in copy_json(snapshot.machine).items() if k not in FAILURE_KEYS}
    machine.update(active={}, foreach={}, results=copy_json(point.get("results") or {}))
    run = Run(chart, picker, Snapshot(machine, snapshot.context, Status.RUNNING, snapshot.seq), now)
    data: dict[str, Any] = {"reason": reason, "error": error}
    run.history.append(Entry("redrive", None, error.get("state"), point["state"], data))
    if run.machine.get("deadline"):  # the instance's deadline runs again, whole, from now
        limit = timedelta(seconds=float(run.machine["deadline"]))
        run.machine["deadline_at"] = (now + limit).isoformat()
        run.timers.append(deadline_timer(run.machine))
    if point["active"]:
        data["rerun"], data["items"] = _restore(run, point)
    else:  # the failed state alone: entered afresh, with the states around it
        run.enter_targets(TOP, [point["state"]])
        data["rerun"], data["items"] = [point["state"]], {}
    return run.finish()


def _restore(run: Run, point: dict[str, Any]) -> tuple[list[str], dict[str, list[int]]]:
    """Enter again every state of the failure point, outermost first, each with its timers;
    the atomic ones run their work (and their `always`) as on entry. Returns the states
    whose work runs again, and the items each foreach runs again."""
    chart = run.chart
    paths = sorted(point["active"], key=lambda path: chart.order.get(path, 0))
    books = point.get("foreach") or {}
    rerun: list[str] = []
    items: dict[str, list[int]] = {}
    for path in paths:
        state = chart.states[path]
        run.machine["counter"] = activation = int(run.machine.get("counter", 0)) + 1
        run.active[path] = activation
        run.start_timers(path, state.after, activation)
        for region in state.parallel:  # a region's timers live with its state's entry
            run.start_timers(region.path, region.after, activation)
        if any(Chart.inside(other, path) for other in paths):
            continue
        if state.task is not None:
            run.schedule(state, state.task, activation, None, None)
        elif state.call is not None:
            run.call(state, state.call, activation)
        elif state.foreach is not None:
            items[path] = _resume(run, state, activation, books.get(path))
        if state.task or state.call or state.foreach:
            rerun.append(path)
        if state.always:
            run.queue.append(("always", path, activation, None))
    return rerun, items


def _resume(run: Run, state: State, activation: int, kept: Any) -> list[int]:
    """Go on with a foreach from its book: the items with a result keep it; the others
    (failed, tolerated or not, and those interrupted) start again first, then those never
    started, within `concurrency`. Without a book (its items failed to evaluate) the state
    fans out afresh. Returns the items started before that run again."""
    assert state.foreach is not None
    if not isinstance(kept, dict):
        run.fan_out(state, activation)
        return []
    book = copy_json(kept)
    failed = {int(failure["index"]) for failure in book.get("failures") or ()}
    redo = [
        index for index in range(book["next"]) if not book["finished"][index] or index in failed
    ]
    for index in redo:
        book["finished"][index] = False
        book["results"][index] = None
    if "failures" in book:
        book["failures"] = []  # a redrive gives the items their tolerance back
    book["left"] = len(redo) + len(book["items"]) - book["next"]
    if redo:
        book["redo"] = list(redo)
    run.machine.setdefault("foreach", {})[state.path] = book
    limit = state.foreach.concurrency or DEFAULT_FOREACH_CONCURRENCY
    for _ in range(min(limit, book["left"])):
        run.start_item(state, activation, book, next_item(book))
    if book["left"] == 0:
        run.all_items_finished(state, book, activation, queued=True)
    return redo


def reset(
    chart: Chart,
    picker: ChartMachine,
    snapshot: Snapshot,
    to_state: str,
    patch: dict[str, Any] | None,
    reason: str,
    now: datetime,
) -> Step:
    """Move the instance to the state at `to_state` by hand: every active state is left (its
    work dropped), `patch` is merged into the context (key by key, at the top level), and
    `to_state` is entered with the states around it (a parallel state's other regions at
    their initial states), its work scheduled as on any entry. A finished instance runs
    again; a compensating one is refused (ResetRefused), as is a state the definition does
    not have (UnknownState). A `reset` entry records the reason, the states left, the
    status the instance had and the patch."""
    if snapshot.status == Status.COMPENSATING:
        raise ResetRefused("it is running its compensations; wait until they have finished")
    if snapshot.status == Status.SCHEDULED:
        raise ResetRefused("it has not started yet; cancel it, or let it start first")
    target = chart.states.get(to_state)
    if target is None or target.kind == "history":
        known = [path for path, state in chart.states.items() if state.kind != "history"]
        raise UnknownState(to_state, chart.definition.name, known)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a reset needs a reason: an operator's move is always explained")
    changes = storable({} if patch is None else patch, "context_patch")
    if not isinstance(changes, dict):
        raise InvalidInput("a context patch must be a JSON object (its keys are set)")
    left = atomic(snapshot.machine.get("active", {}))
    data = {
        "reason": reason,
        "from": left,
        "to": to_state,
        "status": str(snapshot.status),
        "patch": changes,
    }
    entry = Entry("reset", None, snapshot.state or None, to_state, data)
    context = {**snapshot.context, **changes}
    return enter_states(chart, picker, snapshot, [to_state], now, entry=entry, context=context)
