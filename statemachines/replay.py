"""Replay of a recorded history through a definition: the instance rebuilt entry by entry.

An instance's history records what happened to it (its start, the events it took, its tasks'
outcomes, its timers, its children's ends) together with what each of those did (the
transitions taken, the work scheduled). Replay feeds the first kind back into a definition's
machine, with the time each was recorded at, and checks that the machine writes the second
kind exactly as recorded. Against the definition the instance ran on it rebuilds the instance
as it stood after any entry (time travel); against another version it tells whether that
version would have taken the same path (migration), and where it would first have differed.

The history is read transaction by transaction: one entry is an input (an operation of the
engine), the entries the machine writes for it follow it, and the engine's own notes (a child
started, a retry planned, a late answer set aside, a fault) are recognised by their kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from .compile import CompiledMachine, compile_definition
from .errors import EventRejected, TurnoutError, ValueNotStorable
from .failures import faulted
from .model import Definition
from .steps import (
    CALL_TIMEOUT,
    FINISHED,
    CallOrder,
    Entry,
    Snapshot,
    Status,
    Step,
    TaskOrder,
    TimerOrder,
    atomic,
    item_timeout_key,
)
from .values import storable

# Entries that record work set aside or planned again, and change nothing else.
NOTES = frozenset({"retry", "stale"})
# Entries an operator's or the engine's own action wrote, replayed by `Replayer.operator`.
OPERATOR_KINDS = frozenset({"redrive", "reset", "migrated"})
REPLANNED = frozenset({"redrive", "reset"})  # operator entries after which all work is new


class Recorded(Protocol):
    """A history entry as the engine records it (`HistoryEntry`) or exports it."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def kind(self) -> str: ...
    @property
    def event(self) -> str | None: ...
    @property
    def from_state(self) -> str | None: ...
    @property
    def to_state(self) -> str | None: ...
    @property
    def data(self) -> Any: ...


@dataclass(frozen=True)
class RecordedEntry:
    """One history entry read back from its JSON form (`turnout history --json`)."""

    seq: int
    at: datetime
    kind: str
    event: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    data: Any = None

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RecordedEntry:
        at = value["at"]
        return cls(
            int(value["seq"]),
            at if isinstance(at, datetime) else datetime.fromisoformat(str(at)),
            str(value["kind"]),
            value.get("event"),
            value.get("from_state"),
            value.get("to_state"),
            value.get("data"),
        )


@dataclass(frozen=True)
class Point:
    """The instance as it stood once one transaction of its history had committed: the
    entries `first`..`last` it wrote, at `at`, as `revision` (1 after its start)."""

    first: int
    last: int
    at: datetime
    revision: int
    version: int | None
    machine: dict[str, Any]
    context: dict[str, Any]
    status: str

    @property
    def state(self) -> str:
        return str(self.machine.get("state", ""))

    @property
    def active(self) -> list[str]:
        return atomic(self.machine.get("active", {}))

    @property
    def error(self) -> dict[str, Any] | None:
        error = self.machine.get("error")
        return error if self.status == Status.FAILED and isinstance(error, dict) else None


@dataclass(frozen=True)
class Divergence:
    """Where replay first differed from the history: entry `seq` as recorded, what the
    machine wrote in its place (None: nothing), and why."""

    seq: int
    recorded: dict[str, Any]
    replayed: dict[str, Any] | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.reason}"


@dataclass
class Replay:
    """What replaying a history gave: the instance after each transaction (`points`, oldest
    first), where replay stopped differing from the record (`divergence`; None: it did not),
    and the work the instance has outstanding at the end (tasks, timers and calls the last
    point leaves pending, keyed as the engine keys them)."""

    points: list[Point]
    divergence: Divergence | None = None
    tasks: dict[tuple[str, int, int | None, str], TaskOrder] = field(default_factory=dict)
    timers: dict[tuple[str, int, str], TimerOrder] = field(default_factory=dict)
    calls: dict[tuple[str, int, int | None], CallOrder] = field(default_factory=dict)

    @property
    def final(self) -> Point | None:
        return self.points[-1] if self.points else None

    @property
    def matches(self) -> bool:
        """Whether every entry of the history replayed as recorded."""
        return self.divergence is None

    def forget(self) -> None:
        """No work outstanding (the instance has ended)."""
        self.tasks.clear()
        self.timers.clear()
        self.calls.clear()

    def at(self, seq: int) -> Point | None:
        """The instance once the transaction that wrote entry `seq` had committed; None for
        a `seq` beyond what replayed."""
        for point in self.points:
            if point.first <= seq <= point.last:
                return point
        return None


Operator = Callable[[CompiledMachine, Snapshot, Recorded], tuple[Step, CompiledMachine]]
Machines = Callable[[int], CompiledMachine]


