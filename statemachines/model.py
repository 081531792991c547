"""The typed definition: what a workflow definition means once every shorthand is normalised.

Built from YAML by `build.py`; read by the compiler, the validator, the diagrams and the engine.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, Literal

from .deadlines import due_at
from .durations import format_duration
from .expressions import Expression

SEPARATOR = "."
StateKind = Literal[
    "task", "call", "parallel", "foreach", "final", "choice", "wait", "compound", "history"
]
HistoryKind = Literal["shallow", "deep"]
Outcome = Literal["succeeded", "failed"]
TimerKind = Literal["after", "at"]
DEFAULT_RESULT = "default"
# A version is stored in a 32-bit integer column (PostgreSQL's INTEGER); names, state paths,
# event names and timer durations in text columns of these many characters (engine/tables.py).
MAX_VERSION = 2_147_483_647
MAX_NAME_LENGTH = 200  # a definition's name, a task's
MAX_PATH_LENGTH = 400  # a state's full dotted path, an event's name
MAX_TIMER_KEY_LENGTH = 100  # an `after` or `at` key as written (stored: `2d`, or `#N`)
# A foreach writes one task per item it runs: its items and its tasks at a time are bounded.
MAX_FOREACH_ITEMS = 10_000
# Error types a retry policy without `errors` does not take: retrying cannot fix them (a
# handler's input that does not fit its declared type). A policy naming one retries it.
NAMED_RETRY_ONLY = frozenset({"InputMismatch"})
DEFAULT_FOREACH_CONCURRENCY = 10
MAX_FOREACH_CONCURRENCY = 1_000
# How deep calls may nest: an instance started by a call at this depth may call no further
# (its call fails with CallError), which stops a definition that calls itself without end.
MAX_CALL_DEPTH = 10


@dataclass(frozen=True)
class Position:
    """Where a thing is written: 1-based line and column in `file`."""

    line: int = 0
    column: int = 0
    file: str = "<definition>"


@dataclass(frozen=True)
class Transition:
    """One transition: to `target` (None: internal) if `guard` holds, after running `assign`."""

    target: str | None
    guard: Expression | None = None
    assign: tuple[tuple[str, Expression], ...] = ()
    position: Position = field(default=Position(), compare=False)
    catch: str | None = None  # `failed: {TYPE: ...}`: the error type its guard matches

    @property
    def internal(self) -> bool:
        return self.target is None


@dataclass(frozen=True)
class Timer:
    """An `after` or `at` entry: transitions tried when the timer is due.

    A fixed timer (`after: {2d: ...}`) is due `delay` after entering its state. A data
    timer's `value` is evaluated on entry: a delay (`after: {context.grace: ...}`) or an
    instant (`at: {context.trial_ends: ...}`) moved by `offset`; its `key` is `#N` (N-th
    data timer of its state), short and stable whatever the expression's length."""

    key: str
    delay: timedelta
    transitions: tuple[Transition, ...]
    value: Expression | None = None
    kind: TimerKind = "after"
    offset: timedelta = timedelta(0)
    written: str = ""  # a data timer's key as written: `context.trial_ends - 2d`

    @property
    def event(self) -> str:
        """The internal event name a firing of this timer is known by (`after:2d`)."""
        return f"after:{self.key}"

    @property
    def name(self) -> str:
        """How the timer reads in history and on a diagram's edge: `after 2d`, `after
        context.grace`, `at context.trial_ends - 2d`."""
        return f"{self.kind} {self.written or self.key}"

    @property
    def label(self) -> str:
        return self.name if self.value is not None else f"after {format_duration(self.delay)}"

    def due(self, names: Mapping[str, Any], now: datetime) -> datetime:
        """When the timer fires for an entry at `now` (`names`: what its expression reads).
        A data timer's value past or not positive is due at once (`now`); one that is no
        delay or instant is a ValueError naming the timer, the expression and the value."""
        if self.value is None:
            return now + self.delay
        return due_at(self.name, self.kind, self.value, self.offset, names, now)


