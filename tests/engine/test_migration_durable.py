"""Migration of running instances on SQLite and PostgreSQL: a plan over 200 `claims`
instances of version 1 classifies each for version 2 without writing anything; applying it
moves the safe and mapped ones once, however often it is applied; they then run to the end
on version 2 with their tasks and timers; events sent meanwhile are neither lost nor applied
to the wrong version; and `get(at=SEQ)` rebuilds an instance on either side of its move."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, EventRejected, HistoryEntry, Instance, MigrationPlan

DEFINITIONS = Path(__file__).parent / "definitions"
HOLD = {"legacy_hold": "on_hold"}
# The groups of `populate` and the class version 2 gives each.
CLASSES = {
    "intake": "safe",
    "review": "safe",
    "small": "safe",
    "big": "divergent",
    "escalated": "impossible",
    "hold": "mapped",
}


def populate(engine: Engine, clock: Any, each: int = 1) -> dict[str, list[str]]:
    """Running `claims` instances of version 1, `each` per group (the escalated, the hold and
    the big groups a little more): in intake, in review, in payout with a small and a big
    amount, escalated by review's 2d timer, and in legacy_hold."""
    sizes = {"intake": 8, "review": 8, "small": 6, "big": 6, "escalated": 6, "hold": 6}
    groups = {
        name: engine.start_many("claims", [{}] * (size * each)) for name, size in sizes.items()
    }
    for instance in groups["escalated"]:
        engine.send(instance, "submit", {"amount": 100})
    clock.advance(timedelta(days=2))
    assert engine.fire_due_timers(limit=10_000) == len(groups["escalated"])
    for instance in groups["review"] + groups["small"]:
        engine.send(instance, "submit", {"amount": 100})
    for instance in groups["big"]:
        engine.send(instance, "submit", {"amount": 700})
    for instance in groups["small"] + groups["big"]:
        engine.send(instance, "approve")
    for instance in groups["hold"]:
        engine.send(instance, "hold")
    return groups


@pytest.fixture
def claims(engine: Engine, deploy: Callable[[str], Any], clock: Any) -> dict[str, list[str]]:
    """Version 1 of `claims` with one small population on it, then version 2 deployed."""
    deploy("claims_v1")
    groups = populate(engine, clock)
    deploy("claims_v2")
    return groups


def snapshots(engine: Engine, ids: list[str]) -> dict[str, tuple[int, int, str]]:
    return {
        one: (found.version, found.revision, found.state)
        for one in ids
        for found in [engine.get(one)]
    }


def migrated_entries(engine: Engine, instance_id: str) -> list[HistoryEntry]:
    return [entry for entry in engine.history(instance_id) if entry.kind == "migrated"]


