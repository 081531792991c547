"""One operation on an instance: its working copy, and the statechart semantics of what
the operation causes, with SCXML's rules wherever the two languages overlap.

An event is offered innermost first (every region of a parallel state, in document order);
a transition exits the active nodes inside its domain (innermost first), runs its `assign`,
then enters its target and the nodes between (outermost first, each starting its timers and
scheduling its task); then come fan-out and fan-in, `done` of compound and parallel states,
history, `always` chains, foreach bookkeeping, failures and compensation.
"""

from __future__ import annotations

import copy
from collections import deque
from datetime import datetime
from typing import Any

from .chart import TOP, Chart
from .errors import ExpressionError, ValueNotStorable
from .failures import ended_in, failure_point, instance_error, redrive_point
from .fanout import FanOut, item_pending
from .model import (
    SEPARATOR,
    CallSpec,
    Retry,
    RetryPolicy,
    State,
    TaskSpec,
)
from .regions import ChartMachine
from .steps import (
    CALL_TIMEOUT,
    CallOrder,
    Entry,
    Snapshot,
    Status,
    Step,
    TaskOrder,
    TimerOrder,
    item_timeout_key,
)
from .values import copy_json, storable

MAX_ALWAYS_STEPS = 100
_CHAIN_CUT = f"more than {MAX_ALWAYS_STEPS} eventless steps in a row; the chain was cut"
RUNNING, SUCCEEDED, FAILED = Status.RUNNING, Status.SUCCEEDED, Status.FAILED
CANCELLED, COMPENSATING = Status.CANCELLED, Status.COMPENSATING
TaskRef = tuple[str, int, int | None]  # state path, activation, foreach item


