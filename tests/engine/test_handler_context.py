"""A handler's second parameter, its `TaskContext`, and its input built into a declared type."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pydantic
from waiting import until

from engine import AsyncEngine, Engine, TaskContext, TaskFailure

DEFINITIONS = Path(__file__).parent / "definitions"


class Order(pydantic.BaseModel):
    order_id: str
    amount: int


@dataclass(frozen=True)
class Mail:
    to: str
    position: int


def test_plain_task_handler_gets_the_tasks_context(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deployed = deploy("context_task")
    seen: list[tuple[Any, TaskContext]] = []

    @engine.task("jobs.work")
    def work(data: dict[str, Any], context: TaskContext) -> dict[str, Any]:
        seen.append((data, context))
        return {"done": True}

    inst = engine.start("context_task", {"amount": 5}, key="order-1")
    claimed_at = clock.now
    assert engine.run_until_idle() == 1
    [(data, context)] = seen
    assert data == {"amount": 5}
    assert context.task_name == "jobs.work"
    assert context.instance_id == inst.id and context.key == "order-1"
    assert (context.definition, context.version) == ("context_task", deployed.version)
    assert context.state == "work" and context.item is None
    assert (context.attempt, context.max_attempts) == (1, 3)
    assert context.lease_until == claimed_at + engine.lease
    assert context.deadline == claimed_at + timedelta(seconds=30)
    assert len(context.idempotency_key) == 32 and context.task_id
    assert engine.get(inst.id).state == "waiting"


def test_a_retried_attempt_has_the_next_attempt_number_and_the_same_idempotency_key(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("context_task")
    seen: list[TaskContext] = []

    @engine.task("jobs.work")
    def work(data: Any, context: TaskContext) -> None:
        seen.append(context)
        if context.attempt == 1:
            raise TaskFailure("Busy", "try later")

    inst = engine.start("context_task", {})
    engine.run_until_idle()
    clock.advance(10)
    engine.run_until_idle()
    assert [context.attempt for context in seen] == [1, 2]
    assert seen[0].idempotency_key == seen[1].idempotency_key
    assert seen[0].task_id == seen[1].task_id
    assert engine.get(inst.id).state == "waiting"


def test_each_foreach_item_has_its_index_and_its_own_idempotency_key(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    seen: dict[str, TaskContext] = {}

    @engine.task("mail.send")
    def send(mail: dict[str, Any], context: TaskContext) -> str:
        seen[mail["to"]] = context
        return "sent"

    engine.start("mailing", {"recipients": ["ann", "bob", "cy"]})
    engine.run_until_idle()
    assert {to: context.item for to, context in seen.items()} == {"ann": 0, "bob": 1, "cy": 2}
    assert len({context.idempotency_key for context in seen.values()}) == 3
    assert {context.state for context in seen.values()} == {"send"}


def test_entering_the_state_again_gives_another_idempotency_key(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("context_task")
    keys: list[str] = []
    engine.task("jobs.work")(lambda data, context: keys.append(context.idempotency_key))
    inst = engine.start("context_task", {})
    engine.run_until_idle()
    engine.send(inst.id, "again")
    engine.run_until_idle()
    assert len(keys) == 2 and keys[0] != keys[1]


def test_context_is_passed_by_annotation_or_by_the_keyword_context(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("task_results")
    seen: dict[str, Any] = {}

    def by_annotation(data: Any, *, ctx: TaskContext) -> dict[str, Any]:
        seen["annotated"] = ctx.state
        return {}

    def by_keyword(data: Any, retries: int = 3, *, context: Any = None) -> float:
        seen["keyword"] = context.state
        return 1.0

    def with_default(data: Any, extra: Any = "kept") -> None:
        seen["default"] = extra  # a second parameter with a default is left alone

    engine.task("customers.lookup")(by_annotation)
    engine.task("customers.score")(by_keyword)
    engine.task("customers.extra")(with_default)
    engine.task("customers.audit")(lambda data: None)
    inst = engine.start("task_results", {"customer_id": 7})
    engine.run_until_idle()
    assert seen == {"annotated": "lookup", "keyword": "score", "default": "kept"}
    assert engine.get(inst.id).state == "finished"


def test_a_pydantic_or_dataclass_first_parameter_gets_its_input_built(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    deploy("mailing")
    built: list[Any] = []

    @engine.task("jobs.work")
    def charge(order: Order) -> dict[str, Any]:
        built.append(order)
        return {"charged": order.amount}

    @engine.task("mail.send")
    def send(mail: Mail, context: TaskContext) -> str:
        built.append(mail)
        return mail.to

    first = engine.start("one_task", {"order_id": "A1", "amount": "12"})
    second = engine.start("mailing", {"recipients": ["ann", "bob"]})
    engine.run_until_idle()
    assert Order(order_id="A1", amount=12) in built and Mail("bob", 1) in built
    assert engine.get(first.id).context["charged"] == 12
    assert engine.get(second.id).state == "sent"


def test_an_input_that_does_not_fit_fails_at_once_with_input_mismatch_despite_retries(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("context_task")  # retry: {attempts: 3}: every other error type is retried
    calls: list[Order] = []

    @engine.task("jobs.work")
    def charge(order: Order) -> None:
        calls.append(order)

    inst = engine.start("context_task", {"amount": "lots"})
    assert engine.run_until_idle() == 1
    clock.advance(60)
    assert engine.run_until_idle() == 0
    failed = engine.get(inst.id)
    assert calls == []
    assert failed.state == "broken" and failed.status == "failed"
    assert failed.last_error is not None and failed.last_error["type"] == "InputMismatch"
    problems = failed.last_error["details"]
    assert {problem["at"] for problem in problems} == {"order_id", "amount"}
    assert "retry" not in [entry.kind for entry in engine.history(inst.id)]


def test_async_handler_gets_the_context_on_the_applications_loop(
    store_url: str, clock: Any
) -> None:
    async def scenario() -> list[tuple[Order, TaskContext]]:
        seen: list[tuple[Order, TaskContext]] = []
        async with AsyncEngine(store_url, clock) as aeng:
            await aeng.deploy(DEFINITIONS / "one_task.yaml")
            lock = asyncio.Lock()  # the application's, on this loop

            @aeng.task("jobs.work")
            async def charge(order: Order, context: TaskContext) -> dict[str, Any]:
                async with lock:
                    seen.append((order, context))
                return {"key": context.idempotency_key}

            inst = await aeng.start("one_task", {"order_id": "B2", "amount": 3}, key="b2")
            assert await aeng.run_until_idle() == 1
            done = await aeng.get(inst.id)
            assert done.context["key"] == seen[0][1].idempotency_key
            assert seen[0][1].key == "b2" and seen[0][1].definition == "one_task"
        return seen

    [(order, context)] = asyncio.run(scenario())
    assert order == Order(order_id="B2", amount=3)
    assert context.attempt == 1 and context.item is None


def test_the_worker_loop_passes_the_context_and_builds_the_input(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    seen: list[tuple[Order, TaskContext]] = []

    @engine.task("jobs.work")
    def charge(order: Order, context: TaskContext) -> None:
        seen.append((order, context))

    inst = engine.start("one_task", {"order_id": "C3", "amount": 1}, key="c3")
    stop = threading.Event()
    loop = threading.Thread(target=engine.work, kwargs={"stop": stop, "poll_interval": 0.02})
    loop.start()
    try:
        assert until(lambda: engine.get(inst.id).state == "finished")
    finally:
        stop.set()
        loop.join()
    [(order, context)] = seen
    assert order.order_id == "C3" and context.key == "c3" and context.instance_id == inst.id
