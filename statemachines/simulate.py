"""A dry run of a definition without a database: the reference model of the engine.

Tasks are answered from `results` in the order they were scheduled; events are applied one by
one after all ready tasks have run, as `Engine.run_until_idle` would between sends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .calls import call_error, child_value, failure_of, newest_first
from .compile import compile_definition
from .errors import EventRejected, ValueNotStorable
from .model import MAX_CALL_DEPTH, Definition
from .steps import FINISHED, CallOrder, Entry, Snapshot, Status, Step, TaskOrder, TimerOrder, atomic
from .values import storable

MAX_TASKS = 100_000
START = datetime(2026, 1, 1, tzinfo=UTC)


class Failure:
    """A task outcome for `simulate`: the attempt fails with this message and error type
    (given alone, every attempt does)."""

    def __init__(self, message: str = "failed", type: str = "TaskError") -> None:
        self.message = message
        self.type = type

    def __repr__(self) -> str:
        return f"Failure({self.message!r}, {self.type!r})"


@dataclass
class Run:
    """Where a dry run ended and how it got there."""

    state: str
    status: str
    context: dict[str, Any]
    active: list[str]
    path: list[tuple[str | None, str | None, str | None]]
    history: list[Entry] = field(default_factory=list)
    rejected: list[EventRejected] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    # Once `failed`: {type, message, state, seq}, as the engine's `Instance.error` (`seq`
    # counts `history` from 1); None otherwise.
    error: dict[str, Any] | None = None


Outcome = Any  # a JSON value, a Failure, a list of those (one per call), or a callable


Definitions = Mapping[str, Definition] | Iterable[Definition]


class _Simulation:
    def __init__(
        self,
        definition: Definition,
        results: Mapping[str, Outcome],
        now: datetime,
        definitions: dict[str, list[Definition]] | None = None,
        depth: int = 0,
    ):
        self.compiled = compile_definition(definition)
        self.results = {k: deque(v) if isinstance(v, list) else v for k, v in results.items()}
        self.now = now
        self.tasks: deque[TaskOrder] = deque()
        self.timers: list[TimerOrder] = []
        self.at_once: list[TimerOrder] = []  # timers due when they started: a past instant
        self.snapshot = Snapshot({}, {}, Status.RUNNING)
        self.history: list[Entry] = []
        self.rejected: list[EventRejected] = []
        self.definitions = definitions or {}
        self.depth = depth
        # Children still running (by state path, activation, foreach item), and children's
        # outcomes to deliver.
        self.children: dict[tuple[str, int, int | None], _Simulation] = {}
        self.finished: deque[tuple[tuple[str, int, int | None], str, Any]] = deque()

    def apply(self, step: Step) -> None:
        self.snapshot = step.snapshot
        self.history.extend(step.history)
        gone = set(step.cancelled)
        self.tasks = deque(t for t in self.tasks if (t.state_path, t.activation) not in gone)
        self.timers = [t for t in self.timers if (t.state_path, t.activation) not in gone]
        self.tasks.extend(step.tasks)
        self.timers.extend(step.timers)
        self.at_once.extend(timer for timer in step.timers if timer.due <= self.now)
        stopped = set(step.stopped)
        for ref in [ref for ref in self.children if ref[:2] in gone or ref in stopped]:
            child = self.children.pop(ref)  # cancelled with its compensation, as the engine does
            if child.snapshot.status == Status.RUNNING:
                reason = "the parent left" if ref[:2] in gone else "it ran past its timeout"
                child.apply(child.compiled.cancel(child.snapshot, reason, self.now))
                child.settle()
        for order in step.calls:
            if (order.state_path, order.activation) not in gone:
                self.call(order)

    def call(self, order: CallOrder) -> None:
        """Answer a call from `results` (keyed by the calling state's path or name), else
        run the child from the definitions given, to its end or its first wait."""
        ref = (order.state_path, order.activation, order.item)
        for key in (order.state_path, order.state_path.rpartition(".")[2]):
            if key in self.results:
                outcome = self.answer(key, order.input)
                if isinstance(outcome, Failure):
                    error = {"type": outcome.type, "message": outcome.message}
                    self.finished.append((ref, Status.FAILED, {"error": error}))
                else:
                    self.finished.append((ref, Status.SUCCEEDED, storable(outcome, "result")))
                return
        found = [
            definition
            for definition in self.definitions.get(order.definition, [])
            if order.version is None or definition.version in (None, order.version)
        ]
        message = None
        if not found:
            message = f"definition {order.definition!r} was not given"
        elif self.depth >= MAX_CALL_DEPTH:
            message = f"calls nest deeper than {MAX_CALL_DEPTH}"
        elif not isinstance(order.input, dict):
            message = "the input of a call must be a JSON object"
        if message is not None:
            self.finished.append((ref, Status.FAILED, call_error(message)))
            return
        child = _Simulation(found[-1], {}, self.now, self.definitions, self.depth + 1)
        child.results = self.results
        child.apply(child.compiled.start(storable(order.input, "input"), self.now))
        child.settle()
        self.children[ref] = child
        self.report(ref, child)

    def report(self, ref: tuple[str, int, int | None], child: _Simulation) -> None:
        """Queue the outcome of a child that has ended."""
        final = child.snapshot
        if final.status in FINISHED:
            self.children.pop(ref, None)
            failure = failure_of(newest_first(child.history))
            name = f"{child.compiled.definition.name} (simulated)"
            value = child_value(final.status, final.context, final.machine, failure, name)
            self.finished.append((ref, final.status, value))

    def answer(self, key: str, value_input: Any) -> Any:
        value = self.results[key]
        if isinstance(value, deque):
            return value.popleft() if len(value) > 1 else value[0]
        return value(value_input) if callable(value) else value

    def outcome(self, task: TaskOrder) -> Any:
        name = task.state_path.rpartition(".")[2]
        # An undo step belongs to a state whose own task already has an answer there.
        keys = (task.name,) if task.kind == "compensate" else (task.state_path, name, task.name)
        for key in keys:
            if key in self.results:
                return self.answer(key, task.input)
        return None

    def run_tasks(self) -> None:
        count = 0
        while self.tasks or self.finished:
            count += 1
            if count > MAX_TASKS:
                raise RuntimeError(f"more than {MAX_TASKS} tasks ran; the workflow loops")
            if self.finished:
                ref, status, value = self.finished.popleft()
                self.apply(
                    self.compiled.child_finished(self.snapshot, ref, status, value, self.now)
                )
                continue
            task = self.tasks.popleft()
            outcome, attempts = self.attempts(task)
            ref = (task.state_path, task.activation, task.item)
            if isinstance(outcome, Failure):
                error = {"type": outcome.type, "message": outcome.message}
                step = self.compiled.task_failed(self.snapshot, ref, error, attempts, self.now)
            else:
                step = self.compiled.task_done(self.snapshot, ref, outcome, self.now)
            self.apply(step)

    def attempts(self, task: TaskOrder) -> tuple[Any, int]:
        """The outcome of `task`'s last attempt and how many it made. A failed attempt is
        retried as the engine retries it, by the policy its error type goes to, while that
        policy's own failures are fewer than its attempts; without the waits."""
        failures = (0,) * len(task.retry.policies)
        made = 0
        while True:
            made += 1
            outcome = self.outcome(task)
            if not isinstance(outcome, Failure):
                # As the engine does with a handler's result: stored by the one rule, or a
                # failed attempt.
                try:
                    return storable(outcome, "result"), made
                except ValueNotStorable as exc:
                    outcome = Failure(str(exc), "ResultError")
            retried = task.retry.after_failure(outcome.type, failures)
            if not retried.again:
                return outcome, made
            failures = retried.failures

    def fire_timer(self, name: str) -> bool:
        """Fire the earliest timer called `name`: `after:KEY` (`after:2d`, `after:#1`,
        `after:context.grace`) or `at:KEY` (`at:context.trial_ends - 2d`)."""
        kind, _, key = name.partition(":")
        for timer in sorted(self.timers, key=lambda order: order.due):
            found = self.compiled.chart.node(timer.state_path).timer(f"after:{timer.key}")
            written = found is not None and (found.kind, found.written) == (kind, _spaced(key))
            if (kind == "after" and timer.key == key) or written:
                self.fire(timer)
                return True
        return False

    def fire(self, timer: TimerOrder) -> None:
        self.timers.remove(timer)
        self.now = max(self.now, timer.due)
        ref = (timer.state_path, timer.activation)
        self.apply(self.compiled.timer_fired(self.snapshot, ref, timer.key, self.now))

    def settle(self) -> None:
        """Run the ready tasks, and the timers due as they started (a past instant, a delay
        of zero), as the engine's next rounds would."""
        self.run_tasks()
        while self.at_once and self.snapshot.status == Status.RUNNING:
            timer = self.at_once.pop(0)
            if timer in self.timers:
                self.fire(timer)
                self.run_tasks()


def simulate(
    definition: Definition,
    events: Iterable[str | tuple[str, Any]] = (),
    *,
    data: Mapping[str, Any] | None = None,
    results: Mapping[str, Outcome] | None = None,
    now: datetime | None = None,
    strict: bool = True,
    definitions: Definitions = (),
) -> Run:
    """Run `definition` without a database.

    `results` answers tasks, keyed by state path, state name or task name (compensation
    tasks by their task name only): a JSON value, a `Failure`, a list consumed one value per
    call (the last one repeats), or a callable given the task's input. A task is called
    once per attempt: a failed attempt is retried by its `retry` policies (without their
    waits), so `[Failure("busy", "Timeout"), {"ok": True}]` succeeds on a second attempt
    when timeouts are retried. Unanswered tasks return None. An event `after:KEY` fires the
    timer `KEY` of an active state (`after:2d`; a timer read from data by its expression,
    `after:context.grace` or `at:context.ends - 2d`), moving the clock to when it is due; a
    timer due as it starts (a past instant) fires at once. A rejected event raises
    EventRejected when `strict`, else it is kept in `Run.rejected` and the run goes on. As
    in the engine, `data`, payloads and results are stored by the rule of `storable`: data
    or a payload it refuses raises ValueNotStorable, a result it refuses fails the attempt
    (`ResultError`).

    A call state is answered from `results` under its path or name, as a task state is (a
    value is the child's final context; a `Failure` fails the call); else its child runs
    from `definitions` (Definitions, or a mapping by name) with the same `results`, to its
    end or until it waits for an event (then the call waits: `after:timeout` fires a call's
    timeout); a definition not given fails the call with CallError. A foreach that calls
    is answered the same way per item: a list under its path or name gives one answer per
    item in the order the items start, a callable is given each item's child input; a
    waiting child of item N fails its item at `after:timeout:N`.
    """
    given = definitions.values() if isinstance(definitions, Mapping) else definitions
    known: dict[str, list[Definition]] = {}
    for called in given:
        known.setdefault(called.name, []).append(called)
    sim = _Simulation(definition, results or {}, now or START, known)
    sim.apply(sim.compiled.start(storable(dict(data or {}), "data"), sim.now))
    sim.settle()
    for item in events:
        name, payload = (item, None) if isinstance(item, str) else (item[0], item[1])
        try:
            if name.startswith(("after:", "at:")) and sim.snapshot.status == Status.RUNNING:
                if not sim.fire_timer(name):
                    allowed = sim.compiled.allowed(sim.snapshot)
                    reason = f"no active state has the timer {name.replace(':', ' ', 1)!r}"
                    raise EventRejected(name, sim.snapshot.state, allowed, reason)
            else:
                payload = None if payload is None else storable(payload, "event data")
                sim.apply(sim.compiled.send(sim.snapshot, name, payload, sim.now))
        except EventRejected as exc:
            if strict:
                raise
            sim.rejected.append(exc)
        sim.settle()
    moves = ("start", "event", "task", "timer", "always", "call")
    path: list[tuple[str | None, str | None, str | None]] = [
        (entry.event, entry.from_state, entry.to_state)
        for entry in sim.history
        if entry.kind in moves and entry.to_state
    ]
    final = sim.snapshot
    return Run(
        state=final.state,
        status=final.status,
        context=final.context,
        active=atomic(final.machine.get("active", {})),
        path=path,
        history=sim.history,
        rejected=sim.rejected,
        machine=final.machine,
        error=final.machine.get("error") if final.status == Status.FAILED else None,
    )


def _spaced(text: str) -> str:
    """`text` with one space between its words, as a timer's key is kept."""
    return " ".join(text.split())
