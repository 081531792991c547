"""Compilation to `transitions` machines and the run-to-completion semantics of an instance.

Each region (the top level and every parallel branch) becomes one `transitions.Machine` that
picks the transition an event fires (file order, first guard that holds). `CompiledMachine`
composes them into statechart behaviour: entering and exiting, fan-out and fan-in, `always`
chains, foreach bookkeeping, failures and compensation. The engine and `simulate` both call it.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from transitions import Machine

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
    Transition,
)
from .steps import Entry, Snapshot, Status, Step, TaskOrder, TimerOrder
from .values import storable

MAX_ALWAYS_STEPS = 100
RESERVED_EVENTS = ("done", "failed", "always")
RUNNING, SUCCEEDED, FAILED = Status.RUNNING, Status.SUCCEEDED, Status.FAILED
CANCELLED, COMPENSATING = Status.CANCELLED, Status.COMPENSATING


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
                self.machine.add_transition(key, state.name, spec.target,
                                            conditions=conditions, before=[_record])  # fmt: skip
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

    def task_done(
        self, snapshot: Snapshot, ref: tuple[str, int, int | None], result: Any, now: datetime
    ) -> Step:
        """Apply a task's result; a result for a state no longer active is recorded stale."""
        run = _Run(self, snapshot, now)
        run.task_done(ref, result)
        return run.finish()

    def task_failed(
        self,
        snapshot: Snapshot,
        ref: tuple[str, int, int | None],
        error: dict[str, Any],
        attempts: int,
        now: datetime,
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
        top = self.definition.root
        self.machine["state"] = next((name for name in top.names() if name in self.active),
                               self.machine.get("state", ""))  # fmt: skip
        return Step(self.machine, self.context, self.status, self.history, self.tasks, self.timers,
                    self.cancelled, self.changed)  # fmt: skip

    def reject_reason(self) -> str:
        return "; ".join(str(e) for e in self.guard_errors)

    def names(self, event: Any = None, trigger: str = "") -> dict[str, Any]:
        return {"context": self.context, "event": event,
                "result": event if trigger == "done" else None, "now": self.now}  # fmt: skip

    def evaluate(self, expression: Any, names: dict[str, Any], what: str,
                 path: str = "value") -> tuple[bool, Any]:  # fmt: skip
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
        self.history.append(Entry("error", None, None, None, {
            "where": what, "expression": exc.expression, "message": str(exc)}))  # fmt: skip

    # -- entering and exiting --------------------------------------------------------------
    def enter(self, region: Region, name: str) -> None:
        state = region.state(name)
        self.machine["counter"] = activation = int(self.machine.get("counter", 0)) + 1
        self.active[state.path] = activation
        for timer in state.after:
            self.timers.append(TimerOrder(state.path, activation, timer.key,
                                          self.now + timer.delay))  # fmt: skip
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

    def schedule(self, state: State, spec: TaskSpec, activation: int, item: int | None,
                 item_value: Any) -> None:  # fmt: skip
        names = {"context": self.context, "event": None, "result": None, "now": self.now,
                 "item": item_value, "index": item}  # fmt: skip
        if spec.input is not None:
            ok, value = self.evaluate(spec.input, names, f"input of {state.path}", "input")
            if not ok:
                error = {"type": "InputError", "message": "the task's input expression failed"}
                self.queue.append(("failed", state.path, activation,
                                   {"error": error, "attempts": 0}))  # fmt: skip
                return
        else:
            value = item_value if item is not None else self.context
        self.tasks.append(TaskOrder(state.path, activation, item, spec.name,
                                    copy.deepcopy(value), spec.retry, spec.timeout))  # fmt: skip

    def fan_out(self, state: State, activation: int) -> None:
        assert state.foreach is not None
        ok, items = self.evaluate(state.foreach.items, self.names(), f"items of {state.path}",
                                  "items")  # fmt: skip
        message = None
        if not ok or not isinstance(items, list):
            message = "foreach items is not a list"
        elif len(items) > MAX_FOREACH_ITEMS:
            message = f"foreach items has {len(items)} items, more than {MAX_FOREACH_ITEMS}"
        if message is not None:
            error = {"type": "ItemsError", "message": message}
            self.queue.append(("failed", state.path, activation, {"error": error, "attempts": 0}))
            return
        limit = state.foreach.concurrency or DEFAULT_FOREACH_CONCURRENCY
        book: dict[str, Any] = {
            "items": items, "results": [None] * len(items), "finished": [False] * len(items),
            "left": len(items), "next": min(limit, len(items))}  # fmt: skip
        self.machine.setdefault("foreach", {})[state.path] = book
        for index in range(book["next"]):
            self.schedule(state, state.foreach.task, activation, index, items[index])
        if not items:
            self.store_result(state.foreach.task.result, state.name, {"results": []},
                              unwrap="results")  # fmt: skip
            self.queue.append(("done", state.path, activation, {"results": []}))

    def exit(self, path: str) -> None:
        """Leave the state at `path` and everything active inside it."""
        for inner in [p for p in self.active if p.startswith(path + ".")]:
            self.cancelled.append((inner, self.active.pop(inner)))
        if path in self.active:
            self.cancelled.append((path, self.active.pop(path)))
        self.machine.get("foreach", {}).pop(path, None)
        results = self.machine.get("results", {})
        for key in [k for k in results if k == path or k.startswith(path + ".")]:
            del results[key]

    def reached_final(self, region: Region, state: State) -> None:
        if region is self.definition.root:
            self.status = SUCCEEDED if state.final == "succeeded" else FAILED
            return
        parent = self.compiled.parent_of[region.path]
        activation = self.active[parent.path]
        if state.final == "failed":
            error = {"type": "BranchFailed",
                     "message": f"branch {region.name!r} ended in {state.name!r}"}  # fmt: skip
            self.queue.append(("failed", parent.path, activation, {"error": error, "attempts": 0}))
            return
        finished = all(
            any(self.active.get(s.path) and s.is_final for s in child.states)
            for child in parent.parallel
        )
        if finished:
            results = self.machine.get("results", {})
            payload = {child.name: results.get(child.path) for child in parent.parallel}
            self.remember_result(parent.path, payload)
            self.queue.append(("done", parent.path, activation, payload))

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
            ok, value = self.evaluate(expression, names, f"assign {key} in {state.path}",
                                      f"context.{key}")  # fmt: skip
            if ok:
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
        name = next((s for s in region.names() if _join(region.path, s) in self.active), None)
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
                    self.history.append(Entry("error", None, path, None, {
                        "message": f"more than {MAX_ALWAYS_STEPS} eventless steps in a row; "
                                   "the chain was cut"}))  # fmt: skip
                    self.stop(FAILED)
                    return
                self.fire(state, "always", None, "always")
            elif what == "done":
                self.deliver_done(state, payload, "task")
            else:
                self.deliver_failed(state, payload, "task")

    # -- tasks -----------------------------------------------------------------------------
    def task_done(self, ref: tuple[str, int, int | None], result: Any) -> None:
        path, activation, item = ref
        comp = self.machine.get("compensating")
        if comp and comp.get("state") == path and comp.get("activation") == activation:
            self.history.append(Entry("compensate", "done", path, None, result))
            self.next_compensation()
            return
        book = self.machine.get("foreach", {}).get(path)
        live = self.status == RUNNING and self.active.get(path) == activation
        if not live or (item is not None and (book is None or not 0 <= item < len(book["items"])
                                              or book["finished"][item])):  # fmt: skip
            self.history.append(Entry("stale", "done", path, None, {"result": result}))
            self.changed = True
            return
        state = self.definition.state(path)
        if item is not None and state.foreach is not None:
            self.item_done(state, book, activation, item, result)
            return
        assert state.task is not None
        if state.task.compensate:
            self.machine.setdefault("compensations", []).append(
                {"state": path, "task": state.task.compensate}
            )
        self.store_result(state.task.result, state.name, result)
        self.remember_result(path, result)
        self.deliver_done(state, result, "task")

    def item_done(self, state: State, book: dict[str, Any], activation: int, item: int,
                  result: Any) -> None:  # fmt: skip
        assert state.foreach is not None
        book["results"][item] = result
        book["finished"][item] = True
        book["left"] -= 1
        self.history.append(Entry("task", "done", state.path, None,
                                  {"index": item, "result": result}))  # fmt: skip
        if book["next"] < len(book["items"]):
            index = book["next"]
            book["next"] += 1
            self.schedule(state, state.foreach.task, activation, index, book["items"][index])
        if book["left"] == 0:
            results = book["results"]
            self.store_result(state.foreach.task.result, state.name, {"results": results},
                              unwrap="results")  # fmt: skip
            self.remember_result(state.path, {"results": results})
            self.deliver_done(state, {"results": results}, "task")

    def remember_result(self, path: str, result: Any) -> None:
        """Keep `result` as the last task result of the region holding state `path`, for the
        `done` of a parallel state around it."""
        region = self.compiled.region_of[path]
        if region.path:
            self.machine.setdefault("results", {})[region.path] = result

    def store_result(self, how: str | bool, state_name: str, result: Any,
                     unwrap: str | None = None) -> None:  # fmt: skip
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
        error = {"type": "DoneNotAccepted", "message": message}
        self.queue.append(("failed", parent.path, self.active[parent.path],
                           {"error": error, "attempts": 0}))  # fmt: skip

    def task_failed(self, ref: tuple[str, int, int | None], error: dict[str, Any],
                    attempts: int) -> None:  # fmt: skip
        path, activation, item = ref
        comp = self.machine.get("compensating")
        if comp and comp.get("state") == path and comp.get("activation") == activation:
            self.history.append(
                Entry(
                    "error",
                    "failed",
                    path,
                    None,
                    {"message": f"compensation {comp.get('task')!r} failed", "error": error},
                )
            )
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

    def next_compensation(self) -> None:
        pending = self.machine.get("compensations", [])
        if not pending:
            self.machine.pop("compensating", None)
            self.status = self.machine.pop("outcome", FAILED)
            self.history.append(Entry("compensate", None, None, None, {"finished": self.status}))
            return
        step = pending.pop()
        self.machine["counter"] = activation = int(self.machine.get("counter", 0)) + 1
        self.machine["compensating"] = {"state": step["state"], "task": step["task"],
                                  "activation": activation}  # fmt: skip
        self.history.append(Entry("compensate", None, step["state"], None, {"task": step["task"]}))
        self.tasks.append(TaskOrder(step["state"], activation, None, step["task"],
                                    copy.deepcopy(self.context), RetryPolicy(attempts=3), None,
                                    kind="compensate"))  # fmt: skip


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


def _sibling(path: str, name: str) -> str:
    head, _, _ = path.rpartition(".")
    return f"{head}.{name}" if head else name


def _join(region_path: str, name: str) -> str:
    return f"{region_path}.{name}" if region_path else name


def compile_definition(definition: Definition) -> CompiledMachine:
    """The compiled machine of `definition` (built anew: the engine's catalog keeps one per
    deployed version)."""
    return CompiledMachine(definition)