@dataclass(frozen=True)
class RetryPolicy:
    """How a task is retried: `attempts` in total, waits growing by `backoff` up to `max_delay`.

    In a list of policies (`Retry`), one handles the failures whose error type is in
    `errors` (every type when `errors` is empty) and counts them on its own."""

    attempts: int = 1
    delay: timedelta = timedelta(seconds=1)
    backoff: float = 2.0
    max_delay: timedelta | None = None
    jitter: bool = False
    errors: tuple[str, ...] = ()

    def handles(self, error_type: str) -> bool:
        """Whether a failure of `error_type` is this policy's: it names it, or names none
        and the type is not one that only a policy naming it retries (NAMED_RETRY_ONLY)."""
        if self.errors:
            return error_type in self.errors
        return error_type not in NAMED_RETRY_ONLY

    def wait_after(self, failed_attempts: int) -> timedelta:
        """The wait before the next attempt once `failed_attempts` attempts have failed: the
        delay grown by `backoff` per failure past the first, capped by `max_delay` (and ten
        years). Exact: `next_wait` adds the jitter."""
        seconds = self.delay.total_seconds() * (self.backoff ** max(failed_attempts - 1, 0))
        if self.max_delay is not None:
            seconds = min(seconds, self.max_delay.total_seconds())
        return timedelta(seconds=min(seconds, 10 * 365 * 86400))

    def next_wait(self, failed_attempts: int) -> timedelta:
        """The wait the engine keeps before the next attempt: `wait_after`, scaled with
        `jitter` by a random factor in [0.5, 1.0]."""
        wait = self.wait_after(failed_attempts)
        return wait * random.uniform(0.5, 1.0) if self.jitter else wait

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetryPolicy:
        """The policy `to_json` gave `data` for (as a task row keeps it)."""
        max_delay = data.get("max_delay_ms")
        return cls(
            attempts=data.get("attempts", 1),
            delay=timedelta(milliseconds=data.get("delay_ms", 1000)),
            backoff=data.get("backoff", 2.0),
            max_delay=None if max_delay is None else timedelta(milliseconds=max_delay),
            jitter=bool(data.get("jitter")),
            errors=tuple(data.get("errors", ())),
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "attempts": self.attempts,
            "delay_ms": round(self.delay.total_seconds() * 1000),
            "backoff": self.backoff,
            "max_delay_ms": None
            if self.max_delay is None
            else round(self.max_delay.total_seconds() * 1000),
            "jitter": self.jitter,
        }
        if self.errors:
            data["errors"] = list(self.errors)
        return data


@dataclass(frozen=True)
class Retried:
    """What a failed attempt comes to under a task's `Retry`: the index of the policy that
    took it (None: no policy handles its type), each policy's failures counting this one,
    and whether the task is tried again."""

    policy: int | None
    failures: tuple[int, ...]
    again: bool


@dataclass(frozen=True)
class Retry:
    """A task's retry policies, in order. A failed attempt goes to the first policy that
    handles its error type (one without `errors` handles every type, and comes last); it is
    retried while that policy's own failures are fewer than its `attempts`, after that
    policy's wait. A failure no policy handles is not retried. The mapping form of `retry`
    is one policy for every type."""

    policies: tuple[RetryPolicy, ...] = (RetryPolicy(),)

    @property
    def attempts(self) -> int:
        """The most attempts the task can make: the first, plus each policy's retries."""
        return 1 + sum(policy.attempts - 1 for policy in self.policies)

    @property
    def typed(self) -> bool:
        """Whether it is more than the one policy for every type the mapping form writes."""
        return len(self.policies) != 1 or bool(self.policies[0].errors)

    def policy_for(self, error_type: str) -> int | None:
        """The index of the first policy handling `error_type`; None when none does."""
        for index, policy in enumerate(self.policies):
            if policy.handles(error_type):
                return index
        return None

    def after_failure(self, error_type: str, failures: tuple[int, ...]) -> Retried:
        """A failed attempt of `error_type`, with each policy's earlier `failures`."""
        index = self.policy_for(error_type)
        if index is None:
            return Retried(None, failures, again=False)
        counted = tuple(n + 1 if at == index else n for at, n in enumerate(failures))
        return Retried(index, counted, again=counted[index] < self.policies[index].attempts)

    def wait(self, retried: Retried) -> timedelta:
        """The wait before the attempt `retried` leads to, by the policy that took it."""
        assert retried.policy is not None
        return self.policies[retried.policy].next_wait(retried.failures[retried.policy])

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Retry:
        """The policies `to_json` gave `data` for; a single policy's mapping (as rows
        written before typed retry keep it) is the one policy for every type."""
        if "policies" in data:
            return cls(tuple(RetryPolicy.from_json(item) for item in data["policies"]))
        return cls((RetryPolicy.from_json(data),))

    def to_json(self) -> dict[str, Any]:
        """As a task row keeps it: the one policy's mapping, else `{policies: [...]}`."""
        if not self.typed:
            return self.policies[0].to_json()
        return {"policies": [policy.to_json() for policy in self.policies]}


@dataclass(frozen=True)
class TaskSpec:
    """The work a task state (or a foreach item) schedules on entry."""

    name: str
    input: Expression | None = None
    result: str | bool = DEFAULT_RESULT  # DEFAULT_RESULT, a context key, or False (drop)
    retry: Retry = Retry()
    timeout: timedelta | None = None
    compensate: str | None = None


