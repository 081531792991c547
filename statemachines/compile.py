"""Compilation of a definition and the run-to-completion semantics of an instance.

Each region (the top level and every parallel branch) becomes a `RegionMachine` (regions.py)
that picks the transition an event fires. `CompiledMachine` composes them into statechart
behaviour: entering and exiting, fan-out and fan-in, `always` chains, foreach bookkeeping,
failures and compensation. The engine and `simulate` both call it.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .errors import EventRejected, ExpressionError, ValueNotStorable
from .model import (
    DEFAULT_FOREACH_CONCURRENCY,
    DEFAULT_RESULT,
    MAX_FOREACH_ITEMS,
    Definition,
    Region,
    RetryPolicy,
    State,
    TaskSpec,
)
from .regions import RegionMachine
from .steps import Entry, Snapshot, Status, Step, TaskOrder, TimerOrder
from .values import storable

MAX_ALWAYS_STEPS = 100
_CHAIN_CUT = f"more than {MAX_ALWAYS_STEPS} eventless steps in a row; the chain was cut"
RESERVED_EVENTS = ("done", "failed", "always")
RUNNING, SUCCEEDED, FAILED = Status.RUNNING, Status.SUCCEEDED, Status.FAILED
CANCELLED, COMPENSATING = Status.CANCELLED, Status.COMPENSATING
TaskRef = tuple[str, int, int | None]  # state path, activation, foreach item


class CompiledMachine:
    """The semantics of one definition version; stateless, so one serves every instance."""

    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        self.regions = {region.path: RegionMachine(region) for region in definition.regions()}
        self.region_of: dict[str, Region] = {}
        self.parent_of: dict[str, State] = {}  # region path -> the parallel state holding it
        for region in definition.regions():
            for state in region.states:
                self.region_of[state.path] = region
                for child in state.parallel:
                    self.parent_of[child.path] = state

    # -- queries ---------------------------------------------------------------------------
    def allowed(self, snapshot: Snapshot) -> list[str]:
        """External events the active states have transitions for, guards aside."""
        return self.allowed_in(snapshot.machine.get("active", {}), snapshot.status)

    def allowed_in(self, active: Iterable[str], status: str = RUNNING) -> list[str]:
        """External events the states at the `active` paths have transitions for."""
        if status != RUNNING:
            return []
        seen: dict[str, None] = {}
        for path in active:
            for event, _ in self.definition.state(path).on:
                if event not in RESERVED_EVENTS:
                    seen.setdefault(event, None)
        return list(seen)

    # -- operations ------------------------------------------------------------------------
    def start(self, context: dict[str, Any], now: datetime) -> Step:
        """Enter `initial` with `context` as the data."""
        machine = {"active": {}, "counter": 0, "results": {}, "foreach": {}, "compensations": []}
        run = _Run(self, Snapshot(machine, context, RUNNING), now)
        run.history.append(Entry("start", None, None, self.definition.initial, context))
        run.enter(self.definition.root, self.definition.initial)
        return run.finish()

    def send(self, snapshot: Snapshot, event: str, payload: Any, now: datetime) -> Step:
        """Apply an external event; raise EventRejected (changing nothing) if none accepts it."""
        if snapshot.status != RUNNING:
            raise EventRejected(event, snapshot.state, [], f"the instance is {snapshot.status}")
        if event in RESERVED_EVENTS or event.startswith("after:"):
            reason = f"{event!r} is fired by the engine, not sent"
            raise EventRejected(event, snapshot.state, self.allowed(snapshot), reason)
        run = _Run(self, snapshot, now)
        if not run.broadcast(self.definition.root, event, payload, "event"):
            allowed = self.allowed(snapshot)
            raise EventRejected(event, snapshot.state, allowed, run.reject_reason())
        return run.finish()

    def task_done(self, snapshot: Snapshot, ref: TaskRef, result: Any, now: datetime) -> Step:
        """Apply a task's result; a result for a state no longer active is recorded stale."""
        run = _Run(self, snapshot, now)
        run.task_done(ref, result)
        return run.finish()

    def task_failed(
        self, snapshot: Snapshot, ref: TaskRef, error: dict[str, Any], attempts: int, now: datetime
    ) -> Step:
        """A task's attempts are exhausted: fire `failed` on its state."""
        run = _Run(self, snapshot, now)
        run.task_failed(ref, error, attempts)
        return run.finish()

    def timer_fired(
        self, snapshot: Snapshot, ref: tuple[str, int], key: str, now: datetime
    ) -> Step:
        """A timer is due; a timer of a state left since is a no-op (`changed` False)."""
        run = _Run(self, snapshot, now)
        path, activation = ref
        if snapshot.status != RUNNING or snapshot.machine.get("active", {}).get(path) != activation:
            run.changed = False
            return run.finish()
        state = self.definition.state(path)
        label = f"after:{key}"
        # A timer belongs to its own state; an outer state's timer of the same length is
        # another timer.
        if not run.fire(state, label, {"after": key}, "timer"):
            run.changed = bool(run.history)
        return run.finish()

    def cancel(self, snapshot: Snapshot, reason: str | None, now: datetime) -> Step:
        """Stop a running instance: drop its work, compensate, end `cancelled`."""
        state = snapshot.state
        if snapshot.status != RUNNING:
            raise EventRejected("cancel", state, [], f"the instance is {snapshot.status}")
        run = _Run(self, snapshot, now)
        run.history.append(Entry("cancel", "cancel", state, None, {"reason": reason}))
        run.stop(CANCELLED)
        return run.finish()


