"""A worker answering a task goes on with the instance: the next task is handed to it in the
answering transaction, written claimed, where it has a handler for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import Engine

PIPELINE = ["pipeline.fetch", "pipeline.store"]
SAGA = ["stock.reserve", "payments.charge", "shipping.ship"]


def fetch_claimed(engine: Engine, deploy: Callable[[str], Any], number: int) -> Any:
    """A pipeline instance started with `number` as n, its first task claimed by worker w1."""
    deploy("pipeline")
    engine.start("pipeline", {"n": number})
    [fetch] = engine.claim_tasks(["pipeline.fetch"], "w1", 30)
    return fetch


def test_answering_a_task_hands_the_next_one_to_the_same_worker(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("pipeline")
    inst = engine.start("pipeline", {"n": 7})
    [fetch] = engine.claim_tasks(["pipeline.fetch"], "w1", 30)
    accepted, [store] = engine.complete_and_claim(fetch.id, "w1", {"fetched": 7}, PIPELINE)
    assert accepted
    assert (store.name, store.attempt, store.instance_id) == ("pipeline.store", 1, inst.id)
    assert store.state == "store"
    assert store.lease_until == clock.now + engine.lease
    assert engine.claim_tasks(PIPELINE, "w2", 30) == []  # held by w1, not ready
    assert engine.heartbeat(store.id, "w1")
    accepted, following = engine.complete_and_claim(store.id, "w1", {"stored": 7}, PIPELINE)
    assert accepted and following == []
    assert engine.get(inst.id).status == "succeeded"


def test_a_handed_task_sees_the_context_a_claim_would(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    fetch = fetch_claimed(engine, deploy, 7)
    _, [handed] = engine.complete_and_claim(fetch.id, "w1", {"fetched": 7}, PIPELINE)
    engine.start("pipeline", {"n": 7})
    [fetch] = engine.claim_tasks(["pipeline.fetch"], "w1", 30)
    engine.complete_task(fetch.id, "w1", {"fetched": 7})
    [claimed] = engine.claim_tasks(["pipeline.store"], "w1", 30)
    assert handed.input == claimed.input
    assert (handed.attempt, handed.max_attempts) == (claimed.attempt, claimed.max_attempts)


def test_a_next_task_this_worker_cannot_run_stays_ready_for_others(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    fetch = fetch_claimed(engine, deploy, 1)
    accepted, following = engine.complete_and_claim(
        fetch.id, "w1", {"fetched": 1}, ["pipeline.fetch"]
    )
    assert accepted and following == []
    [store] = engine.claim_tasks(["pipeline.store"], "w2", 30)
    assert store.attempt == 1


def test_of_two_new_tasks_one_is_handed_on_and_the_other_stays_ready(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("parallel_saga")
    engine.start("parallel_saga", {})
    [reserve] = engine.claim_tasks(["stock.reserve"], "w1", 30)
    accepted, [handed] = engine.complete_and_claim(reserve.id, "w1", {}, SAGA)
    assert accepted
    [other] = engine.claim_tasks(SAGA, "w2", 30, limit=10)
    assert {handed.name, other.name} == {"payments.charge", "shipping.ship"}


def test_a_failed_answer_hands_nothing_on(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("pipeline")
    inst = engine.start("pipeline", {"n": 1})
    [fetch] = engine.claim_tasks(["pipeline.fetch"], "w1", 30)
    accepted, following = engine.complete_and_claim(
        fetch.id, "w1", {"not json": object()}, PIPELINE
    )
    assert not accepted and following == []
    assert engine.get(inst.id).state == "fetch"
    assert engine.claim_tasks(["pipeline.store"], "w2", 30) == []