@dataclass(frozen=True)
class Tolerance:
    """How many failed items a foreach tolerates: `count` items, or `percent` (as written,
    without its '%') of the items it fanned out over, rounded down."""

    count: int = 0
    percent: str | None = None

    def allowed(self, items: int) -> int:
        """The number of failed items tolerated out of `items` (exact: 29% of 100 is 29)."""
        if self.percent is None:
            return self.count
        return math.floor(Fraction(self.percent) * items / 100)

    @property
    def label(self) -> str:
        return str(self.count) if self.percent is None else f"{self.percent}%"


@dataclass(frozen=True)
class NamedError:
    """The `error` of a `final: failed` state: the failure's `type`, and an expression
    giving its `message` (None: a message saying which state the run ended in)."""

    type: str
    message: Expression | None = None


@dataclass(frozen=True)
class CallSpec:
    """A call state's child: an instance of the deployed `definition` (version `version`,
    None: the latest when the state is entered), started on entry with `input` (None: the
    whole context); its final context is stored by `result` as a task's result is. Past
    `timeout` the child is cancelled and the state gets `failed` (Timeout)."""

    definition: str
    version: int | None = None
    input: Expression | None = None
    result: str | bool = DEFAULT_RESULT
    timeout: timedelta | None = None


@dataclass(frozen=True)
class Foreach:
    """Dynamic fan-out: one `task` per element of `items` (or, with `call` instead, one child
    instance), at most `concurrency` at a time (None: not written,
    DEFAULT_FOREACH_CONCURRENCY). With `tolerate` written, failed items up to its number
    are recorded and the others go on (None: the first failure fails it). Exactly one of
    `task` and `call` is set."""

    items: Expression
    task: TaskSpec | None
    concurrency: int | None = None
    tolerate: Tolerance | None = None
    call: CallSpec | None = None

    @property
    def result(self) -> str | bool:
        """How the list of results is stored: the `result` written with the task or call."""
        spec = self.task or self.call
        return spec.result if spec is not None else DEFAULT_RESULT


class Reactions:
    """What a state, or a parallel state's region, reacts to: its `on` events, `after` and
    `at` timers (both in `after`: the `after` entries, then the `at` ones) and `always`
    transitions."""

    on: tuple[tuple[str, tuple[Transition, ...]], ...]
    after: tuple[Timer, ...]
    always: tuple[Transition, ...]

    @property
    def events(self) -> dict[str, tuple[Transition, ...]]:
        return dict(self.on)

    def transitions_for(self, event: str) -> tuple[Transition, ...]:
        for name, transitions in self.on:
            if name == event:
                return transitions
        timer = self.timer(event)
        return timer.transitions if timer is not None else ()

    def timer(self, event: str) -> Timer | None:
        """The timer whose firing is known as `event` (`after:2d`, `after:#1`), if any."""
        if event.startswith("after:"):
            for timer in self.after:
                if timer.event == event:
                    return timer
        return None

    def trigger_name(self, trigger: str) -> str | None:
        """How a trigger reads in history: a timer's name (`after 2d`, `at context.ends`),
        an event's name, None for `always`."""
        timer = self.timer(trigger)
        if timer is not None:
            return timer.name
        if trigger.startswith("after:"):
            return f"after {trigger[6:]}"
        return None if trigger == "always" else trigger

    def all_transitions(self) -> Iterator[tuple[str, Transition]]:
        """(trigger, transition) pairs in file order: `on` events, timers, then `always`."""
        for event, transitions in self.on:
            for transition in transitions:
                yield event, transition
        for timer in self.after:
            for transition in timer.transitions:
                yield timer.event, transition
        for transition in self.always:
            yield "always", transition


@dataclass(frozen=True)
class State(Reactions):
    """One state. `path` is its full dotted name: `shipping.packing` inside a compound
    state, `ship.label.buy_label` inside a parallel state's region.

    A compound state holds its children in `region` (whose path is the state's own); a
    history pseudo-state (kind 'history') has `history` and, optionally, a `default`."""

    name: str
    path: str
    kind: StateKind
    description: str | None = None
    task: TaskSpec | None = None
    call: CallSpec | None = None
    parallel: tuple[Region, ...] = ()
    foreach: Foreach | None = None
    final: Outcome | None = None
    on: tuple[tuple[str, tuple[Transition, ...]], ...] = ()
    after: tuple[Timer, ...] = ()
    always: tuple[Transition, ...] = ()
    region: Region | None = None
    history: HistoryKind | None = None
    default: Transition | None = None
    position: Position = field(default=Position(), compare=False)
    error: NamedError | None = None  # a `final: failed` state's named failure

    @property
    def is_final(self) -> bool:
        return self.final is not None

    @property
    def compensate(self) -> str | None:
        return self.task.compensate if self.task else None


