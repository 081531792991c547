"""Time travel: an instance as it stood after any entry of its history, rebuilt by replaying
that history through the versions it ran on (`statemachines.replay`).

The engine keeps one row per instance, as it is now, and every entry of its history; an
earlier snapshot is not stored but made again, the way the engine made it the first time.
A point in the history is the commit of one transaction: `get(at=SEQ)` is the instance once
the transaction that wrote entry SEQ had committed (an event's entry and the transitions,
task results and `always` steps that followed it in that transaction are one point).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from statemachines import CompiledMachine, Snapshot, Step
from statemachines.errors import InvalidInput, TurnoutError
from statemachines.migration import migrated_again
from statemachines.operators import replay_redrive, replay_reset
from statemachines.replay import Operator, Point, Recorded, Replay, replay

from .records import HistoryEntry, Instance
from .rows import InstanceRow
from .store import Store

Machines = Callable[[str, int], CompiledMachine]


class HistoryNotReplayable(TurnoutError):
    """The instance's history does not replay through the versions it ran on (its rows
    were changed by hand, or its definition's version is gone) past entry `seq`."""

    def __init__(self, instance_id: str, seq: int, reason: str) -> None:
        super().__init__(
            f"the history of instance {instance_id} does not replay past entry {seq - 1}: {reason}"
        )
        self.seq = seq


def first_version(row: InstanceRow, history: Sequence[HistoryEntry]) -> int:
    """The version the instance started on: the one its first migration left, else its own."""
    for entry in history:
        if entry.kind == "migrated" and isinstance(entry.data, dict):
            return int(entry.data.get("from_version", row.version))
    return row.version


@dataclass(frozen=True)
class Rebuild:
    """What an operator's entry is replayed with: the instance's whole history, oldest
    first, and the compiled machine of each version of its definition."""

    history: Sequence[Recorded]
    machine_of: Callable[[int], CompiledMachine]


RebuildStep = Callable[[Rebuild, CompiledMachine, Snapshot, Recorded], tuple[Step, CompiledMachine]]


def _migrated(
    rebuild: Rebuild, machine: CompiledMachine, snapshot: Snapshot, entry: Recorded
) -> tuple[Step, CompiledMachine]:
    """A migration, made again on the version it moved to (`migrated_again`)."""
    data = entry.data if isinstance(entry.data, dict) else {}
    to_version = data.get("to_version")
    if not isinstance(to_version, int):
        raise TurnoutError("the migrated entry does not name the version it moved to")
    new = rebuild.machine_of(to_version)
    return migrated_again(entry, snapshot, new, rebuild.history), new


# The entries written by operators' actions (not by the machine), replayed by kind: the
# function makes the step again and names the machine replay goes on with.
OPERATORS: dict[str, RebuildStep] = {
    "migrated": _migrated,
    "redrive": lambda rebuild, machine, snapshot, entry: replay_redrive(machine, snapshot, entry),
    "reset": lambda rebuild, machine, snapshot, entry: replay_reset(machine, snapshot, entry),
}


def operator_for(
    history: Sequence[Recorded], machine_of: Callable[[int], CompiledMachine]
) -> Operator:
    """The replay operator of one instance: each operator's entry by its OPERATORS function."""
    rebuild = Rebuild(history, machine_of)

    def operate(
        machine: CompiledMachine, snapshot: Snapshot, entry: Recorded
    ) -> tuple[Step, CompiledMachine]:
        found = OPERATORS.get(entry.kind)
        if found is None:
            raise TurnoutError(f"a {entry.kind!r} entry cannot be replayed here")
        return found(rebuild, machine, snapshot, entry)

    return operate


def replayed(
    row: InstanceRow,
    history: Sequence[HistoryEntry],
    machines: Machines,
    operator: Operator | None = None,
    until: int | None = None,
) -> Replay:
    """The instance's history replayed through the versions it ran on (an operator's entry
    by `operator`, default its OPERATORS function)."""
    version = first_version(row, history)

    def machine_of(number: int) -> CompiledMachine:
        return machines(row.definition, number)

    return replay(
        machine_of(version),
        history,
        version=version,
        machines=machine_of,
        operator=operator or operator_for(history, machine_of),
        until=until,
    )


def looked_back(
    store: Store, row: InstanceRow, seq: int, machines: Machines
) -> tuple[Point, list[HistoryEntry]]:
    """The point of instance `row` that holds entry `seq`, and its history up to then."""
    history = store.history(row.id, row.definition)
    point = point_at(row, history, seq, machines)
    return point, entries_until(history, point)


def point_at(
    row: InstanceRow,
    history: Sequence[HistoryEntry],
    seq: int,
    machines: Machines,
    operator: Operator | None = None,
) -> Point:
    """The point of the instance's history that holds entry `seq`."""
    if not 1 <= seq <= row.history_seq:
        raise InvalidInput(f"at must be between 1 and {row.history_seq}, the instance's entries")
    found = replayed(row, history, machines, operator, until=seq)
    point = found.at(seq)
    if point is None:
        divergence = found.divergence
        where = divergence.seq if divergence is not None else seq
        reason = divergence.reason if divergence is not None else "it ends before that entry"
        raise HistoryNotReplayable(row.id, where, reason)
    return point


def points_around(
    row: InstanceRow, found: Replay, first: int, last: int
) -> tuple[Point | None, Point]:
    """The instance before and after the transaction that wrote entries `first` to `last`
    (None before its start), from a replay of its history to `last` or further: what a
    durable hook compares."""
    after = found.at(last)
    if after is None:
        divergence = found.divergence
        where = divergence.seq if divergence is not None else last
        reason = divergence.reason if divergence is not None else "it ends before that entry"
        raise HistoryNotReplayable(row.id, where, reason)
    return (found.at(first - 1) if first > 1 else None), after


def instance_at(row: InstanceRow, point: Point) -> Instance:
    """The caller-facing snapshot of `row`'s instance at `point`."""
    return Instance(
        id=row.id,
        key=row.key,
        definition=row.definition,
        version=point.version if point.version is not None else row.version,
        state=point.state,
        active=point.active,
        status=point.status,
        context=point.context,
        created_at=row.created_at,
        updated_at=point.at,
        revision=point.revision,
        error=point.error,
        parent=row.parent_id,
    )


def entries_until(history: Sequence[HistoryEntry], point: Point) -> list[HistoryEntry]:
    """The entries written up to and including `point`'s transaction."""
    return [entry for entry in history if entry.seq <= point.last]
