"""Migration decided by replay, without a database: simulated `ticket` instances of version 1
classified for version 2 (safe, mapped, divergent, impossible, in that order of precedence),
the steps that move them, the plan as a value, and replay across a `migrated` entry."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import statemachines
from statemachines import CompiledMachine, compile_definition
from statemachines.errors import InvalidInput, TurnoutError
from statemachines.migration import (
    Candidate,
    assess,
    check_state_map,
    migrated_again,
    migration_data,
    migration_step,
    plan_operator,
)
from statemachines.migration_plan import MigrationClass, MigrationPlan, PlanFilter
from statemachines.replay import RecordedEntry, entry_json, replay
from statemachines.simulate import START
from statemachines.steps import Entry, Snapshot, Step

HERE = Path(__file__).parent / "migrations"
V1 = statemachines.load(HERE / "ticket_v1.yaml")
V2 = statemachines.load(HERE / "ticket_v2.yaml")
OLD, NEW = compile_definition(V1), compile_definition(V2)
MOVED_AT = START + timedelta(days=1)
PROOFREAD = {"working.docs.writing": "working.docs.proofreading"}
# The instances of version 1 the tests classify: the events each took, the CI result.
RUNS: dict[str, tuple[list[Any], Any]] = {
    "open": ([], None),
    "docs_done": ([("assign", {"owner": "ana"}), "written"], None),
    "writing": ([("assign", {"owner": "ana"})], None),
    "parked": (["park"], None),
    "ci_failed": ([("assign", {"owner": "bo"}), "pushed", "written"], {"passed": False}),
    "ci_passed": ([("assign", {"owner": "bo"}), "pushed", "written"], {"passed": True}),
}


def recorded(entries: list[Entry], first: int = 1, at: Any = START) -> list[RecordedEntry]:
    """Entries as the engine records them: numbered from `first`, all at `at`."""
    return [
        RecordedEntry.from_json({**entry_json(entry), "seq": seq, "at": at.isoformat()})
        for seq, entry in enumerate(entries, first)
    ]


def candidate(name: str, definition: statemachines.Definition = V1) -> Candidate:
    """The simulated instance `name` of RUNS as the engine would hand it to a plan."""
    events, ci = RUNS[name]
    run = statemachines.simulate(definition, events, results={"testing": ci or {"passed": True}})
    assert run.status == "running", (name, run.status)
    return Candidate(
        name,
        f"key-{name}",
        len(run.history),
        run.state,
        tuple(run.active),
        run.status,
        run.context,
        run.machine,
        recorded(run.history),
    )


def kind_of(name: str, state_map: dict[str, str] | None = None) -> MigrationClass:
    return assess(candidate(name), NEW, state_map or {}, 2).planned.kind


# -- the four classes --------------------------------------------------------------------------
def test_each_instance_gets_the_class_its_history_and_states_give_it() -> None:
    found = {name: kind_of(name) for name in RUNS}
    assert found == {
        "open": MigrationClass.SAFE,
        "docs_done": MigrationClass.SAFE,
        "writing": MigrationClass.SAFE,
        "parked": MigrationClass.IMPOSSIBLE,
        "ci_failed": MigrationClass.DIVERGENT,
        "ci_passed": MigrationClass.SAFE,
    }


def test_a_divergent_instance_names_the_first_entry_the_new_version_writes_otherwise() -> None:
    ticket = candidate("ci_failed")
    planned = assess(ticket, NEW, {}, 2).planned
    divergence = planned.divergence
    assert divergence is not None
    merged = next(entry for entry in ticket.history if entry.to_state == "working.fix.merged")
    assert divergence.seq == merged.seq
    assert divergence.recorded["to_state"] == "working.fix.merged"
    assert divergence.replayed is not None
    assert divergence.replayed["to_state"] == "working.fix.coding"
    assert planned.reason == str(divergence)


def test_an_impossible_instance_names_the_state_that_is_gone() -> None:
    planned = assess(candidate("parked"), NEW, {}, 2).planned
    assert planned.reason == "no state 'parked' in version 2, and the map does not name it"
    assert planned.divergence is None


def test_a_mapped_state_moves_the_instance_even_when_its_history_replays() -> None:
    # `open` replays as recorded; the map names it, and the map comes first.
    assert kind_of("open", {"open": "closing"}) == MigrationClass.MAPPED
    assert kind_of("parked", {"parked": "icebox"}) == MigrationClass.MAPPED
    assert kind_of("parked", {"open": "closing"}) == MigrationClass.IMPOSSIBLE


def test_a_region_state_mapped_keeps_the_other_regions_state_as_target() -> None:
    planned = assess(candidate("writing"), NEW, PROOFREAD, 2).planned
    assert planned.kind == MigrationClass.MAPPED
    assert planned.targets == ("working.fix.coding", "working.docs.proofreading")
    assert planned.reason == "working.docs.writing -> working.docs.proofreading"


def test_targets_that_cannot_be_active_together_make_the_instance_impossible() -> None:
    planned = assess(candidate("writing"), NEW, {"working.docs.writing": "closing"}, 2).planned
    assert planned.kind == MigrationClass.IMPOSSIBLE
    assert "'working.fix.coding' and 'closing'" in planned.reason


def test_every_entry_replaying_with_another_context_is_divergent_at_the_last_entry() -> None:
    text = (HERE / "ticket_v1.yaml").read_text()
    changed = text.replace("assign: {owner: event.owner}", "assign: {owner: event.owner, n: 1}")
    ticket = candidate("docs_done")
    planned = assess(ticket, compile_definition(statemachines.load(changed)), {}, 3).planned
    assert planned.kind == MigrationClass.DIVERGENT
    assert planned.divergence is not None and planned.divergence.seq == ticket.seq
    assert "another context (keys 'n' differ)" in planned.reason


def test_a_state_map_naming_unknown_states_is_refused_with_each_one() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_state_map(V1, V2, {"parked": "fridge", "gone": "icebox", "open": "open"}, (1, 2))
    assert refused.value.problems == [
        "'fridge' is not a state of the new version 2",
        "'gone' is not a state of the old version 1",
    ]
    assert check_state_map(V1, V2, {"parked": "icebox"}) == {"parked": "icebox"}


# -- the steps that move instances ------------------------------------------------------------
def moved(name: str, state_map: dict[str, str] | None = None) -> tuple[Candidate, Step]:
    ticket = candidate(name)
    assessed = assess(ticket, NEW, state_map or {}, 2)
    data = migration_data(ticket, assessed, 1, 2, "plan-1", state_map or {})
    return ticket, migration_step(ticket, assessed, NEW, data, MOVED_AT)


def test_a_safe_instance_moves_with_the_replayed_machine_and_its_outstanding_work() -> None:
    ticket, step = moved("docs_done")
    assert [entry.kind for entry in step.history] == ["migrated"]
    assert step.history[0].data == {
        "from_version": 1,
        "to_version": 2,
        "class": "safe",
        "from_state": "working",
        "to_state": "working",
        "from_states": ["working.fix.coding", "working.docs.reviewed"],
        "to_states": ["working.fix.coding", "working.docs.reviewed"],
        "plan": "plan-1",
    }
    assert step.machine["active"] == ticket.machine["active"]
    assert step.context == ticket.context
    assert step.tasks == [] and step.timers == []


def test_a_safe_instance_keeps_its_task_of_the_same_state_entry_under_the_new_policy() -> None:
    steps = [OLD.start({}, START)]
    for event in ("assign", "pushed"):  # no task answered: ci.run is outstanding
        steps.append(OLD.send(steps[-1].snapshot, event, {"owner": "cy"}, START))
    last = steps[-1]
    history = recorded([entry for step in steps for entry in step.history])
    ticket = Candidate(
        "t",
        None,
        3,
        last.state,
        tuple(last.atomic),
        last.status,
        last.context,
        last.machine,
        history,
    )
    assessed = assess(ticket, NEW, {}, 2)
    assert assessed.planned.kind == MigrationClass.SAFE
    data = migration_data(ticket, assessed, 1, 2, "plan-1", {})
    [task] = migration_step(ticket, assessed, NEW, data, MOVED_AT).tasks
    [before] = last.tasks
    assert (task.state_path, task.activation, task.name) == (
        before.state_path,
        before.activation,
        before.name,
    )
    assert (task.retry.attempts, before.retry.attempts) == (2, 1)


def test_a_mapped_instance_enters_its_targets_afresh_with_their_timers() -> None:
    ticket, step = moved("parked", {"parked": "icebox"})
    assert step.machine["state"] == "icebox"
    assert step.history[0].data["map"] == {"parked": "icebox"}
    assert [(timer.state_path, timer.key, timer.due) for timer in step.timers] == [
        ("icebox", "30d", MOVED_AT + timedelta(days=30))
    ]
    assert step.machine["active"]["icebox"] > ticket.machine["counter"]
    assert step.cancelled == [("parked", ticket.machine["active"]["parked"])]


def test_a_mapped_region_state_reenters_the_parallel_state_with_the_other_region_kept() -> None:
    ticket, step = moved("writing", PROOFREAD)
    assert step.atomic == ["working.fix.coding", "working.docs.proofreading"]
    assert step.history[0].data["to_states"] == step.atomic
    before, after = ticket.machine["active"], step.machine["active"]
    assert after["working"] > before["working"], "the parallel state is entered anew"


def test_enter_refuses_states_the_version_does_not_have_or_that_exclude_each_other() -> None:
    snapshot = Snapshot({"active": {}, "counter": 0}, {}, "running")
    with pytest.raises(InvalidInput, match="no state 'parked'"):
        NEW.enter(snapshot, ["parked"], START)
    with pytest.raises(InvalidInput, match="cannot be active together"):
        NEW.enter(snapshot, ["open", "closing"], START)


# -- the plan as a value -----------------------------------------------------------------------
def make_plan(state_map: dict[str, str]) -> MigrationPlan:
    planned = tuple(assess(candidate(name), NEW, state_map, 2).planned for name in RUNS)
    return MigrationPlan("plan-1", "ticket", 1, 2, MOVED_AT, planned, tuple(state_map.items()))


def test_a_plan_counts_by_class_and_by_state_and_survives_its_json() -> None:
    plan = make_plan(PROOFREAD)
    assert plan.counts() == {"safe": 3, "mapped": 1, "divergent": 1, "impossible": 1}
    table = plan.by_state()
    assert table["working.docs.writing"] == {
        "safe": 0,
        "mapped": 1,
        "divergent": 0,
        "impossible": 0,
    }
    assert table["working.fix.coding"] == {"safe": 1, "mapped": 1, "divergent": 0, "impossible": 0}
    assert table["parked"]["impossible"] == 1
    again = MigrationPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    assert [one.id for one in plan.moving] == ["open", "docs_done", "writing", "ci_passed"]


def test_the_summary_gives_counts_the_map_each_state_and_why_instances_stay() -> None:
    lines = make_plan(PROOFREAD).summary().splitlines()
    assert lines[0] == "ticket: version 1 -> 2, 6 running instances (plan plan-1)"
    assert lines[1].split()[:2] == ["safe", "3"] and lines[4].split()[:2] == ["impossible", "1"]
    assert "state map: working.docs.writing -> working.docs.proofreading" in lines
    assert any(line.split() == ["parked", "0", "0", "0", "1"] for line in lines)
    assert "divergent instances:" in lines and "impossible instances:" in lines
    assert any(line.startswith("  ci_failed  entry ") for line in lines)


@pytest.mark.parametrize(
    "text",
    [
        [],
        {"plan": "p"},
        {"plan": "p", "definition": "t", "from_version": 0, "to_version": 2, "instances": []},
        {
            "plan": "p",
            "definition": "t",
            "from_version": 1,
            "to_version": 2,
            "planned_at": "2026-01-01T00:00:00+00:00",
            "instances": [{"id": "x", "revision": 1, "class": "brilliant"}],
        },
    ],
)
def test_json_that_is_not_a_plan_is_refused_saying_why(text: Any) -> None:
    with pytest.raises(InvalidInput, match="plan"):
        MigrationPlan.from_json(text)


def test_a_filter_takes_instances_by_state_key_prefix_and_id() -> None:
    by_state = PlanFilter.of({"state": "working"})
    assert by_state.matches("a", None, ["working.fix.coding"])
    assert not by_state.matches("a", None, ["workingday"])
    assert PlanFilter.of({"key_prefix": "eu-"}).matches("a", "eu-7", [])
    assert not PlanFilter.of({"key_prefix": "eu-"}).matches("a", None, [])
    assert PlanFilter.of({"ids": ["a"]}).matches("a", None, []) is True
    assert PlanFilter.of(None) == PlanFilter()
    with pytest.raises(InvalidInput, match="unknown filter 'status'"):
        PlanFilter.of({"status": "running"})
    with pytest.raises(InvalidInput, match="ids"):
        PlanFilter.of({"ids": "a"})


# -- replay across a `migrated` entry ----------------------------------------------------------
def travel_operator(history: list[RecordedEntry]) -> Any:
    """The operator time travel uses: each `migrated` entry made again on version 2."""

    def operate(
        machine: CompiledMachine, snapshot: Snapshot, entry: Any
    ) -> tuple[Step, CompiledMachine]:
        return migrated_again(entry, snapshot, NEW, history), NEW

    return operate


def lived_on(ticket: Candidate, step: Step, later: list[Any]) -> list[RecordedEntry]:
    """The history of `ticket` moved by `step`, then driven on version 2 by `later`:
    events, or ("done", STATE, RESULT) for a task's result."""
    history = list(ticket.history)
    history += recorded(step.history, ticket.seq + 1, MOVED_AT)
    snapshot = Snapshot(step.machine, step.context, step.status, history[-1].seq)
    tasks = {task.state_path: task for task in step.tasks}
    for action in later:
        if isinstance(action, tuple) and action[0] == "done":
            order = tasks.pop(action[1])
            ref = (order.state_path, order.activation, order.item)
            made = NEW.task_done(snapshot, ref, action[2], MOVED_AT)
        else:
            made = NEW.send(snapshot, action, None, MOVED_AT)
        tasks.update({task.state_path: task for task in made.tasks})
        history += recorded(made.history, snapshot.seq + 1, MOVED_AT)
        snapshot = Snapshot(made.machine, made.context, made.status, history[-1].seq)
    return history