# -- plan and apply ----------------------------------------------------------------------------
def test_a_plan_over_200_instances_classifies_each_and_applying_it_twice_moves_each_once(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("claims_v1")
    groups = populate(engine, clock, each=5)
    deploy("claims_v2")
    everyone = [one for ids in groups.values() for one in ids]
    assert len(everyone) == 200
    before = snapshots(engine, everyone)
    plan = engine.plan_migration("claims", 1, state_map=HOLD)
    assert snapshots(engine, everyone) == before, "a plan writes nothing"
    assert (plan.from_version, plan.to_version) == (1, 2)
    classes = {one.id: str(one.kind) for one in plan.instances}
    assert classes == {one: CLASSES[group] for group, ids in groups.items() for one in ids}
    assert plan.counts() == {"safe": 110, "mapped": 30, "divergent": 30, "impossible": 30}
    assert plan.by_state()["payout"] == {"safe": 30, "mapped": 0, "divergent": 30, "impossible": 0}
    big = plan.of("divergent")[0]
    assert big.divergence is not None and big.divergence.seq == 3
    assert big.divergence.recorded["event"] == "approve"
    assert MigrationPlan.from_json(plan.to_json()) == plan

    first = engine.migrate(plan)
    assert first.counts() == {"migrated": 140, "skipped": 0, "stayed": 0, "untouched": 60}
    moving = {one.id for one in plan.moving}
    for instance_id, (version, revision, state) in snapshots(engine, everyone).items():
        if instance_id in moving:
            assert (version, revision) == (2, before[instance_id][1] + 1), instance_id
            [entry] = migrated_entries(engine, instance_id)
            assert entry.seq == revision and entry.data["class"] == classes[instance_id]
        else:
            assert (version, revision, state) == before[instance_id], "left as it was"
    again = engine.migrate(plan.to_json())
    assert again.counts() == {"migrated": 0, "skipped": 140, "stayed": 0, "untouched": 60}
    assert {one.reason for one in again.of("skipped")} == {"already on version 2"}
    assert all(len(migrated_entries(engine, one)) == 1 for one in moving)


def test_the_map_moves_an_instance_into_its_new_state_with_its_timer(
    engine: Engine, claims: dict[str, list[str]], clock: Any
) -> None:
    held = claims["hold"][0]
    engine.migrate(engine.plan_migration("claims", 1, state_map=HOLD, where={"ids": [held]}))
    moved = engine.get(held)
    assert (moved.version, moved.state) == (2, "on_hold")
    [entry] = migrated_entries(engine, held)
    assert (entry.from_state, entry.to_state) == ("legacy_hold", "on_hold")
    assert entry.data["map"] == HOLD and entry.data["to_states"] == ["on_hold"]
    clock.advance(timedelta(minutes=59))
    engine.fire_due_timers()
    assert engine.get(held).state == "on_hold"
    clock.advance(timedelta(minutes=2))
    engine.fire_due_timers()
    assert engine.get(held).state == "payout"
    untouched = engine.get(claims["hold"][1])
    assert (untouched.version, untouched.state) == (1, "legacy_hold")


def test_a_plan_takes_only_the_instances_where_selects(
    engine: Engine, claims: dict[str, list[str]]
) -> None:
    in_review = engine.plan_migration("claims", 1, where={"state": "review"})
    assert {one.id for one in in_review.instances} == set(claims["review"])
    keyed = engine.plan_migration("claims", 1, where={"key_prefix": "none-"})
    assert keyed.instances == ()


def test_unknown_states_in_the_map_and_versions_not_deployed_are_refused(
    engine: Engine, claims: dict[str, list[str]]
) -> None:
    from engine import DefinitionNotFound, InvalidInput

    with pytest.raises(InvalidInput, match="'on_ice' is not a state of the new version 2"):
        engine.plan_migration("claims", 1, state_map={"legacy_hold": "on_ice"})
    with pytest.raises(InvalidInput, match="is both the version to migrate from and"):
        engine.plan_migration("claims", 2)
    with pytest.raises(DefinitionNotFound):
        engine.plan_migration("claims", 1, 7)


# -- on the new version ------------------------------------------------------------------------
def test_migrated_instances_run_to_the_end_on_the_new_version_with_its_tasks_and_timers(
    engine: Engine, claims: dict[str, list[str]], clock: Any
) -> None:
    engine.migrate(engine.plan_migration("claims", 1, state_map=HOLD))
    paid: list[Any] = []
    engine.task("claims.pay")(lambda claim: paid.append(claim) or {"paid": True})
    # Version 1's 2d review timer is gone; the hold's 1h timer of version 2 fires.
    clock.advance(timedelta(days=2, minutes=1))
    engine.fire_due_timers()
    engine.run_until_idle()
    assert {engine.get(one).state for one in claims["review"]} == {"review"}
    assert {engine.get(one).state for one in claims["hold"] + claims["small"]} == {"paid"}
    # Version 2 waits 3d in review, then goes to `manual`, a state version 1 does not have.
    clock.advance(timedelta(days=1))
    engine.fire_due_timers()
    assert {engine.get(one).state for one in claims["review"]} == {"manual"}
    for instance in claims["review"]:
        engine.send(instance, "decide")
    for instance in claims["intake"]:
        engine.send(instance, "submit", {"amount": 300})
        engine.send(instance, "approve")
    engine.run_until_idle()
    for group in ("intake", "review", "small", "hold"):
        assert {engine.get(one).status for one in claims[group]} == {"succeeded"}, group
    # The big claims stayed on version 1, which runs their payout as it always would.
    assert len(paid) == sum(len(claims[group]) for group in CLASSES if group != "escalated")
    stayed = engine.get(claims["big"][0])
    assert (stayed.version, stayed.state) == (1, "paid")


def test_a_task_held_during_the_move_keeps_its_lease_and_runs_under_the_new_policy(
    engine: Engine, claims: dict[str, list[str]], clock: Any
) -> None:
    [held] = engine.claim_tasks(["claims.pay"], worker="w1", limit=1)
    assert held.max_attempts == 1
    engine.migrate(engine.plan_migration("claims", 1, where={"ids": [held.instance_id]}))
    assert engine.get(held.instance_id).version == 2
    assert engine.fail_task(held.id, "w1", "the bank is down") is True
    assert engine.history(held.instance_id)[-1].kind == "retry"  # version 1 would have failed
    clock.advance(2)
    ready = engine.claim_tasks(["claims.pay"], worker="w2", limit=100)
    [again] = [task for task in ready if task.instance_id == held.instance_id]
    assert (again.id, again.attempt, again.max_attempts) == (held.id, 2, 3)
    assert engine.complete_task(again.id, "w2", {"paid": True}) is True
    assert engine.get(held.instance_id).state == "paid"


# -- concurrent events -------------------------------------------------------------------------
def test_an_event_after_the_plan_is_judged_with_the_history_it_joined(
    engine: Engine, claims: dict[str, list[str]]
) -> None:
    still_safe, now_divergent, ended = claims["review"][0], claims["intake"][0], claims["intake"][1]
    plan = engine.plan_migration("claims", 1, where={"ids": [still_safe, now_divergent, ended]})
    assert {str(one.kind) for one in plan.instances} == {"safe"}
    engine.send(still_safe, "approve")  # amount 100: version 2 approves it too
    engine.send(now_divergent, "submit", {"amount": 800})
    engine.send(now_divergent, "approve")  # version 2 would have refused this approval
    engine.cancel(ended)
    result = {one.id: one for one in engine.migrate(plan).instances}
    assert (str(result[still_safe].outcome), result[still_safe].moved_on) == ("migrated", True)
    assert engine.get(still_safe).version == 2
    assert str(result[now_divergent].outcome) == "stayed"
    assert result[now_divergent].divergence is not None
    assert engine.get(now_divergent).version == 1
    assert (str(result[ended].outcome), result[ended].reason) == ("skipped", "cancelled now")
    # The task `approve` scheduled on version 1 was kept, and runs on version 2.
    engine.task("claims.pay")(lambda claim: {"paid": True})
    engine.run_until_idle()
    assert engine.get(still_safe).state == "paid"


def test_an_event_committed_between_two_moves_is_part_of_the_history_judged(
    engine: Engine, claims: dict[str, list[str]]
) -> None:
    first, second = claims["review"][:2]
    plan = engine.plan_migration("claims", 1, where={"ids": [first, second]})

    def meddle(entry: HistoryEntry) -> None:
        if entry.kind == "migrated" and entry.instance_id == first:
            engine.send(second, "approve")  # after the first move commits, before the second

    engine.subscribe(meddle)
    result = engine.migrate(plan)
    assert [str(one.outcome) for one in result.instances] == ["migrated", "migrated"]
    assert result.instances[1].moved_on
    kinds = [(entry.kind, entry.event) for entry in engine.history(second)]
    assert kinds[-2:] == [("event", "approve"), ("migrated", None)]
    assert engine.get(second, at=len(kinds) - 1).version == 1


@pytest.mark.parametrize("locking", ["row", "optimistic"])
def test_events_sent_from_another_thread_while_instances_move_are_neither_lost_nor_misapplied(
    store_url: str, clock: Any, locking: str
) -> None:
    with Engine(store_url, clock, locking=locking) as engine:
        sending_while_moving(engine)


def sending_while_moving(engine: Engine) -> None:
    """Increments and pings sent to 20 counters from another thread while a plan moves them
    to a version that takes pings: every increment counted once, every ping taken after the
    move (version 1 refuses them), and the history replays across the move."""
    engine.deploy(DEFINITIONS / "counter.yaml")
    text = (DEFINITIONS / "counter.yaml").read_text()
    ping = "      stop: stopped\n      ping:\n        assign: {pinged: true}\n"
    ids = engine.start_many("counter", [{"count": 0}] * 20)
    assert engine.deploy(text.replace("      stop: stopped\n", ping)).version == 2
    plan = engine.plan_migration("counter", 1)
    sent = {one: 0 for one in ids}
    pinged: dict[str, list[int]] = {one: [] for one in ids}
    moving, going = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def sender() -> None:
        rounds = 0
        try:
            while not moving.is_set() or rounds < 3:
                rounds += moving.is_set()
                if sum(sent.values()):
                    going.set()  # a round sent since the plan: every revision has moved
                for one in ids:
                    engine.send(one, "increment")
                    sent[one] += 1
                    try:
                        pinged[one].append(engine.send(one, "ping").revision)
                    except EventRejected:
                        pass
        except BaseException as exc:
            errors.append(exc)
        finally:
            going.set()

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        assert going.wait(timeout=60)
        result = engine.migrate(plan)
    finally:
        moving.set()
        thread.join(timeout=120)
    assert errors == []
    assert result.counts()["migrated"] == 20
    assert all(one.moved_on for one in result.instances), "each changed since the plan"
    for one in ids:
        history = engine.history(one)
        [moved] = [entry.seq for entry in history if entry.kind == "migrated"]
        increments = [entry for entry in history if entry.event == "increment"]
        assert len(increments) == sent[one] == engine.get(one).context["count"]
        assert all(seq > moved for seq in pinged[one]), "version 1 takes no ping"
        assert all(entry.seq > moved for entry in history if entry.event == "ping")
        assert engine.get(one, at=moved).version == 2
        assert engine.get(one, at=moved - 1).version == 1


# -- what the move keeps -----------------------------------------------------------------------
def test_foreach_items_answered_before_the_move_do_not_run_again(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    text = (DEFINITIONS / "mailing.yaml").read_text()
    instance = engine.start("mailing", {"recipients": ["ana", "bo", "cy"]})
    [first] = engine.claim_tasks(["mail.send"], worker="w1", limit=1)
    assert engine.complete_task(first.id, "w1", {"ok": first.input["to"]})
    retried = text.replace("concurrency: 2\n", "concurrency: 2\n      retry: {attempts: 2}\n")
    engine.deploy(retried)
    assert engine.migrate(engine.plan_migration("mailing", 1)).counts()["migrated"] == 1
    mailed: list[str] = []
    engine.task("mail.send")(lambda mail: mailed.append(mail["to"]) or {"ok": mail["to"]})
    engine.run_until_idle()
    assert sorted(mailed) == sorted({"ana", "bo", "cy"} - {first.input["to"]})
    done = engine.get(instance.id)
    assert (done.version, done.state, done.context["count"]) == (2, "sent", 3)
    assert [receipt["ok"] for receipt in done.context["receipts"]] == ["ana", "bo", "cy"]


def test_a_parent_moved_in_its_call_state_hears_its_child_on_the_new_version(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("call_child")
    deploy("call_parent")
    engine.task("child.work")(lambda data: {})
    parent = engine.start("call_parent", {"n": 1, "hold": True})
    engine.run_until_idle()
    [child] = engine.get(parent.id).children
    assert engine.get(child).state == "hold"
    text = (DEFINITIONS / "call_parent.yaml").read_text().replace("timeout: 1h", "timeout: 2h")
    engine.deploy(text)
    assert engine.migrate(engine.plan_migration("call_parent", 1)).counts()["migrated"] == 1
    clock.advance(timedelta(hours=1, minutes=1))
    engine.fire_due_timers()
    assert engine.get(parent.id).state == "ask", "version 1's 1h timeout is gone"
    engine.send(child, "finish")
    engine.run_until_idle()
    done = engine.get(parent.id)
    assert (done.version, done.state, done.status) == (2, "answered", "succeeded")


def test_a_parent_mapped_out_of_its_call_state_cancels_its_child(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("call_child")
    deploy("call_parent")
    engine.task("child.work")(lambda data: {})
    engine.task("child.undo")(lambda data: {})
    parent = engine.start("call_parent", {"n": 1, "hold": True})
    engine.run_until_idle()
    [child] = engine.get(parent.id).children
    text = (DEFINITIONS / "call_parent.yaml").read_text()
    engine.deploy(text.replace("  stopped: {final: true}", "  stopped: {on: {go: answered}}"))
    plan = engine.plan_migration("call_parent", 1, state_map={"ask": "stopped"})
    assert engine.migrate(plan).counts()["migrated"] == 1
    engine.run_until_idle()
    assert (engine.get(parent.id).state, engine.get(child).status) == ("stopped", "cancelled")
    reasons = [entry.data for entry in engine.history(child) if entry.kind == "cancel"]
    assert reasons and "was left" in reasons[0]["reason"]


# -- time travel across a move -----------------------------------------------------------------
def test_get_at_each_entry_across_a_migration_equals_the_snapshot_recorded_then(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    seen: dict[tuple[str, int], Instance] = {}

    def remember(entry: HistoryEntry) -> None:
        seen[(entry.instance_id, entry.seq)] = engine.get(entry.instance_id)

    engine.subscribe(remember)
    deploy("claims_v1")
    claims = populate(engine, clock)
    deploy("claims_v2")
    watched = [claims["review"][0], claims["hold"][0], claims["small"][0], claims["big"][0]]
    engine.migrate(engine.plan_migration("claims", 1, state_map=HOLD, where={"ids": watched}))
    engine.task("claims.pay")(lambda claim: {"paid": True})
    clock.advance(timedelta(days=3, minutes=1))
    engine.fire_due_timers()
    engine.send(watched[0], "decide")
    engine.run_until_idle()
    assert {engine.get(one).state for one in watched} == {"paid"}
    for instance_id in watched:
        history = engine.history(instance_id)
        for entry in history:
            assert engine.get(instance_id, at=entry.seq) == seen[(instance_id, entry.seq)]
        moves = [entry.seq for entry in history if entry.kind == "migrated"]
        if instance_id == claims["big"][0]:
            assert moves == [] and engine.get(instance_id, at=len(history)).version == 1
            continue
        assert engine.get(instance_id, at=moves[0] - 1).version == 1
        assert engine.get(instance_id, at=moves[0]).version == 2
        timeline = engine.timeline(instance_id)
        assert timeline.complete and timeline.points[-1].last == len(history)
        assert [point.version for point in timeline.points][-1] == 2
    assert engine.diagram(watched[1], at=2) != engine.diagram(watched[1], at=3)


def test_an_instance_redriven_and_reset_is_planned_by_replaying_those_entries_too(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("pipeline")
    failing = [True]

    @engine.task("pipeline.fetch")
    def fetch(data: Any) -> Any:
        if failing[0]:
            raise OSError("network down")
        return {"rows": 3}

    redriven = engine.start("pipeline", {})
    engine.run_until_idle()
    assert engine.get(redriven.id).status == "failed"
    engine.redrive(redriven.id, reason="network back")
    reset = engine.start("pipeline", {})
    engine.reset(reset.id, "store", {"rows": 1}, reason="fetched by hand")
    text = (DEFINITIONS / "pipeline.yaml").read_text()
    engine.deploy(text.replace("pipeline.store,", "pipeline.store, retry: {attempts: 2},"))
    plan = engine.plan_migration("pipeline", 1)
    assert {item.id: str(item.kind) for item in plan.instances} == {
        redriven.id: "safe",
        reset.id: "safe",
    }
    engine.migrate(plan)
    failing[0] = False
    engine.task("pipeline.store")(lambda data: {"stored": data["rows"]})
    engine.run_until_idle()
    for instance_id, stored in ((redriven.id, 3), (reset.id, 1)):
        done = engine.get(instance_id)
        assert (done.version, done.status, done.context["stored"]) == (2, "succeeded", stored)
        history = engine.history(instance_id)
        assert engine.get(instance_id, at=history[-1].seq) == done


def test_an_instance_moved_safely_before_is_planned_again_with_the_work_it_kept(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("pipeline")
    text = (DEFINITIONS / "pipeline.yaml").read_text()
    instance = engine.start("pipeline", {})
    engine.deploy(text.replace("pipeline.store,", "pipeline.store, retry: {attempts: 2},"))
    engine.migrate(engine.plan_migration("pipeline", 1))
    engine.task("pipeline.fetch")(lambda data: {"rows": 3})
    engine.run_until_idle()  # fetch answered on version 2; store waits for a handler
    assert (engine.get(instance.id).version, engine.get(instance.id).state) == (2, "store")
    engine.deploy(text.replace("pipeline.fetch,", "pipeline.fetch, retry: {attempts: 2},"))
    plan = engine.plan_migration("pipeline", 2)
    assert [(item.id, str(item.kind)) for item in plan.instances] == [(instance.id, "safe")]
