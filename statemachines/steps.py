"""What the compiled machine reads and writes: an instance's snapshot, and the step an
operation makes from it (new snapshot, history entries, tasks and timers to create, work to
drop). Plain values: the engine persists them, `simulate` keeps them in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from .model import Retry


class Status(StrEnum):
    """An instance's status. Members are strings: they compare equal to, and are stored
    as, their values."""

    SCHEDULED = "scheduled"  # started with a later time or a debounce: not yet entered
    RUNNING = "running"
    COMPENSATING = "compensating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
# The key of a call state's timeout timer: no `after` key (a duration) is spelt so. A
# foreach's call of item N has its own, `timeout:N`.
CALL_TIMEOUT = "timeout"
# The key of the instance's deadline timer (on the top level, path ""), and the type of the
# error it fails the instance with.
DEADLINE = "deadline"
DEADLINE_EXCEEDED = "DeadlineExceeded"


def item_timeout_key(item: int) -> str:
    """The key of the timeout timer of foreach item `item`'s child."""
    return f"{CALL_TIMEOUT}:{item}"


def timed_out_item(key: str) -> int | None:
    """The foreach item whose child's timeout timer has `key`; None for any other key."""
    prefix, _, number = key.partition(":")
    return int(number) if prefix == CALL_TIMEOUT and number.isdigit() else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An instance as the machine sees it: its machine data (active states, activation
    counters, results, foreach and compensation books, its error once failed), its
    context, its status, and how many history entries it has (the last one's seq)."""

    machine: dict[str, Any]
    context: dict[str, Any]
    status: str
    seq: int = 0
    # The machine data and context are the operation's own (made for it, held by nothing
    # else): it changes them in place instead of working on a copy.
    owned: bool = field(default=False, compare=False)

    @property
    def state(self) -> str:
        """The top-level active state's name ('' before start)."""
        return str(self.machine.get("state", ""))


@dataclass(frozen=True)
class TaskOrder:
    """A task to create: run `name` with `input` for the state at `state_path`.

    `activation` identifies the entry into that state the task belongs to (a result for an
    older entry is stale); `item` is the foreach index; `kind` is 'task' or 'compensate'.
    """

    state_path: str
    activation: int
    item: int | None
    name: str
    input: Any
    retry: Retry
    timeout: timedelta | None
    kind: str = "task"


@dataclass(frozen=True)
class TimerOrder:
    """A timer to create: at `due`, `timer_fired(state_path, activation, key)`."""

    state_path: str
    activation: int
    key: str
    due: datetime


@dataclass(frozen=True)
class CallOrder:
    """A child instance to start: of `definition` (version `version`, None: the latest)
    with `input` as its data, for the call state at `state_path` entered as `activation`
    (`item`: a foreach index, None for a call state's one child)."""

    state_path: str
    activation: int
    item: int | None
    definition: str
    version: int | None
    input: Any


@dataclass(frozen=True)
class Entry:
    """A history entry to append (seq and time are the store's and the clock's)."""

    kind: str
    event: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    data: Any = None


@dataclass
class Step:
    """Everything one operation changes: the new instance data and what to persist."""

    machine: dict[str, Any]
    context: dict[str, Any]
    status: str
    history: list[Entry] = field(default_factory=list)
    tasks: list[TaskOrder] = field(default_factory=list)
    timers: list[TimerOrder] = field(default_factory=list)
    cancelled: list[tuple[str, int]] = field(default_factory=list)
    changed: bool = True
    seq: int = 0  # the history entries of the instance after this step
    calls: list[CallOrder] = field(default_factory=list)
    # Foreach items whose child is cancelled while their state stays active (a child past
    # its timeout): (state path, activation, item).
    stopped: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def snapshot(self) -> Snapshot:
        """The instance after this step, to hand to the next operation."""
        return Snapshot(self.machine, self.context, self.status, self.seq)

    @property
    def state(self) -> str:
        """The top-level active state's name ('' before start)."""
        return str(self.machine.get("state", ""))

    @property
    def active(self) -> list[str]:
        """Every active state path, outermost first."""
        return list(self.machine.get("active", {}))

    @property
    def atomic(self) -> list[str]:
        """The full name of every active atomic state (one with no active state inside)."""
        return atomic(self.machine.get("active", {}))


def atomic(active: Iterable[str]) -> list[str]:
    """The paths among `active` with no other path of `active` inside them."""
    paths = list(active)
    if len(paths) < 2:
        return paths
    return [path for path in paths if not any(other.startswith(path + ".") for other in paths)]


def deadline_timer(machine: dict[str, Any]) -> TimerOrder:
    """The deadline timer of an instance whose machine data has one (`deadline_at`), for a
    start and for an operator's move that drops every timer and must keep this one."""
    return TimerOrder("", 0, DEADLINE, datetime.fromisoformat(str(machine["deadline_at"])))