@pytest.mark.parametrize(
    ("name", "state_map"),
    [("docs_done", {}), ("writing", PROOFREAD)],
)
def test_replay_goes_on_through_the_new_version_after_a_migrated_entry(
    name: str, state_map: dict[str, str]
) -> None:
    ticket, step = moved(name, state_map)
    later = ["checked", "pushed", ("done", "working.fix.testing", {"passed": True}), "close"]
    if name == "docs_done":
        later.remove("checked")
    history = lived_on(ticket, step, later)
    again = replay(OLD, history, version=1, operator=travel_operator(history))
    assert again.divergence is None
    final = again.final
    assert final is not None and (final.status, final.state) == ("succeeded", "closed")
    at_move = again.at(ticket.seq + 1)
    assert at_move is not None and at_move.version == 2
    assert sorted(at_move.active) == sorted(step.atomic)
    before = again.at(ticket.seq)
    assert before is not None and before.version == 1


def test_a_later_plan_replays_an_earlier_mapped_migration_through_its_own_version() -> None:
    ticket, step = moved("parked", {"parked": "icebox"})
    history = list(ticket.history) + recorded(step.history, ticket.seq + 1, MOVED_AT)
    # Version 3 parks as version 1 did and has `icebox`: the move replays through it; version
    # 1 has no `icebox` to enter.
    text = (HERE / "ticket_v2.yaml").read_text().replace("park: icebox", "park: parked")
    text += "  parked: {on: {resume: open, freeze: icebox}}\n"
    third = compile_definition(statemachines.load(text))
    through_third = replay(third, history, operator=plan_operator)
    assert through_third.divergence is None and through_third.final is not None
    assert through_third.final.state == "icebox"
    assert [timer.key for timer in through_third.timers.values()] == ["30d"]
    through_old = replay(OLD, history, operator=plan_operator)
    assert through_old.divergence is not None
    assert "no state 'icebox'" in through_old.divergence.reason


def test_an_operator_entry_of_an_unknown_kind_does_not_replay_in_a_plan() -> None:
    ticket = candidate("open")
    odd = RecordedEntry(ticket.seq + 1, MOVED_AT, "reset", None, "open", "closing", {})
    found = replay(NEW, [*ticket.history, odd], operator=plan_operator)
    assert found.divergence is not None and found.divergence.seq == odd.seq
    with pytest.raises(TurnoutError):
        plan_operator(NEW, Snapshot({}, {}, "running"), odd)