class _Run:
    """One operation's working copy of an instance, and the queue of what it causes."""

    def __init__(self, compiled: CompiledMachine, snapshot: Snapshot, now: datetime) -> None:
        self.compiled = compiled
        self.definition = compiled.definition
        self.machine = copy_json(snapshot.machine)
        self.active: dict[str, int] = self.machine.setdefault("active", {})
        self.context = copy_json(snapshot.context)
        self.status = snapshot.status
        self.now = now
        self.history: list[Entry] = []
        self.tasks: list[TaskOrder] = []
        self.timers: list[TimerOrder] = []
        self.cancelled: list[tuple[str, int]] = []
        self.queue: deque[tuple[str, str, int, Any]] = deque()
        self.always_steps = 0
        self.changed = True
        self.guard_errors: list[ExpressionError] = []

    def finish(self) -> Step:
        self.drain()
        top_names = self.definition.root.names()
        current = next((name for name in top_names if name in self.active), None)
        self.machine["state"] = current or self.machine.get("state", "")
        return Step(
            self.machine,
            self.context,
            self.status,
            history=self.history,
            tasks=self.tasks,
            timers=self.timers,
            cancelled=self.cancelled,
            changed=self.changed,
        )

    def reject_reason(self) -> str:
        return "; ".join(str(error) for error in self.guard_errors)

    def names(self, event: Any = None, trigger: str = "") -> dict[str, Any]:
        result = event if trigger == "done" else None
        return {"context": self.context, "event": event, "result": result, "now": self.now}

    def evaluate(
        self, expression: Any, names: dict[str, Any], what: str, path: str = "value"
    ) -> tuple[bool, Any]:
        """(True, the value as it will be stored) or (False, None), the failure recorded; a
        value `storable` refuses (named as `path`) is a failure of its expression."""
        try:
            return True, storable(expression.evaluate(names), path)
        except ExpressionError as exc:
            self.error(what, exc)
        except ValueNotStorable as exc:
            self.error(what, ExpressionError(expression.text, str(exc)))
        return False, None

    def error(self, what: str, exc: ExpressionError) -> None:
        details = {"where": what, "expression": exc.expression, "message": str(exc)}
        self.history.append(Entry("error", data=details))

    def fail_later(self, path: str, activation: int, error_type: str, message: str) -> None:
        """Queue `failed` for the state at `path`, as if its task had failed with no attempt."""
        error = {"type": error_type, "message": message}
        self.queue.append(("failed", path, activation, {"error": error, "attempts": 0}))

    # -- entering and exiting --------------------------------------------------------------
    def enter(self, region: Region, name: str) -> None:
        state = region.state(name)
        self.machine["counter"] = activation = int(self.machine.get("counter", 0)) + 1
        self.active[state.path] = activation
        for timer in state.after:
            due = self.now + timer.delay
            self.timers.append(TimerOrder(state.path, activation, timer.key, due))
        if state.task is not None:
            self.schedule(state, state.task, activation, None, None)
        elif state.parallel:
            for child in state.parallel:
                self.enter(child, child.initial)
        elif state.foreach is not None:
            self.fan_out(state, activation)
        elif state.final is not None:
            self.reached_final(region, state)
            return
        if state.always:
            self.queue.append(("always", state.path, activation, None))

    def schedule(
        self, state: State, spec: TaskSpec, activation: int, item: int | None, item_value: Any
    ) -> None:
        names = {**self.names(), "item": item_value, "index": item}
        if spec.input is not None:
            valid, value = self.evaluate(spec.input, names, f"input of {state.path}", "input")
            if not valid:
                message = "the task's input expression failed"
                self.fail_later(state.path, activation, "InputError", message)
                return
        else:
            value = item_value if item is not None else self.context
        order = TaskOrder(
            state_path=state.path,
            activation=activation,
            item=item,
            name=spec.name,
            input=copy.deepcopy(value),
            retry=spec.retry,
            timeout=spec.timeout,
        )
        self.tasks.append(order)

    def fan_out(self, state: State, activation: int) -> None:
        assert state.foreach is not None
        what = f"items of {state.path}"
        valid, items = self.evaluate(state.foreach.items, self.names(), what, "items")
        message = None
        if not valid or not isinstance(items, list):
            message = "foreach items is not a list"
        elif len(items) > MAX_FOREACH_ITEMS:
            message = f"foreach items has {len(items)} items, more than {MAX_FOREACH_ITEMS}"
        if message is not None:
            self.fail_later(state.path, activation, "ItemsError", message)
            return
        limit = state.foreach.concurrency or DEFAULT_FOREACH_CONCURRENCY
        book: dict[str, Any] = {
            "items": items,
            "results": [None] * len(items),
            "finished": [False] * len(items),
            "left": len(items),
            "next": min(limit, len(items)),
        }
        self.machine.setdefault("foreach", {})[state.path] = book
        for index in range(book["next"]):
            self.schedule(state, state.foreach.task, activation, index, items[index])
        if not items:
            self.store_result(state.foreach.task.result, state.name, {"results": []}, "results")
            self.queue.append(("done", state.path, activation, {"results": []}))

    def exit(self, path: str) -> None:
        """Leave the state at `path` and everything active inside it."""
        for inner in [active for active in self.active if active.startswith(path + ".")]:
            self.cancelled.append((inner, self.active.pop(inner)))
        if path in self.active:
            self.cancelled.append((path, self.active.pop(path)))
        self.machine.get("foreach", {}).pop(path, None)
        results = self.machine.get("results", {})
        for key in [key for key in results if key == path or key.startswith(path + ".")]:
            del results[key]

    def reached_final(self, region: Region, state: State) -> None:
        if region is self.definition.root:
            self.status = SUCCEEDED if state.final == "succeeded" else FAILED
            return
        parent = self.compiled.parent_of[region.path]
        activation = self.active[parent.path]
        if state.final == "failed":
            message = f"branch {region.name!r} ended in {state.name!r}"
            self.fail_later(parent.path, activation, "BranchFailed", message)
            return
        finished = all(self.finished(child) for child in parent.parallel)
        if finished:
            results = self.machine.get("results", {})
            payload = {child.name: results.get(child.path) for child in parent.parallel}
            self.remember_result(parent.path, payload)
            self.queue.append(("done", parent.path, activation, payload))

    def finished(self, region: Region) -> bool:
        """Whether a final state of `region` is active."""
        return any(self.active.get(state.path) and state.is_final for state in region.states)

    # -- firing ----------------------------------------------------------------------------
    def fire(self, state: State, trigger: str, payload: Any, kind: str) -> bool:
        region = self.compiled.region_of[state.path]
        names = self.names(payload, trigger)
        spec, errors = self.compiled.regions[region.path].choose(state.name, trigger, names)
        for exc in errors:
            self.error(f"guard of {trigger!r} in {state.path}", exc)
        self.guard_errors.extend(errors)
        if spec is None:
            return False
        updates = {}
        for key, expression in spec.assign:
            what = f"assign {key} in {state.path}"
            valid, value = self.evaluate(expression, names, what, f"context.{key}")
            if valid:
                updates[key] = value
        self.context.update(updates)
        event = None if trigger == "always" else trigger
        label = f"after {trigger[6:]}" if trigger.startswith("after:") else event
        target_path = state.path if spec.target is None else _sibling(state.path, spec.target)
        self.history.append(Entry(kind, label, state.path, target_path, payload))
        if spec.target is None:
            if state.always:
                self.queue.append(("always", state.path, self.active[state.path], None))
            return True
        self.exit(state.path)
        self.enter(region, spec.target)
        return True

    def broadcast(self, region: Region, event: str, payload: Any, kind: str) -> bool:
        """Offer an external event innermost first; every accepting branch takes it."""
        names = region.names()
        name = next((name for name in names if _join(region.path, name) in self.active), None)
        if name is None:
            return False
        state = region.state(name)
        accepted = False
        for child in state.parallel:
            accepted = self.broadcast(child, event, payload, kind) or accepted
        return accepted or self.fire(state, event, payload, kind)

    def targeted(self, state: State, trigger: str, payload: Any, kind: str) -> bool:
        """Offer an event to one state, then to the parallel states around it."""
        current: State | None = state
        while current is not None:
            if current.path in self.active and self.fire(current, trigger, payload, kind):
                return True
            region = self.compiled.region_of[current.path]
            current = self.compiled.parent_of.get(region.path)
        return False

    def drain(self) -> None:
        while self.queue and self.status == RUNNING:
            what, path, activation, payload = self.queue.popleft()
            if self.active.get(path) != activation:
                continue
            state = self.definition.state(path)
            if what == "always":
                self.always_steps += 1
                if self.always_steps > MAX_ALWAYS_STEPS:
                    self.history.append(
                        Entry("error", from_state=path, data={"message": _CHAIN_CUT})
                    )
                    self.stop(FAILED)
                    return
                self.fire(state, "always", None, "always")
            elif what == "done":
                self.deliver_done(state, payload, "task")
            else:
                self.deliver_failed(state, payload, "task")

    # -- tasks -----------------------------------------------------------------------------
    def task_done(self, ref: TaskRef, result: Any) -> None:
        path, activation, item = ref
        if self.compensating(path, activation):
            self.history.append(Entry("compensate", "done", path, None, result))
            self.next_compensation()
            return
        book = self.machine.get("foreach", {}).get(path)
        live = self.status == RUNNING and self.active.get(path) == activation
        if not live or (item is not None and not _item_pending(book, item)):
            self.history.append(Entry("stale", "done", path, None, {"result": result}))
            self.changed = True
            return
        state = self.definition.state(path)
        if item is not None and state.foreach is not None:
            self.item_done(state, book, activation, item, result)
            return
        assert state.task is not None
        if state.task.compensate:
            compensation = {"state": path, "task": state.task.compensate}
            self.machine.setdefault("compensations", []).append(compensation)
        self.store_result(state.task.result, state.name, result)
        self.remember_result(path, result)
        self.deliver_done(state, result, "task")

    def item_done(
        self, state: State, book: dict[str, Any], activation: int, item: int, result: Any
    ) -> None:
        assert state.foreach is not None
        book["results"][item] = result
        book["finished"][item] = True
        book["left"] -= 1
        details = {"index": item, "result": result}
        self.history.append(Entry("task", "done", state.path, None, details))
        if book["next"] < len(book["items"]):
            index = book["next"]
            book["next"] += 1
            self.schedule(state, state.foreach.task, activation, index, book["items"][index])
        if book["left"] == 0:
            results = book["results"]
            self.store_result(
                state.foreach.task.result, state.name, {"results": results}, "results"
            )
            self.remember_result(state.path, {"results": results})
            self.deliver_done(state, {"results": results}, "task")

    def remember_result(self, path: str, result: Any) -> None:
        """Keep `result` as the last task result of the region holding state `path`, for the
        `done` of a parallel state around it."""
        region = self.compiled.region_of[path]
        if region.path:
            self.machine.setdefault("results", {})[region.path] = result

    def store_result(
        self, how: str | bool, state_name: str, result: Any, unwrap: str | None = None
    ) -> None:
        if how is False:
            return
        if how == DEFAULT_RESULT:
            if isinstance(result, dict):
                self.context.update(result)
            else:
                self.context[state_name] = result
        else:
            self.context[str(how)] = result[unwrap] if unwrap else result

    def deliver_done(self, state: State, payload: Any, kind: str) -> None:
        # `done` belongs to the state that finished: it never bubbles to a parallel state
        # around it, whose own `done` means every branch has finished.
        if self.fire(state, "done", payload, kind):
            return
        message = f"no 'done' transition of {state.path!r} accepted the result"
        self.history.append(Entry("error", "done", state.path, None, {"message": message}))
        region = self.compiled.region_of[state.path]
        if region is self.definition.root:
            self.stop(FAILED)
            return
        parent = self.compiled.parent_of[region.path]
        self.fail_later(parent.path, self.active[parent.path], "DoneNotAccepted", message)

    def task_failed(self, ref: TaskRef, error: dict[str, Any], attempts: int) -> None:
        path, activation, item = ref
        if self.compensating(path, activation):
            task = self.machine["compensating"].get("task")
            details = {"message": f"compensation {task!r} failed", "error": error}
            self.history.append(Entry("error", "failed", path, None, details))
            self.next_compensation()
            return
        if self.status != RUNNING or self.active.get(path) != activation:
            self.history.append(Entry("stale", "failed", path, None, {"error": error}))
            return
        payload: dict[str, Any] = {"error": error, "attempts": attempts}
        if item is not None:
            payload["index"] = item
        self.deliver_failed(self.definition.state(path), payload, "task")

    def deliver_failed(self, state: State, payload: Any, kind: str) -> None:
        if not self.targeted(state, "failed", payload, kind):
            self.history.append(Entry(kind, "failed", state.path, None, payload))
            self.stop(FAILED)

    # -- the end ---------------------------------------------------------------------------
    def stop(self, outcome: str) -> None:
        """End the instance with `outcome`, compensating completed steps first."""
        for path in list(self.active):
            if path in self.active and "." not in path:
                self.exit(path)
        self.queue.clear()
        if self.machine.get("compensations"):
            self.status = COMPENSATING
            self.machine["outcome"] = outcome
            self.next_compensation()
        else:
            self.status = outcome

    def compensating(self, path: str, activation: int) -> bool:
        """Whether the task of `path` and `activation` is the compensation under way."""
        current = self.machine.get("compensating") or {}
        return (current.get("state"), current.get("activation")) == (path, activation)

    def next_compensation(self) -> None:
        pending = self.machine.get("compensations", [])
        if not pending:
            self.machine.pop("compensating", None)
            self.status = self.machine.pop("outcome", FAILED)
            self.history.append(Entry("compensate", None, None, None, {"finished": self.status}))
            return
        step = pending.pop()
        self.machine["counter"] = activation = int(self.machine.get("counter", 0)) + 1
        path, task = step["state"], step["task"]
        self.machine["compensating"] = {"state": path, "task": task, "activation": activation}
        self.history.append(Entry("compensate", None, path, None, {"task": task}))
        order = TaskOrder(
            state_path=path,
            activation=activation,
            item=None,
            name=task,
            input=copy.deepcopy(self.context),
            retry=RetryPolicy(attempts=3),
            timeout=None,
            kind="compensate",
        )
        self.tasks.append(order)


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts and lists of scalars); several times faster
    than `copy.deepcopy`, which matters because every operation copies the instance."""
    kind = type(value)
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if kind is list:
        return [copy_json(item) for item in value]
    if kind in (str, int, float, bool) or value is None:
        return value
    return copy.deepcopy(value)


def _item_pending(book: dict[str, Any] | None, item: int) -> bool:
    """Whether foreach `item` is one of the book's items and has no result yet."""
    return book is not None and 0 <= item < len(book["items"]) and not book["finished"][item]


def _sibling(path: str, name: str) -> str:
    head, _, _ = path.rpartition(".")
    return f"{head}.{name}" if head else name


def _join(region_path: str, name: str) -> str:
    return f"{region_path}.{name}" if region_path else name


def compile_definition(definition: Definition) -> CompiledMachine:
    """The compiled machine of `definition` (built anew: the engine's catalog keeps one per
    deployed version)."""
    return CompiledMachine(definition)