def replay(
    definition: Definition | CompiledMachine,
    history: Iterable[Recorded],
    *,
    version: int | None = None,
    machines: Machines | None = None,
    operator: Operator | None = None,
    until: int | None = None,
) -> Replay:
    """Replay `history` (oldest first, from its `start` entry) through `definition`.

    `version` is the number of the version `definition` is, and `machines` gives another
    version's machine by number (a `migrated` entry names the version the instance moved to);
    `operator` replays the entries an operator's action wrote (`redrive`, `reset`,
    `migrated`), which are the engine's; without one they end replay as a divergence. An
    operator returns the step the entry made and the machine replay goes on with: another
    machine (a migration's new version) re-plans the work, and the step's tasks, timers and
    calls are then all the instance has outstanding.
    `until` stops after the transaction that wrote entry `until`.
    """
    machine = definition if isinstance(definition, CompiledMachine) else None
    machine = machine or compile_definition(definition)  # type: ignore[arg-type]
    replayer = Replayer(machine, version, machines, operator)
    return replayer.run(list(history), until)


class Replayer:
    """One replay: the machine, the instance so far, and its outstanding work."""

    def __init__(
        self,
        machine: CompiledMachine,
        version: int | None,
        machines: Machines | None,
        operator: Operator | None,
    ) -> None:
        self.machine = machine
        self.version = version
        self.machines = machines
        self.operator_step = operator
        self.snapshot = Snapshot({}, {}, Status.RUNNING, 0)
        self.result = Replay([])

    def run(self, history: list[Recorded], until: int | None) -> Replay:
        position = 0
        while position < len(history):
            entry = history[position]
            if until is not None and entry.seq > until:
                break
            if entry.seq != self.snapshot.seq + 1:
                reason = f"the history skips from entry {self.snapshot.seq} to {entry.seq}"
                self.diverge(entry, None, reason)
                break
            written = self.transaction(history, position)
            if written == 0:
                break
            position += written
        return self.result

    # -- one transaction -------------------------------------------------------------------
    def transaction(self, history: list[Recorded], position: int) -> int:
        """Replay the transaction that begins at `history[position]`; how many entries it
        wrote (0: replay diverged there)."""
        entry = history[position]
        if entry.kind in NOTES:
            self.commit(Step(self.snapshot.machine, self.snapshot.context, self.snapshot.status))
            return self.wrote(history, position, 1)
        if entry.kind == "call" and entry.event is None and self.result.points:
            # A child started: noted in the transaction of the step that called it.
            return self.wrote(history, position, 1, amend=True)
        if entry.kind in OPERATOR_KINDS:
            return self.operator(history, position)
        # The errors an expression raised are written before the entry of what it was part
        # of (a guard's before its transition's): the input is the first entry after them.
        lead = position
        while lead < len(history) - 1 and _engine_error(history[lead]):
            lead += 1
        candidates = list(self.candidates(history[lead]))
        first_miss: tuple[int, dict[str, Any] | None, str] | None = None
        for attempt in candidates:
            try:
                step = attempt()
            except EventRejected as exc:
                first_miss = first_miss or (lead, None, f"the definition rejects it: {exc}")
                continue
            except TurnoutError as exc:
                first_miss = first_miss or (lead, None, str(exc))
                continue
            miss = self.compare(step.history, history, position)
            if miss is None:
                amend = self.same_call_failure(entry)
                self.commit(step)
                return self.wrote(history, position, len(step.history), amend=amend)
            first_miss = first_miss or miss
        if _engine_error(entry) and self.snapshot.seq > 0:
            # An operation that failed for the instance's own fault (the engine's entry).
            self.commit(self.fault(entry))
            self.result.forget()
            return self.wrote(history, position, 1)
        if first_miss is None:
            self.diverge(history[lead], None, self.unexplained(history[lead]))
            return 0
        at, replayed, reason = first_miss
        self.diverge(history[at] if at < len(history) else entry, replayed, reason)
        return 0

    def candidates(self, entry: Recorded) -> Iterable[Callable[[], Step]]:
        """The operations that could have written `entry` first, most likely first."""
        machine, snapshot, now = self.machine, self.snapshot, entry.at
        kind, event, path, data = entry.kind, entry.event, entry.from_state or "", entry.data
        if kind == "start":
            if snapshot.seq == 0 and isinstance(data, dict):
                yield lambda: machine.start(data, now)
            return
        if snapshot.seq == 0:
            return
        if kind == "event" and event is not None:
            yield lambda: machine.send(snapshot, event, data, now)
        elif kind == "cancel":
            reason = data.get("reason") if isinstance(data, dict) else None
            yield lambda: machine.cancel(snapshot, reason, now)
        elif kind == "timer":
            for order in self.pending_timers(path):
                ref = (order.state_path, order.activation)
                yield _bound(machine.timer_fired, snapshot, ref, order.key, now)
        elif kind in ("task", "compensate", "error") and event in ("done", "failed"):
            yield from self.answers(entry, kind == "task")
        elif kind == "call" and event in ("done", "failed"):
            yield from self.child_ends(entry)

    def answers(self, entry: Recorded, task_kind: bool) -> Iterable[Callable[[], Step]]:
        """A task's result (`done`) or its last failed attempt (`failed`), for each pending
        task the entry can be about: of its state, or of a state inside it (a `failed`
        caught around the task's state)."""
        machine, snapshot, now, data = self.machine, self.snapshot, entry.at, entry.data
        index = data.get("index") if isinstance(data, dict) else None
        path = entry.from_state or ""
        for order in self.pending_tasks(path):
            ref = (order.state_path, order.activation, order.item)
            if order.item is not None and order.item != index and task_kind:
                continue
            if entry.event == "done":
                result = data
                if order.item is not None and isinstance(data, dict):
                    result = data.get("result")
                yield _bound(machine.task_done, snapshot, ref, result, now)
            else:
                found = data if isinstance(data, dict) else {}
                error = _own_error(found) if order.item is not None else found.get("error")
                error = error if isinstance(error, dict) else found
                attempts = found.get("attempts", 1)
                yield _bound(machine.task_failed, snapshot, ref, error, attempts, now)

    def child_ends(self, entry: Recorded) -> Iterable[Callable[[], Step]]:
        """A child's end (or its call's timeout) reported to the calling state."""
        machine, snapshot, now, data = self.machine, self.snapshot, entry.at, entry.data
        index = data.get("index") if isinstance(data, dict) else None
        for order in self.pending_calls(entry.from_state or ""):
            if order.item is not None and order.item != index:
                continue
            ref = (order.state_path, order.activation, order.item)
            if entry.event == "done":
                value = (
                    data.get("result")
                    if order.item is not None and isinstance(data, dict)
                    else data
                )
                yield _bound(machine.child_finished, snapshot, ref, Status.SUCCEEDED, value, now)
            else:
                value = {**data, "error": _own_error(data)} if isinstance(data, dict) else data
                yield _bound(machine.child_finished, snapshot, ref, Status.FAILED, value, now)
                key = CALL_TIMEOUT if order.item is None else item_timeout_key(order.item)
                timer_ref = (order.state_path, order.activation)
                yield _bound(machine.timer_fired, snapshot, timer_ref, key, now)

    def operator(self, history: list[Recorded], position: int) -> int:
        entry = history[position]
        if self.operator_step is None:
            self.diverge(entry, None, f"a {entry.kind!r} entry is replayed by the engine only")
            return 0
        try:
            step, machine = self.operator_step(self.machine, self.snapshot, entry)
        except TurnoutError as exc:
            self.diverge(entry, None, str(exc))
            return 0
        # A redrive or a reset drops all the instance's work (the engine's does), and a move
        # to another version's machine replans it: what is outstanding after either is what
        # its step made. Replayed on the same version, a migration changes no work.
        if machine is not self.machine or entry.kind in REPLANNED:
            self.result.forget()
        self.machine = machine
        if entry.kind == "migrated" and isinstance(entry.data, dict):
            self.version = entry.data.get("to_version", self.version)
        miss = self.compare(step.history, history, position)
        if miss is not None:
            at, replayed, reason = miss
            self.diverge(history[at] if at < len(history) else entry, replayed, reason)
            return 0
        self.commit(step)
        return self.wrote(history, position, max(len(step.history), 1))

    # -- comparing and committing ----------------------------------------------------------
    def compare(
        self, written: Sequence[Entry], history: list[Recorded], position: int
    ) -> tuple[int, dict[str, Any] | None, str] | None:
        """None when `written` is what the history holds from `position` on; else where it
        first differs, what replay wrote there, and why."""
        for offset, made in enumerate(written):
            mine = entry_json(made)
            if position + offset >= len(history):
                return position + offset, mine, "replay writes more entries than the history has"
            theirs = entry_json(history[position + offset])
            if mine != theirs:
                return position + offset, mine, _difference(theirs, mine)
        if not written:
            return position, None, "the definition does nothing with it"
        return None

    def commit(self, step: Step) -> None:
        """The instance after `step`: its snapshot (its seq is `wrote`'s), its work."""
        self.snapshot = Snapshot(step.machine, step.context, step.status, self.snapshot.seq)
        work = self.result
        gone = set(step.cancelled)
        if step.status in FINISHED:
            work.forget()
        tables: tuple[dict[Any, Any], ...] = (work.tasks, work.timers, work.calls)
        for table in tables:
            for key in [key for key in table if (key[0], key[1]) in gone]:
                del table[key]
        for path, activation, item in step.stopped:
            work.calls.pop((path, activation, item), None)
        for task in step.tasks:
            work.tasks[(task.state_path, task.activation, task.item, task.kind)] = task
        for timer in step.timers:
            work.timers[(timer.state_path, timer.activation, timer.key)] = timer
        for call in step.calls:
            work.calls[(call.state_path, call.activation, call.item)] = call

    def wrote(self, history: list[Recorded], position: int, count: int, amend: bool = False) -> int:
        """Record the point the transaction at `position` (`count` entries) leaves; with
        `amend`, the entries belong to the transaction before."""
        last = history[position + count - 1]
        self.snapshot = Snapshot(
            self.snapshot.machine, self.snapshot.context, self.snapshot.status, last.seq
        )
        points = self.result.points
        if amend and points:
            before = points[-1]
            points[-1] = Point(
                before.first,
                last.seq,
                before.at,
                before.revision,
                self.version,
                self.snapshot.machine,
                self.snapshot.context,
                self.snapshot.status,
            )
            return count
        revision = points[-1].revision + 1 if points else 1
        points.append(
            Point(
                history[position].seq,
                last.seq,
                history[position].at,
                revision,
                self.version,
                self.snapshot.machine,
                self.snapshot.context,
                self.snapshot.status,
            )
        )
        return count

    def fault(self, entry: Recorded) -> Step:
        """What the engine writes when an operation fails for the instance's own fault: the
        instance ends failed (a finished one keeps its status) keeping the error."""
        snapshot = self.snapshot
        state = str(snapshot.machine.get("state", ""))
        status, machine = faulted(
            snapshot.machine, snapshot.status, state, entry.data, snapshot.seq + 1
        )
        return Step(machine, snapshot.context, status)

    def same_call_failure(self, entry: Recorded) -> bool:
        """Whether `entry` is a call that could not start, failed in the transaction of the
        step that made it (the engine's CallError)."""
        data = entry.data if isinstance(entry.data, dict) else {}
        error = data.get("error")
        error = error if isinstance(error, dict) else {}
        points = self.result.points
        return (
            entry.kind == "call"
            and entry.event == "failed"
            and error.get("type") == "CallError"
            and bool(points)
            and points[-1].at == entry.at
        )

    def diverge(self, entry: Recorded, replayed: dict[str, Any] | None, reason: str) -> None:
        self.result.divergence = Divergence(entry.seq, entry_json(entry), replayed, reason)

    def unexplained(self, entry: Recorded) -> str:
        if entry.kind == "start":
            return "a history replays from its start entry, once"
        if self.snapshot.seq == 0:
            return "the history does not begin with a start entry"
        return f"no pending work of the replayed instance explains a {entry.kind!r} entry here"

    # -- outstanding work ------------------------------------------------------------------
    def pending_tasks(self, path: str) -> list[TaskOrder]:
        return [task for task in self.result.tasks.values() if _within(task.state_path, path)]

    def pending_timers(self, path: str) -> list[TimerOrder]:
        return [timer for timer in self.result.timers.values() if timer.state_path == path]

    def pending_calls(self, path: str) -> list[CallOrder]:
        return [call for call in self.result.calls.values() if _within(call.state_path, path)]