@dataclass(frozen=True)
class Region(Reactions):
    """A graph of states with an initial one: the top level, a branch of a parallel state,
    or the children of a compound state (then its path is the compound state's).

    `shorthand` marks a one-task branch written as `{task: ...}`, normalised into a task state
    named like the branch followed by a final state named `finished`. A branch written in
    full may react to events, timers and `always` like a state (`on`, `after`, `always`).
    """

    name: str
    path: str
    initial: str
    states: tuple[State, ...]
    shorthand: bool = False
    position: Position = field(default=Position(), compare=False)
    compound: bool = False  # the children of a compound state, not a parallel branch
    on: tuple[tuple[str, tuple[Transition, ...]], ...] = ()
    after: tuple[Timer, ...] = ()
    always: tuple[Transition, ...] = ()

    def state(self, name: str) -> State:
        for state in self.states:
            if state.name == name:
                return state
        raise KeyError(name)

    def names(self) -> list[str]:
        return [state.name for state in self.states]


@dataclass(frozen=True)
class Definition:
    """A loaded, validated workflow definition."""

    name: str
    version: int | None
    description: str | None
    input_schema: dict[str, Any] | None
    root: Region
    source: str = ""
    file: str = "<definition>"
    digest: str = ""
    warnings: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # How long after finishing an instance is kept (None: for ever); workers purge it then.
    retention: timedelta | None = None
    # How long an instance may run, from its start, before it fails with DeadlineExceeded
    # (None: no limit); a start may give its own.
    deadline: timedelta | None = None

    @property
    def initial(self) -> str:
        return self.root.initial

    @property
    def states(self) -> tuple[State, ...]:
        """The top-level states, in file order."""
        return self.root.states

    def walk(self) -> Iterator[State]:
        """Every state at every depth, parents before their regions' states, in file order."""
        yield from _walk(self.root)

    def regions(self) -> Iterator[Region]:
        """Every region, the top level first: parallel branches and compound states'
        children, each after the state holding it."""
        yield self.root
        for state in self.walk():
            if state.region is not None:
                yield state.region
            yield from state.parallel

    def state(self, path: str) -> State:
        """The state with this dotted path; KeyError if there is none."""
        return self._index[path]

    def has_state(self, path: str) -> bool:
        return path in self._index

    @functools.cached_property
    def _index(self) -> dict[str, State]:
        return {state.path: state for state in self.walk()}

    @functools.cached_property
    def work(self) -> dict[str, tuple[bool, bool, bool]]:
        """For each state path, what an entry of it may start that its exit drops: foreach
        items' tasks, its own task, timers (its own, or the timeouts of its calls)."""
        return {
            state.path: (
                state.foreach is not None,
                state.task is not None,
                bool(state.after)
                or state.call is not None
                or (state.foreach is not None and state.foreach.call is not None),
            )
            for state in self.walk()
        }

    @property
    def events(self) -> list[str]:
        """External event names the definition reacts to, in first-use order."""
        seen: dict[str, None] = {}
        for state in self.walk():
            for event, _ in state.on:
                if event not in ("done", "failed"):
                    seen.setdefault(event, None)
        return list(seen)

    @property
    def tasks(self) -> list[str]:
        """Every task name (including compensations and foreach tasks), in first-use order."""
        seen: dict[str, None] = {}
        for state in self.walk():
            spec = state.task or (state.foreach.task if state.foreach else None)
            if spec:
                seen.setdefault(spec.name, None)
                if spec.compensate:
                    seen.setdefault(spec.compensate, None)
        return list(seen)

    @functools.cached_property
    def calls(self) -> list[str]:
        """Every definition a call state or a foreach names, in first-use order."""
        seen: dict[str, None] = {}
        for state in self.walk():
            spec = state.call or (state.foreach.call if state.foreach else None)
            if spec is not None:
                seen.setdefault(spec.definition, None)
        return list(seen)

    def calls_at(self, path: str) -> CallSpec | None:
        """The call the state at `path` makes (a call state's, or a foreach's per item)."""
        if not self.has_state(path):
            return None
        state = self.state(path)
        return state.call or (state.foreach.call if state.foreach else None)


def _walk(region: Region) -> Iterator[State]:
    for state in region.states:
        yield state
        if state.region is not None:
            yield from _walk(state.region)
        for child in state.parallel:
            yield from _walk(child)


def join(*parts: str) -> str:
    """The dotted path of nested names, skipping empty ones."""
    return SEPARATOR.join(part for part in parts if part)


def parent_path(path: str) -> str:
    """The path of the region holding state `path` ('' for the top level)."""
    return path.rpartition(SEPARATOR)[0]
