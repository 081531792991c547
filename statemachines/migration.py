"""Migration of a running instance to another version of its definition, decided by replay:
its class (`assess`), the step that moves it (`migration_step`), and how a `migrated` entry
of its history is replayed later (`plan_operator`, `migrated_again`).

An instance is classified by the first of these rules that holds:
1. mapped: the state map names one of its active (atomic) states; its states become the
   map's targets (an unnamed state keeps its own path, which the new version must have);
2. safe: its whole history replays through the new version (`replay`) with no divergence,
   and ends with the same active states, status and context;
3. impossible: one of its active states has no state of the same full path in the new
   version (and the map does not name it);
4. divergent: otherwise, with the first diverging entry (or, when every entry replays but
   the instance would end otherwise, the last entry and what differs).

A safe instance moves as the replay made it: the new version's machine data and the work
its replay leaves outstanding. A mapped one leaves its states and enters the targets afresh
(`CompiledMachine.enter`): their timers start and their tasks are scheduled again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from .compile import CompiledMachine
from .errors import InvalidInput, TurnoutError
from .migration_plan import MigrationClass, PlannedInstance
from .model import Definition
from .operators import replay_redrive, replay_reset
from .replay import Divergence, Operator, Recorded, Replay, replay
from .run import RUNNING
from .steps import DEADLINE, Entry, Snapshot, Step, deadline_timer

KIND = "migrated"  # the history entry of a migration
# Machine data the engine keeps beside the machine's own: a called instance's link to its
# parent, which no history entry records. A migration carries it over.
ENGINE_KEYS = ("parent",)
# What the machine data keeps of the instance's deadline (compile.py, `start`).
DEADLINE_KEYS = ("deadline", "deadline_at", "deadline_from")


@dataclass(frozen=True)
class Candidate:
    """A running instance as classification reads it: its row, and its whole history,
    oldest first (`seq`: the last entry's)."""

    id: str
    key: str | None
    revision: int
    state: str
    active: tuple[str, ...]
    status: str
    context: dict[str, Any]
    machine: dict[str, Any]
    history: Sequence[Recorded]

    @property
    def seq(self) -> int:
        return self.history[-1].seq if self.history else 0

    @property
    def snapshot(self) -> Snapshot:
        return Snapshot(self.machine, self.context, self.status, self.seq)


@dataclass(frozen=True)
class Assessment:
    """An instance's class in a plan, with (for a safe one) its history replayed through
    the new version: the machine and outstanding work it moves with."""

    planned: PlannedInstance
    replayed: Replay | None = None


def check_state_map(
    old: Definition,
    new: Definition,
    state_map: Mapping[str, str] | None,
    versions: tuple[int, int] | None = None,
) -> dict[str, str]:
    """The state map as a dict, once every source is a state of `old` and every target a
    state of `new` (full paths, no history pseudo-state); InvalidInput listing every one
    that is not. `versions` are the two versions' numbers, for the messages."""
    if state_map is None:
        return {}
    if not isinstance(state_map, Mapping):
        raise InvalidInput("the state map must map old state paths to new ones")
    before, after = (f" {number}" for number in versions) if versions else ("", "")
    problems = []
    for source, target in state_map.items():
        if not isinstance(source, str) or not isinstance(target, str):
            problems.append(f"{source!r}: {target!r} is not a pair of state paths")
            continue
        if not _enterable(old, source):
            problems.append(f"{source!r} is not a state of the old version{before}")
        if not _enterable(new, target):
            problems.append(f"{target!r} is not a state of the new version{after}")
    if problems:
        raise InvalidInput("the state map names unknown states: " + "; ".join(problems), problems)
    return dict(state_map)


def _enterable(definition: Definition, path: str) -> bool:
    return definition.has_state(path) and definition.state(path).kind != "history"


def assess(
    candidate: Candidate,
    new: CompiledMachine,
    state_map: Mapping[str, str],
    version: int,
    operator: Operator | None = None,
) -> Assessment:
    """The class of `candidate` on `new` (version `version`), by the rules of the module.
    `operator` replays the operators' entries of its history (default: `plan_operator`)."""
    states = candidate.active
    chart = new.chart
    gone = [path for path in states if path not in state_map and path not in chart.states]
    planned = PlannedInstance(
        candidate.id,
        candidate.key,
        candidate.revision,
        MigrationClass.DIVERGENT,
        candidate.state,
        states,
    )
    missing = (
        f"no state {gone[0]!r} in version {version}, and the map does not name it" if gone else ""
    )
    impossible = replace(planned, kind=MigrationClass.IMPOSSIBLE)
    if any(path in state_map for path in states):
        if gone:
            return Assessment(replace(impossible, reason=missing))
        targets = tuple(dict.fromkeys(state_map.get(path, path) for path in states))
        clash = chart.apart(list(targets))
        if clash is not None:
            reason = f"the map moves it to {clash[0]!r} and {clash[1]!r}, not active together"
            return Assessment(replace(impossible, reason=reason))
        moved = ", ".join(f"{path} -> {state_map[path]}" for path in states if path in state_map)
        mapped = replace(planned, kind=MigrationClass.MAPPED, targets=targets, reason=moved)
        return Assessment(mapped)
    if gone:
        return Assessment(replace(impossible, reason=missing))
    replayed = replay(new, candidate.history, version=version, operator=operator or plan_operator)
    divergence = replayed.divergence or ends_otherwise(candidate, replayed)
    if divergence is None:
        reason = f"its history replays through version {version}"
        return Assessment(replace(planned, kind=MigrationClass.SAFE, reason=reason), replayed)
    return Assessment(replace(planned, divergence=divergence, reason=str(divergence)))


def ends_otherwise(candidate: Candidate, replayed: Replay) -> Divergence | None:
    """None when the replay ends as the instance is (active states, status, context);
    else a divergence at the last entry saying what differs."""
    final = replayed.final
    if final is None:
        return Divergence(0, {}, None, "the history has no entries to replay")
    recorded: dict[str, Any] = {
        "active": sorted(candidate.active),
        "status": candidate.status,
        "context": candidate.context,
    }
    replayed_now: dict[str, Any] = {
        "active": sorted(final.active),
        "status": final.status,
        "context": final.context,
    }
    if recorded == replayed_now:
        return None
    if recorded["active"] != replayed_now["active"]:
        why = f"active states {recorded['active']} now, {replayed_now['active']} replayed"
    elif recorded["status"] != replayed_now["status"]:
        why = f"status {candidate.status!r} now, {final.status!r} replayed"
    else:
        keys = sorted(
            key
            for key in set(candidate.context) | set(final.context)
            if candidate.context.get(key, KeyError) != final.context.get(key, KeyError)
        )
        why = f"another context (keys {', '.join(map(repr, keys))} differ)"
    reason = f"every entry replays, but the instance would end otherwise: {why}"
    return Divergence(final.last, recorded, replayed_now, reason)


def migration_data(
    candidate: Candidate,
    assessment: Assessment,
    from_version: int,
    to_version: int,
    plan: str,
    state_map: Mapping[str, str],
) -> dict[str, Any]:
    """The data of the `migrated` entry that moves `candidate`: the versions, its class, its
    states before and after (for a mapped one, the targets, which replay enters again), the
    map's pairs that applied, and the plan."""
    planned = assessment.planned
    if planned.kind == MigrationClass.SAFE and assessment.replayed is not None:
        final = assessment.replayed.final
        to_states = list(final.active) if final is not None else []
        to_state = final.state if final is not None else candidate.state
    else:
        to_states = list(planned.targets)
        to_state = to_states[0].partition(".")[0] if to_states else candidate.state
    data: dict[str, Any] = {
        "from_version": from_version,
        "to_version": to_version,
        "class": str(planned.kind),
        "from_state": candidate.state,
        "to_state": to_state,
        "from_states": list(candidate.active),
        "to_states": to_states,
        "plan": plan,
    }
    if planned.kind == MigrationClass.MAPPED:
        data["map"] = {path: state_map[path] for path in candidate.active if path in state_map}
    return data


def migration_step(
    candidate: Candidate,
    assessment: Assessment,
    new: CompiledMachine,
    data: dict[str, Any],
    now: datetime,
) -> Step:
    """The step that moves a safe or mapped instance to `new`: one `migrated` entry with
    `data`, the new machine data (a safe instance's replayed, a mapped one's with its
    targets entered at `now`) and the work it has outstanding on `new` (tasks, timers; a
    mapped one's calls). `cancelled` lists the old state entries a mapped one left."""
    entry = Entry(KIND, None, candidate.state or None, data["to_state"] or None, data)
    kind = assessment.planned.kind
    if kind == MigrationClass.SAFE and assessment.replayed is not None:
        work = assessment.replayed
        final = work.final
        assert final is not None
        machine = dict(final.machine)
        step = Step(machine, final.context, final.status, history=[entry])
        step.tasks = list(work.tasks.values())
        step.timers = list(work.timers.values())
    elif kind == MigrationClass.MAPPED:
        step = new.enter(candidate.snapshot, assessment.planned.targets, now, entry=entry)
    else:
        raise ValueError(f"a {kind} instance does not move")
    for key in ENGINE_KEYS:
        if key in candidate.machine:
            step.machine[key] = candidate.machine[key]
    _deadline_on(step, candidate, new)
    return step


def _deadline_on(step: Step, candidate: Candidate, new: CompiledMachine) -> None:
    """Give the moved instance its deadline on `new`: the one its start gave it, kept as it
    was; else the new version's `deadline` (if any), counted from the instance's start. The
    step carries the deadline's timer, so that the timer row stays or is replaced."""
    for key in DEADLINE_KEYS:
        step.machine.pop(key, None)
    step.timers = [timer for timer in step.timers if timer.key != DEADLINE or timer.state_path]
    old = candidate.machine
    if old.get("deadline_from") == "start":
        step.machine.update({key: old[key] for key in DEADLINE_KEYS if key in old})
    elif new.definition.deadline is not None and candidate.history:
        began = candidate.history[0].at
        step.machine["deadline"] = new.definition.deadline.total_seconds()
        step.machine["deadline_at"] = (began + new.definition.deadline).isoformat()
    if step.status == RUNNING and "deadline_at" in step.machine:
        step.timers.append(deadline_timer(step.machine))


# -- replaying a `migrated` entry --------------------------------------------------------------
def replay_migrated(
    machine: CompiledMachine, snapshot: Snapshot, entry: Recorded
) -> tuple[Step, CompiledMachine]:
    """A `migrated` entry replayed through one version (`machine`), as planning a later
    migration does: a safe migration changed nothing the history shows, so the instance
    goes on as it was; a mapped one entered its targets, which it enters again here (a
    divergence when this version does not have them)."""
    data = entry.data if isinstance(entry.data, dict) else {}
    made = Entry(entry.kind, entry.event, entry.from_state, entry.to_state, entry.data)
    if data.get("class") == MigrationClass.MAPPED:
        return machine.enter(snapshot, _targets(data), entry.at, entry=made), machine
    return Step(snapshot.machine, snapshot.context, snapshot.status, history=[made]), machine


def _targets(data: dict[str, Any]) -> list[str]:
    targets = data.get("to_states")
    if not isinstance(targets, list) or not all(isinstance(one, str) for one in targets):
        raise InvalidInput("the migrated entry does not name the states it entered")
    return targets


# The entries of operators' actions that planning replays, by kind; an action that moves an
# instance by hand adds its own here.
PLAN_OPERATORS: dict[str, Operator] = {
    KIND: replay_migrated,
    "redrive": replay_redrive,
    "reset": replay_reset,
}


def plan_operator(
    machine: CompiledMachine, snapshot: Snapshot, entry: Recorded
) -> tuple[Step, CompiledMachine]:
    """Replay an operator's entry through one version with the PLAN_OPERATORS function of
    its kind; a kind with none is a divergence."""
    found = PLAN_OPERATORS.get(entry.kind)
    if found is None:
        raise TurnoutError(f"a {entry.kind!r} entry cannot be replayed to plan a migration")
    return found(machine, snapshot, entry)


def migrated_again(
    entry: Recorded, snapshot: Snapshot, new: CompiledMachine, history: Sequence[Recorded]
) -> Step:
    """The step a `migrated` entry made, made again (time travel across a migration): a safe
    migration's is the history before the entry replayed through `new`, as planning
    replayed it; a mapped one's enters its targets on `new` at the entry's time. Either
    carries the work outstanding after it. TurnoutError when it cannot be made again."""
    data = entry.data if isinstance(entry.data, dict) else {}
    made = Entry(entry.kind, entry.event, entry.from_state, entry.to_state, entry.data)
    if data.get("class") == MigrationClass.MAPPED:
        return new.enter(snapshot, _targets(data), entry.at, entry=made)
    before = [one for one in history if one.seq < entry.seq]
    again = replay(new, before, operator=plan_operator)
    final = again.final
    if again.divergence is not None or final is None:
        why = again.divergence.reason if again.divergence else "nothing before it replays"
        raise TurnoutError(f"the history before the migration does not replay again: {why}")
    step = Step(final.machine, final.context, final.status, history=[made])
    step.tasks = list(again.tasks.values())
    step.timers = list(again.timers.values())
    step.calls = list(again.calls.values())
    return step