class Run(FanOut):
    """One operation's working copy of an instance, and the queue of what it causes."""

    def __init__(
        self, chart: Chart, machine: ChartMachine, snapshot: Snapshot, now: datetime
    ) -> None:
        self.definition = chart.definition
        self.chart = chart
        self.picker = machine
        owned = snapshot.owned
        self.machine = snapshot.machine if owned else copy_json(snapshot.machine)
        self.active: dict[str, int] = self.machine.setdefault("active", {})
        self.context = snapshot.context if owned else copy_json(snapshot.context)
        self.status = snapshot.status
        self.seq = snapshot.seq
        self.now = now
        self.history: list[Entry] = []
        self.tasks: list[TaskOrder] = []
        self.timers: list[TimerOrder] = []
        self.calls: list[CallOrder] = []
        self.stopped: list[tuple[str, int, int]] = []
        self.cancelled: list[tuple[str, int]] = []
        self.queue: deque[tuple[str, str, int, Any]] = deque()
        self.always_steps = 0
        self.changed = True
        self.guard_errors: list[ExpressionError] = []
        self.entering: dict[str, Any] | None = None  # names of the transition being taken
        # While an event is offered to the regions of parallel states: the domains of the
        # transitions taken so far, which a later one may not exit again (SCXML's conflict).
        self.taken: list[str] | None = None
        self.failing: dict[str, Any] | None = None  # the first failure point (redrive.py)

    def finish(self) -> Step:
        self.drain()
        if self.status != RUNNING and self.machine.pop("deadline_at", None) is not None:
            self.cancelled.append((TOP, 0))  # ended or compensating: its deadline timer goes
        if len(self.active) > 1:  # kept in document order: outermost first, regions in turn
            order = self.chart.order
            self.machine["active"] = dict(
                sorted(self.active.items(), key=lambda item: order.get(item[0], 0))
            )
        current = next((path for path in self.active if SEPARATOR not in path), None)
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
            seq=self.seq + len(self.history),
            calls=self.calls,
            stopped=self.stopped,
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

    def fail_later(
        self, path: str, activation: int, error_type: str | dict[str, Any], message: str = ""
    ) -> None:
        """Queue `failed` for the node at `path`, as if its task had failed with no attempt,
        with an error of `error_type` and `message` (or the error `error_type` is)."""
        error = error_type if isinstance(error_type, dict) else {"type": error_type}
        error.setdefault("message", message)
        self.queue.append(("failed", path, activation, {"error": error, "attempts": 0}))

    # -- the configuration -----------------------------------------------------------------
    def activation(self, path: str) -> int | None:
        """The entry of the active node at `path` (a region's is its parallel state's)."""
        if path in self.chart.branches:
            return self.active.get(Chart.parent(path))
        return self.active.get(path)

    def active_child(self, container: str) -> str | None:
        """The active child of a compound node (the top level, a compound state, a region)."""
        return next((path for path in self.active if Chart.parent(path) == container), None)

    def domain(self, source: str, target: str) -> str:
        """The innermost compound node that holds both `source` (strictly) and `target`:
        what a transition between them exits inside and enters below."""
        container = Chart.parent(source)
        while container and not (
            self.chart.is_compound(container) and Chart.inside(target, container)
        ):
            container = Chart.parent(container)
        return container

    # -- entering --------------------------------------------------------------------------
    def enter_targets(self, domain: str, targets: list[str]) -> None:
        """Enter `targets` and every node between `domain` and them, outermost first and in
        document order; a compound node with no target below enters its initial child."""
        wanted: dict[str, str] = {}  # a compound container -> the child to enter
        top = ""
        for target in targets:
            node = target
            while node != domain:
                top, node = node, Chart.parent(node)
                wanted.setdefault(node, top)
        if top:
            self.enter(top, wanted)

    def enter(self, path: str, wanted: dict[str, str]) -> None:
        chart = self.chart
        branch = chart.branches.get(path)
        if branch is not None:  # a parallel state's region: entered with its state
            activation = self.active[Chart.parent(path)]
            self.start_timers(path, branch.after, activation)
            self.enter(wanted.get(path) or chart.initial[path], wanted)
            if branch.always:
                self.queue.append(("always", path, activation, None))
            return
        state = chart.states[path]
        self.machine["counter"] = activation = int(self.machine.get("counter", 0)) + 1
        self.active[path] = activation
        self.start_timers(path, state.after, activation)
        if state.task is not None:
            self.schedule(state, state.task, activation, None, None)
        elif state.call is not None:
            self.call(state, state.call, activation)
        elif state.parallel:
            for region in state.parallel:
                self.enter(region.path, wanted)
        elif state.region is not None:
            self.enter(wanted.get(path) or chart.initial[path], wanted)
        elif state.foreach is not None:
            self.fan_out(state, activation)
        elif state.final is not None:
            self.reached_final(state)
            return
        if state.always:
            self.queue.append(("always", path, activation, None))

    def start_timers(self, path: str, timers: Any, activation: int) -> None:
        for timer in timers:  # a data timer reads the names of the transition entering
            try:
                due = timer.due(self.entering or self.names(), self.now)
            except ValueError as exc:
                self.fail_later(path, activation, "TimerError", str(exc))
            else:
                self.timers.append(TimerOrder(path, activation, timer.key, due))

    def restored(self, target: str) -> list[str]:
        """What entering `target` enters: itself, or for a history pseudo-state what it
        remembers (its parent's last active child, or every active atomic state below
        it, for deep history), else its default, else its parent's initial child."""
        state = self.chart.states.get(target)
        if state is None or state.history is None:
            return [target]
        remembered = self.machine.get("history", {}).get(target)
        if remembered:
            return list(remembered)
        if state.default is not None:
            default = self.chart.target(target, state.default)
            if default is not None:
                return [default]
        return [self.chart.initial[Chart.parent(target)]]

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

    def call(
        self,
        state: State,
        spec: CallSpec,
        activation: int,
        item: int | None = None,
        item_value: Any = None,
    ) -> None:
        """Order the child instance of a call state (or of foreach `item`, whose input is
        the item itself unless written), and its timeout timer."""
        path = state.path
        valid, value = True, self.context if item is None else item_value
        if spec.input is not None:
            names = self.names() if item is None else {**self.names(), "item": item_value}
            if item is not None:
                names["index"] = item
            valid, value = self.evaluate(spec.input, names, f"input of {path}", "input")
        if not valid:  # as a task's input that fails: the state fails, item or not
            return self.fail_later(path, activation, "InputError", "the call's input failed")
        args = (spec.definition, spec.version, copy_json(value))
        self.calls.append(CallOrder(path, activation, item, *args))
        if spec.timeout is not None:
            key = CALL_TIMEOUT if item is None else item_timeout_key(item)
            self.timers.append(TimerOrder(path, activation, key, self.now + spec.timeout))
        return None

    # -- exiting ---------------------------------------------------------------------------
    def exit_inside(self, domain: str, remember: bool = True) -> None:
        """Leave every active node inside `domain`, innermost first (reverse document
        order), once what their history pseudo-states remember is kept."""
        order = self.chart.order
        leaving = [path for path in self.active if Chart.inside(path, domain)]
        leaving.sort(key=lambda path: order.get(path, 0), reverse=True)
        if remember and self.chart.histories:
            self.remember(leaving)
        for path in leaving:
            self.leave(path)

    def leave(self, path: str) -> None:
        activation = self.active.pop(path)
        self.cancelled.append((path, activation))
        state = self.chart.states.get(path)
        for region in state.parallel if state is not None else ():
            if region.after:  # a region's timers live with its state's entry
                self.cancelled.append((region.path, activation))
        self.machine.get("foreach", {}).pop(path, None)
        results = self.machine.get("results", {})
        for key in [key for key in results if key == path or Chart.inside(key, path)]:
            del results[key]

    def remember(self, leaving: list[str]) -> None:
        """Keep, for each history pseudo-state of a node being left, what it restores."""
        chart = self.chart
        containers = [*leaving]
        for path in leaving:
            state = chart.states.get(path)
            if state is not None:
                containers.extend(region.path for region in state.parallel)
        book = self.machine.setdefault("history", {})
        for container in containers:
            for history in chart.histories.get(container, ()):
                inside = [path for path in self.active if Chart.inside(path, container)]
                if chart.states[history].history == "deep":
                    book[history] = [
                        path for path in inside if not any(Chart.inside(o, path) for o in inside)
                    ]
                else:
                    book[history] = [p for p in inside if Chart.parent(p) == container][:1]

    def reached_final(self, state: State) -> None:
        container = Chart.parent(state.path)
        branch = self.chart.branches.get(container)
        owner = container if branch is None else Chart.parent(container)  # what `state` ends
        error, seq = None, self.seq + len(self.history)  # the entry that entered `state`
        if state.final == "failed":
            spec, message, names = state.error, None, self.entering or self.names()
            if spec is not None and spec.message is not None:  # the transition's names
                what = f"error of {state.path}"
                message = self.evaluate(spec.message, names, what, "message")[1]
            error = ended_in(state, message, owner, branch.name if branch else "")
        if owner == TOP:
            if error is not None:
                self.machine["error"] = instance_error(error, state.path, seq)
            if error is not None and self.failing is not None:  # a failure led here
                self.machine["redrive"] = redrive_point(self.failing, "", self.machine, False)
            self.status = SUCCEEDED if error is None else FAILED
            return
        activation = self.active[owner]
        if error is not None:
            self.fail_later(owner, activation, error)
        elif branch is None:  # a compound state's child
            payload = {"final": state.name, "context": copy_json(self.context)}
            self.queue.append(("done", owner, activation, payload))
        elif all(self.finished(child.path) for child in self.chart.states[owner].parallel):
            children = self.chart.states[owner].parallel
            results = self.machine.get("results", {})
            payload = {child.name: results.get(child.path) for child in children}
            self.remember_result(owner, payload)
            self.queue.append(("done", owner, activation, payload))

    def finished(self, region: str) -> bool:
        """Whether a final state of the region at `region` is active."""
        return any(
            Chart.parent(path) == region and self.chart.states[path].is_final
            for path in self.active
        )

    # -- firing ----------------------------------------------------------------------------
    def fire(self, path: str, trigger: str, payload: Any, kind: str) -> bool:
        names = self.names(payload, trigger)
        spec, target, errors = self.picker.choose(path, trigger, names)
        for exc in errors:
            self.error(f"guard of {trigger!r} in {path}", exc)
        self.guard_errors.extend(errors)
        if spec is None:
            return False
        domain = ""
        if target is not None:
            domain = self.domain(path, target)
            if self.taken is not None:
                if any(_nested(domain, earlier) for earlier in self.taken):
                    # It would exit what an earlier region's transition entered: it does not
                    # fire, but its state chose it, so no state around it takes the event.
                    return True
                self.taken.append(domain)
            self.exit_inside(domain)
        updates = {}
        for key, expression in spec.assign:
            what = f"assign {key} in {path}"
            valid, value = self.evaluate(expression, names, what, f"context.{key}")
            if valid:
                updates[key] = value
        self.context.update(updates)
        label: str | None = trigger  # an event's name; a timer's or `always` reads otherwise
        if trigger.startswith(("after:", "always")):
            label = self.chart.node(path).trigger_name(trigger)
        self.history.append(Entry(kind, label, path, target or path, payload))
        if target is None:
            self.requeue_always([path, *self.chart.ancestors(path)])
            return True
        self.entering = names
        self.enter_targets(domain, self.restored(target))
        if domain:
            self.requeue_always([domain, *self.chart.ancestors(domain)], around=True)
        return True

    def requeue_always(self, nodes: list[str], around: bool = False) -> None:
        """Evaluate again the `always` of `nodes` (innermost first) that are active: after an
        internal transition, of the node and the compound states and regions around it;
        after any transition, of the compound states and regions around what it entered
        (`around`), whose `always` holds while anything inside them is active. A parallel
        state's own `always` is tried on entry only, as it always was."""
        chart = self.chart
        for index, node in enumerate(nodes):
            if (around or index) and not (chart.is_compound(node) and node):
                continue
            if chart.node(node).always:
                activation = self.activation(node)
                if activation is not None:
                    self.queue.append(("always", node, activation, None))

    def broadcast(self, event: str, payload: Any, kind: str) -> bool:
        """Offer an external event to the active configuration, innermost first."""
        top = self.active_child(TOP)
        return top is not None and self.offer(top, event, payload, kind)

    def offer(self, path: str, event: str, payload: Any, kind: str) -> bool:
        """Offer an event to the active node at `path`: to what is active inside it first
        (every region of a parallel state, in document order), then to itself."""
        accepted = False
        state = self.chart.states.get(path)
        if state is not None and state.parallel:
            activation = self.active[path]
            outer, self.taken = self.taken, [] if self.taken is None else self.taken
            for region in state.parallel:
                if self.active.get(path) != activation:
                    break  # an earlier region left the parallel state
                accepted = self.offer(region.path, event, payload, kind) or accepted
            self.taken = outer
        elif self.chart.is_compound(path):
            child = self.active_child(path)
            accepted = child is not None and self.offer(child, event, payload, kind)
        if accepted or self.activation(path) is None:
            return accepted
        return self.fire(path, event, payload, kind)

    def targeted(self, path: str, trigger: str, payload: Any, kind: str) -> bool:
        """Offer an event to one node, then to each node around it."""
        for node in (path, *self.chart.ancestors(path)):
            if self.activation(node) is not None and self.fire(node, trigger, payload, kind):
                return True
        return False

    def drain(self) -> None:
        while self.queue and self.status == RUNNING:
            what, path, activation, payload = self.queue.popleft()
            if self.activation(path) != activation:
                continue
            # `always`, and the `done` of a compound state entered again by its own `done`,
            # can loop: a chain is cut.
            self.always_steps += 1
            if self.always_steps > MAX_ALWAYS_STEPS:
                self.history.append(Entry("error", from_state=path, data={"message": _CHAIN_CUT}))
                self.stop(FAILED, {"type": "ChainCut", "message": _CHAIN_CUT}, path)
                return
            if what == "always":
                self.fire(path, "always", None, "always")
            elif what == "done":
                self.deliver_done(path, payload, "task")
            else:
                self.deliver_failed(path, payload, "task")

    # -- tasks -----------------------------------------------------------------------------
    def task_done(self, ref: TaskRef, result: Any) -> None:
        path, activation, item = ref
        if self.compensating(path, activation):
            self.history.append(Entry("compensate", "done", path, None, result))
            self.next_compensation()
            return
        book = self.machine.get("foreach", {}).get(path)
        live = self.status == RUNNING and self.active.get(path) == activation
        if not live or (item is not None and not item_pending(book, item)):
            self.history.append(Entry("stale", "done", path, None, {"result": result}))
            self.changed = True
            return
        state = self.definition.state(path)
        if item is not None and state.foreach is not None:
            self.item_succeeded(state, book, activation, item, result)
            return
        assert state.task is not None
        if state.task.compensate:
            compensation = {"state": path, "task": state.task.compensate}
            self.machine.setdefault("compensations", []).append(compensation)
        self.store_result(state.task.result, state.name, result)
        self.remember_result(path, result)
        self.deliver_done(path, result, "task")

    def deliver_done(self, path: str, payload: Any, kind: str) -> None:
        # `done` belongs to the node that finished: it never bubbles to a state around it,
        # whose own `done` means that it has finished.
        if self.fire(path, "done", payload, kind):
            return
        message = f"no 'done' transition of {path!r} accepted the result"
        self.history.append(Entry("error", "done", path, None, {"message": message}))
        owner = Chart.parent(path)
        if owner == TOP:
            self.stop(FAILED, {"type": "DoneNotAccepted", "message": message}, path)
            return
        if owner in self.chart.branches:  # a region fails its parallel state
            owner = Chart.parent(owner)
        self.fail_later(owner, self.active[owner], "DoneNotAccepted", message)

    def task_failed(self, ref: TaskRef, error: dict[str, Any], attempts: int) -> None:
        path, activation, item = ref
        if self.compensating(path, activation):
            task = self.machine["compensating"].get("task")
            details = {"message": f"compensation {task!r} failed", "error": error}
            self.history.append(Entry("error", "failed", path, None, details))
            self.next_compensation()
            return
        book = self.machine.get("foreach", {}).get(path)
        live = self.status == RUNNING and self.active.get(path) == activation
        if not live or (item is not None and not item_pending(book, item)):
            self.history.append(Entry("stale", "failed", path, None, {"error": error}))
            return
        state = self.definition.state(path)
        if item is not None and state.foreach is not None:
            self.item_failed(state, book, activation, item, error, attempts)
            return
        self.deliver_failed(path, {"error": error, "attempts": attempts}, "task")

    def deliver_failed(self, path: str, payload: Any, kind: str) -> None:
        if self.failing is None:
            self.failing = failure_point(path, self.machine)
        if not self.targeted(path, "failed", payload, kind):
            self.history.append(Entry(kind, "failed", path, None, payload))
            self.stop(FAILED, payload.get("error"), path)

    # -- the end ---------------------------------------------------------------------------
    def stop(self, outcome: str, error: Any = None, state: str = "") -> None:
        """End the instance with `outcome`, compensating completed steps first; a failure
        keeps `error`, which arose at `state` and which the last history entry records."""
        if error is not None:
            self.machine["error"] = instance_error(error, state, self.seq + len(self.history))
        if outcome == FAILED:
            self.machine["redrive"] = redrive_point(self.failing, state, self.machine, True)
        self.exit_inside(TOP, remember=False)
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
            retry=Retry((RetryPolicy(attempts=3),)),
            timeout=None,
            kind="compensate",
        )
        self.tasks.append(order)


def _nested(one: str, other: str) -> bool:
    """Whether one of two domains holds the other (or they are the same)."""
    return one == other or Chart.inside(one, other) or Chart.inside(other, one)
