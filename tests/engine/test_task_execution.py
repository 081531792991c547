"""Tasks run by `run_until_idle`: inputs, where results go, failures, exactly-once results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import Engine


def test_task_handler_receives_the_context_and_its_result_moves_the_instance(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    calls: list[Any] = []

    @engine.task("jobs.work")
    def work(data: dict[str, Any]) -> dict[str, Any]:
        calls.append(data)
        return {"answer": 42}

    inst = engine.start("one_task", {"question": "?"})
    assert inst.state == "work"
    assert engine.run_until_idle() == 1
    done = engine.get(inst.id)
    assert calls == [{"question": "?"}]
    assert done.state == "finished"
    assert done.status == "succeeded"
    assert done.context == {"question": "?", "answer": 42}


def test_async_task_handler_is_accepted(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("one_task")

    @engine.task("jobs.work")
    async def work(data: dict[str, Any]) -> dict[str, Any]:
        return {"async": True}

    inst = engine.start("one_task", {})
    engine.run_until_idle()
    assert engine.get(inst.id).context == {"async": True}
    assert engine.get(inst.id).state == "finished"


def test_task_input_expression_and_result_placement(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("task_results")
    received: dict[str, Any] = {}

    def handler(name: str, result: Any) -> Callable[[Any], Any]:
        def run(data: Any) -> Any:
            received[name] = data
            return result

        return run

    engine.task("customers.lookup")(handler("lookup", {"name": "Ann", "tier": "gold"}))
    engine.task("customers.score")(handler("score", 0.75))
    engine.task("customers.extra")(handler("extra", {"country": "PT", "vip": True}))
    engine.task("customers.audit")(handler("audit", {"audited": "dropped"}))

    inst = engine.start("task_results", {"customer_id": 9, "other": "x"})
    assert engine.run_until_idle() == 4
    done = engine.get(inst.id)
    assert received["lookup"] == {"id": 9}  # the `input` expression
    assert received["score"]["customer"] == {"name": "Ann", "tier": "gold"}  # whole context
    assert done.status == "succeeded"
    assert done.context == {
        "customer_id": 9,
        "other": "x",
        "customer": {"name": "Ann", "tier": "gold"},  # result: customer
        "score": 0.75,  # not a mapping: stored under the state's name
        "country": "PT",  # a mapping: merged
        "vip": True,
    }  # result: false dropped the audit result


def test_failing_handler_fires_failed_when_attempts_are_exhausted(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    calls = []

    @engine.task("jobs.work")
    def work(data: Any) -> Any:
        calls.append(1)
        raise RuntimeError("remote said no")

    inst = engine.start("one_task", {})
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert len(calls) == 1  # default: one attempt
    assert done.state == "broken"
    assert done.status == "failed"
    failed = [e for e in engine.history(inst.id) if e.event == "failed"]
    assert failed, "the failure is in the history"
    assert "remote said no" in str(failed[-1].data)


def test_task_without_a_handler_waits_until_one_is_registered(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    assert engine.run_until_idle() == 0
    assert engine.get(inst.id).state == "work"

    @engine.task("jobs.work")
    def work(data: Any) -> Any:
        return {"late": True}

    assert engine.run_until_idle() == 1
    assert engine.get(inst.id).state == "finished"


def test_task_result_is_applied_once_and_the_handler_runs_once(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    calls = []

    @engine.task("jobs.work")
    def work(data: Any) -> Any:
        calls.append(1)
        return {"n": len(calls)}

    inst = engine.start("one_task", {})
    engine.run_until_idle()
    assert engine.run_until_idle() == 0
    assert calls == [1]
    entries = [e for e in engine.history(inst.id) if e.kind == "task"]
    assert len(entries) == 1
    assert entries[0].from_state == "work" and entries[0].to_state == "finished"
    assert engine.get(inst.id).context == {"n": 1}


def test_run_until_idle_runs_every_ready_task_of_every_instance(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")

    @engine.task("jobs.work")
    def work(data: dict[str, Any]) -> Any:
        return {"doubled": data["n"] * 2}

    ids = [engine.start("one_task", {"n": n}).id for n in range(6)]
    assert engine.run_until_idle() == 6
    assert [engine.get(i).context["doubled"] for i in ids] == [0, 2, 4, 6, 8, 10]


def test_result_for_a_state_already_left_is_recorded_stale_and_ignored(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("race")
    inst = engine.start("race", {})
    [task] = engine.claim_tasks(["remote.call"], "w1", 300)
    clock.advance(61)  # the 1m timer is due before the answer arrives
    engine.run_until_idle()
    assert engine.get(inst.id).state == "too_late"
    before = engine.get(inst.id)
    assert engine.complete_task(task.id, "w1", {"answer": "late"}) is False
    after = engine.get(inst.id)
    assert after.state == "too_late"
    assert after.context == before.context
    stale = [e for e in engine.history(inst.id) if e.kind == "stale"]
    assert len(stale) == 1


def test_result_that_is_not_json_fails_the_attempt_and_is_not_stored(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")

    @engine.task("jobs.work")
    def work(data: Any) -> Any:
        return {"tags": {"a", "b"}}  # a set is not a JSON value

    inst = engine.start("one_task", {"n": 1})
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert done.state == "broken"
    assert done.context == {"n": 1}
    history = engine.history(inst.id)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