def entry_json(entry: Entry | Recorded) -> dict[str, Any]:
    """The parts of a history entry replay compares, as stored."""
    data = entry.data
    try:
        data = storable(data)
    except ValueNotStorable:
        pass
    return {
        "kind": entry.kind,
        "event": entry.event,
        "from_state": entry.from_state,
        "to_state": entry.to_state,
        "data": data,
    }


def _difference(recorded: dict[str, Any], replayed: dict[str, Any]) -> str:
    parts = [key for key in recorded if recorded[key] != replayed.get(key)]
    shown = ", ".join(
        f"{key} {recorded[key]!r} recorded, {replayed.get(key)!r} replayed" for key in parts
    )
    return f"replay differs: {shown}"


def _own_error(payload: dict[str, Any]) -> Any:
    """The error of the foreach item a `failed` payload is about: once more items failed than
    `tolerate` allows, the payload's error is the state's and the item's own is among the
    `failures`."""
    failures = payload.get("failures")
    if isinstance(failures, list):
        for failure in failures:
            if isinstance(failure, dict) and failure.get("index") == payload.get("index"):
                return failure.get("error")
    return payload.get("error")


def _engine_error(entry: Recorded) -> bool:
    """Whether `entry` is an error of no trigger: an expression's (among a step's entries)
    or the engine's own (a fault, in a transaction of its own)."""
    return entry.kind == "error" and entry.event is None


def _within(path: str, around: str) -> bool:
    return path == around or path.startswith(around + ".")


def _bound(operation: Callable[..., Step], *args: Any) -> Callable[[], Step]:
    return lambda: operation(*args)
