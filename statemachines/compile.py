"""Compilation of a definition: its chart, the `transitions` machine that picks each
transition (regions.py), and the operations on an instance (`CompiledMachine`), each of which
runs the statechart semantics of `run.py` on a snapshot and returns the step it makes.
The engine and `simulate` both call it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from .chart import TOP, Chart
from .durations import format_duration
from .entering import enter_states
from .errors import EventRejected
from .fanout import item_pending
from .flat import FlatMoves
from .model import Definition, State
from .redrive import redrive, reset
from .regions import ChartMachine
from .run import CANCELLED, FAILED, RUNNING, Run, TaskRef
from .steps import (
    CALL_TIMEOUT,
    DEADLINE,
    DEADLINE_EXCEEDED,
    Entry,
    Snapshot,
    Status,
    Step,
    atomic,
    deadline_timer,
    timed_out_item,
)

CHILD_OUTCOMES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

RESERVED_EVENTS = ("done", "failed", "always")


class CompiledMachine:
    """The semantics of one definition version; stateless, so one serves every instance."""

    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        self.chart = Chart(definition)
        self.machine = ChartMachine(self.chart)
        self.flat = FlatMoves(self.chart, self.machine, RESERVED_EVENTS)

    # -- queries ---------------------------------------------------------------------------
    def allowed(self, snapshot: Snapshot) -> list[str]:
        """External events the active states have transitions for, guards aside."""
        return self.allowed_in(atomic(snapshot.machine.get("active", {})), snapshot.status)

    def allowed_in(self, active: Iterable[str], status: str = RUNNING) -> list[str]:
        """External events the nodes at the `active` paths, and the nodes around them, have
        transitions for, innermost first."""
        if status != RUNNING:
            return []
        chart = self.chart
        seen: dict[str, None] = {}
        for path in active:
            for node in (path, *chart.ancestors(path)):
                if chart.is_node(node):
                    for event, _ in chart.node(node).on:
                        if event not in RESERVED_EVENTS:
                            seen.setdefault(event, None)
        return list(seen)

    # -- operations ------------------------------------------------------------------------
    def start(
        self, context: dict[str, Any], now: datetime, deadline: timedelta | None = None
    ) -> Step:
        """Enter `initial` with `context` as the data; with a `deadline` (else the
        definition's, if it has one), a timer fails the instance once it has passed."""
        machine = {"active": {}, "counter": 0, "results": {}, "foreach": {}, "compensations": []}
        run = Run(self.chart, self.machine, Snapshot(machine, context, RUNNING), now)
        run.history.append(Entry("start", None, None, self.definition.initial, context))
        limit = deadline if deadline is not None else self.definition.deadline
        if limit is not None:
            run.machine["deadline"] = limit.total_seconds()
            run.machine["deadline_at"] = (now + limit).isoformat()
            if deadline is not None:  # the start's own: a migration keeps it
                run.machine["deadline_from"] = "start"
            run.timers.append(deadline_timer(run.machine))
        run.enter_targets(TOP, [self.definition.initial])
        return run.finish()

    def deadline_passed(self, snapshot: Snapshot, now: datetime) -> Step:
        """The instance's deadline has passed: a running instance fails with
        DeadlineExceeded, its completed steps compensated as for any unhandled failure; one
        that has ended, or is compensating already, changes nothing (`changed` False)."""
        run = Run(self.chart, self.machine, snapshot, now)
        if snapshot.status != RUNNING:
            run.changed = False
            return run.finish()
        seconds = float(run.machine.get("deadline") or 0)
        written = format_duration(timedelta(seconds=seconds)) if seconds else "its deadline"
        message = f"the instance ran past its deadline of {written}"
        error = {"type": DEADLINE_EXCEEDED, "message": message}
        state = snapshot.state
        run.history.append(Entry("timer", DEADLINE, state or None, None, {"error": error}))
        run.stop(FAILED, error, state)
        return run.finish()

    def send(self, snapshot: Snapshot, event: str, payload: Any, now: datetime) -> Step:
        """Apply an external event; raise EventRejected (changing nothing) if none accepts it."""
        step = self.flat.send(snapshot, event, payload)
        return step if step is not None else self.send_by_run(snapshot, event, payload, now)

    def send_flat(self, snapshot: Snapshot, event: str, payload: Any) -> Step | None:
        """The step of `event` when it is a plain move between two plain top-level states
        (flat.py), made without a copy of `snapshot`; None when `send` must run it fully."""
        return self.flat.send(snapshot, event, payload)

    def send_by_run(self, snapshot: Snapshot, event: str, payload: Any, now: datetime) -> Step:
        """`send` by the full statechart run, whatever the event."""
        if snapshot.status != RUNNING:
            raise EventRejected(event, snapshot.state, [], f"the instance is {snapshot.status}")
        if event in RESERVED_EVENTS or event.startswith("after:"):
            reason = f"{event!r} is fired by the engine, not sent"
            raise EventRejected(event, snapshot.state, self.allowed(snapshot), reason)
        run = Run(self.chart, self.machine, snapshot, now)
        if not run.broadcast(event, payload, "event"):
            allowed = self.allowed(snapshot)
            raise EventRejected(event, snapshot.state, allowed, run.reject_reason())
        return run.finish()

    def task_done(self, snapshot: Snapshot, ref: TaskRef, result: Any, now: datetime) -> Step:
        """Apply a task's result; a result for a state no longer active is recorded stale."""
        run = Run(self.chart, self.machine, snapshot, now)
        run.task_done(ref, result)
        return run.finish()

    def task_failed(
        self, snapshot: Snapshot, ref: TaskRef, error: dict[str, Any], attempts: int, now: datetime
    ) -> Step:
        """A task's attempts are exhausted: fire `failed` on its state."""
        run = Run(self.chart, self.machine, snapshot, now)
        run.task_failed(ref, error, attempts)
        return run.finish()

    def timer_fired(
        self, snapshot: Snapshot, ref: tuple[str, int], key: str, now: datetime
    ) -> Step:
        """A timer is due; a timer of a state left since is a no-op (`changed` False)."""
        if ref == (TOP, 0) and key == DEADLINE:
            return self.deadline_passed(snapshot, now)
        run = Run(self.chart, self.machine, snapshot, now)
        path, activation = ref
        if snapshot.status != RUNNING or run.activation(path) != activation:
            run.changed = False
            return run.finish()
        if key == CALL_TIMEOUT:
            spec = self.definition.state(path).call
            seconds = spec.timeout.total_seconds() if spec and spec.timeout else 0
            what = repr(spec.definition) if spec else "the child"
            message = f"the call of {what} ran past its timeout of {seconds:g}s"
            run.deliver_failed(path, {"error": {"type": "Timeout", "message": message}}, "timer")
            return run.finish()
        item = timed_out_item(key)
        if item is not None:
            return self.item_timed_out(run, path, activation, item)
        label = f"after:{key}"
        timer = self.chart.node(path).timer(label) if self.chart.is_node(path) else None
        payload = {timer.kind: timer.written or key} if timer is not None else {"after": key}
        # A timer belongs to its own node; an outer node's timer of the same length is
        # another timer.
        if not run.fire(path, label, payload, "timer"):
            run.changed = bool(run.history)
        return run.finish()

    def item_timed_out(self, run: Run, path: str, activation: int, item: int) -> Step:
        """The child of foreach `item` ran past the call's timeout: it is cancelled and the
        item fails with Timeout; an item with an outcome already changes nothing."""
        state = self.definition.state(path)
        book = run.machine.get("foreach", {}).get(path)
        spec = state.foreach.call if state.foreach is not None else None
        if spec is None or book is None or not item_pending(book, item):
            run.changed = False
            return run.finish()
        seconds = spec.timeout.total_seconds() if spec.timeout else 0
        message = f"the call of {spec.definition!r} ran past its timeout of {seconds:g}s"
        run.stopped.append((path, activation, item))
        error = {"type": "Timeout", "message": message}
        run.item_failed(state, book, activation, item, error, 0, kind="call")
        return run.finish()

    def child_finished(
        self, snapshot: Snapshot, ref: TaskRef, outcome: str, value: Any, now: datetime
    ) -> Step:
        """A call state's child has ended with `outcome` (a finished status): `succeeded`
        fires `done` with `value`, its final context, stored by the state's `result` rule;
        `failed` and `cancelled` fire `failed` with `value`, `{error: {type, message}, ...}`.
        A child of a state left since changes nothing (`changed` False)."""
        if outcome not in CHILD_OUTCOMES:
            raise ValueError(f"a child ends succeeded, failed or cancelled, not {outcome!r}")
        run = Run(self.chart, self.machine, snapshot, now)
        path, activation, item = ref
        if snapshot.status != RUNNING or run.activation(path) != activation:
            run.changed = False
            return run.finish()
        state = self.definition.state(path)
        if item is not None and state.foreach is not None:
            return self.item_finished(run, state, ref, outcome, value)
        if outcome != Status.SUCCEEDED:
            run.deliver_failed(path, value, "call")
            return run.finish()
        how = state.call.result if state.call is not None else False
        run.store_result(how, state.name, value)
        run.remember_result(path, value)
        run.deliver_done(path, value, "call")
        return run.finish()

    def item_finished(self, run: Run, state: State, ref: TaskRef, outcome: str, value: Any) -> Step:
        """The child of a foreach item has ended: the item's result is its final context,
        or it failed with the child's error. An item with an outcome already (its child
        timed out) changes nothing."""
        path, activation, item = ref
        book = run.machine.get("foreach", {}).get(path)
        if item is None or not item_pending(book, item):
            run.changed = False
            return run.finish()
        assert book is not None
        if outcome == Status.SUCCEEDED:
            run.item_succeeded(state, book, activation, item, value, kind="call")
        else:
            error = value.get("error") if isinstance(value, dict) else None
            error = error if isinstance(error, dict) else {"type": "ChildFailed", "message": ""}
            child = value.get("child") if isinstance(value, dict) else None
            child = child if isinstance(child, str) else None
            run.item_failed(state, book, activation, item, error, 0, child=child, kind="call")
        return run.finish()

    def cancel(self, snapshot: Snapshot, reason: str | None, now: datetime) -> Step:
        """Stop a running instance: drop its work, compensate, end `cancelled`."""
        state = snapshot.state
        if snapshot.status != RUNNING:
            raise EventRejected("cancel", state, [], f"the instance is {snapshot.status}")
        run = Run(self.chart, self.machine, snapshot, now)
        run.history.append(Entry("cancel", "cancel", state, None, {"reason": reason}))
        run.stop(CANCELLED)
        return run.finish()

    def enter(
        self,
        snapshot: Snapshot,
        targets: Iterable[str],
        now: datetime,
        *,
        entry: Entry | None = None,
        context: dict[str, Any] | None = None,
    ) -> Step:
        """Leave every active state and enter the states at `targets` afresh, as an
        operator's move does (entering.py): the snapshot may be another version's."""
        return enter_states(
            self.chart, self.machine, snapshot, targets, now, entry=entry, context=context
        )

    def redrive(self, snapshot: Snapshot, reason: str | None, now: datetime) -> Step:
        """Restart a failed instance where it failed, running again only the work that had
        not succeeded (redrive.py); RedriveRefused, changing nothing, when it cannot be."""
        return redrive(self.chart, self.machine, snapshot, reason, now)

    def reset(
        self,
        snapshot: Snapshot,
        to_state: str,
        patch: dict[str, Any] | None,
        reason: str,
        now: datetime,
    ) -> Step:
        """Move the instance to `to_state` by hand, its context patched (redrive.py)."""
        return reset(self.chart, self.machine, snapshot, to_state, patch, reason, now)


def compile_definition(definition: Definition) -> CompiledMachine:
    """The compiled machine of `definition` (built anew: the engine's catalog keeps one per
    deployed version)."""
    return CompiledMachine(definition)
