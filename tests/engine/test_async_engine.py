"""`AsyncEngine`: the same calls as coroutines, on the same durable instances."""

from __future__ import annotations

import asyncio
import inspect
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import AsyncEngine, Engine, EventRejected, InvalidInput

DEFINITIONS = Path(__file__).parent / "definitions"
# Registrations and other calls that wait for nothing: plain methods on both.
REGISTRATIONS = {
    "task",
    "subscribe",
    "on_enter",
    "on_exit",
    "on_transition",
    "trace",
    "metrics_registry",
}


def public(cls: type) -> dict[str, Any]:
    """The public names a class defines, as defined (a property stays a property)."""
    names = [name for name in dir(cls) if not name.startswith("_")]
    return {name: inspect.getattr_static(cls, name) for name in names}


def test_async_engine_has_every_public_name_of_engine_and_no_other() -> None:
    assert set(public(AsyncEngine)) == set(public(Engine)) | {"aclose"}
    assert AsyncEngine.aclose is AsyncEngine.close


def test_async_engine_methods_are_coroutines_with_the_engines_parameters() -> None:
    for name, member in public(Engine).items():
        mirrored = public(AsyncEngine)[name]
        if isinstance(member, property):
            assert isinstance(mirrored, property), name
            continue
        assert inspect.iscoroutinefunction(mirrored) == (name not in REGISTRATIONS), name
        expected = dict(inspect.signature(member).parameters)
        if name in ("work", "run_hooks"):  # cancelling the coroutine is the way to stop
            del expected["stop"]
        if name == "work":  # the async worker commits one result per step: no group commit
            del expected["batch"], expected["linger"]
        assert dict(inspect.signature(mirrored).parameters) == expected, name
    assert inspect.signature(AsyncEngine).parameters == inspect.signature(Engine).parameters


def test_async_engine_starts_many_claims_answers_and_counts(store_url: str, clock: Any) -> None:
    async def scenario() -> None:
        async with AsyncEngine(store_url, clock, lease=timedelta(minutes=5)) as aeng:
            await aeng.check_health()
            assert "://" in aeng.safe_url
            await aeng.deploy(DEFINITIONS / "one_task.yaml")
            await aeng.deploy(DEFINITIONS / "timed_task.yaml")
            assert await aeng.next_due() is None
            timed = await aeng.start("timed_task", {})
            assert await aeng.next_due() == clock.now + timedelta(minutes=1)
            seen: list[int] = []
            ids = await aeng.start_many(
                "one_task", [{"n": i} for i in range(3)], progress=seen.append
            )
            assert seen == [3]
            assert await aeng.state_counts("one_task") == {"work": 3}
            [task] = await aeng.claim_tasks(["jobs.work"], limit=1)
            accepted, following = await aeng.complete_and_claim(task.id, None, {}, ["jobs.work"])
            assert accepted and following == []
            assert await aeng.status_counts("one_task") == {"running": 2, "succeeded": 1}
            clock.advance(60)
            assert await aeng.fire_due_timers() == 1
            assert (await aeng.get(timed.id)).state == "work"
            assert await aeng.expire_tasks() == 0
            svg = await aeng.diagram(ids[0])
            assert svg.lstrip().startswith(b"<")
            assert (await aeng.definition_diagram("one_task", "dot")).startswith(b"digraph")
            assert b"digraph" in await aeng.heat_diagram("one_task", "dot")

    asyncio.run(scenario())


def test_async_engine_starts_sends_and_reads_instances(store_url: str, clock: Any) -> None:
    async def scenario() -> None:
        aeng = AsyncEngine(store_url, clock=clock)
        try:
            deployment = await aeng.deploy(DEFINITIONS / "signup.yaml")
            assert deployment.version == 1
            inst = await aeng.start("signup", {"email": "a@x"}, key="k1")
            assert inst.state == "pending"
            assert sorted(await aeng.allowed(inst.id)) == ["confirm", "reject"]
            moved = await aeng.send(inst.id, "confirm", {"by": "async"}, idempotency_key="m1")
            assert moved.state == "active"
            again = await aeng.send(inst.id, "confirm", {"by": "async"}, idempotency_key="m1")
            assert again == moved
            by_key = await aeng.send_by_key("signup", "k1", "suspend")
            assert by_key.state == "suspended"
            assert (await aeng.get(inst.id)).state == "suspended"
            assert [e.seq for e in await aeng.history(inst.id)] == [1, 2, 3]
            assert [i.id for i in await aeng.instances(definition="signup")] == [inst.id]
            with pytest.raises(EventRejected):
                await aeng.send(inst.id, "confirm")
            with pytest.raises(InvalidInput):
                await aeng.start("signup", {})
            cancelled = await aeng.cancel(inst.id, reason="done testing")
            assert cancelled.status == "cancelled"
        finally:
            await aeng.aclose()

    asyncio.run(scenario())


def test_async_engine_runs_async_handlers(store_url: str, clock: Any) -> None:
    async def scenario() -> None:
        aeng = AsyncEngine(store_url, clock=clock)
        try:
            await aeng.deploy(DEFINITIONS / "one_task.yaml")

            @aeng.task("jobs.work")
            async def work(data: Any) -> Any:
                await asyncio.sleep(0)
                return {"doubled": data["n"] * 2}

            inst = await aeng.start("one_task", {"n": 21})
            assert await aeng.run_until_idle() == 1
            done = await aeng.get(inst.id)
            assert done.state == "finished"
            assert done.context == {"n": 21, "doubled": 42}
        finally:
            await aeng.aclose()

    asyncio.run(scenario())


def test_async_and_sync_engines_share_instances(store_url: str, clock: Any) -> None:
    sync = Engine(store_url, clock=clock)
    try:
        sync.deploy(DEFINITIONS / "counter.yaml")
        inst = sync.start("counter", {"count": 0})

        async def scenario() -> Any:
            aeng = AsyncEngine(store_url, clock=clock)
            try:
                await asyncio.gather(*(aeng.send(inst.id, "increment") for _ in range(5)))
                return await aeng.get(inst.id)
            finally:
                await aeng.aclose()

        seen = asyncio.run(scenario())
        assert seen.context == {"count": 5}
        assert sync.get(inst.id) == seen
        assert len(sync.history(inst.id)) == 6
    finally:
        sync.close()


def test_async_handlers_run_on_the_applications_event_loop(store_url: str, clock: Any) -> None:
    """An `async def` handler is awaited on the caller's loop: it can use the application's
    queues and futures, created on that loop (on another loop: "attached to a different
    loop"). A `def` handler runs beside it, off the loop."""

    async def scenario() -> None:
        aeng = AsyncEngine(store_url, clock=clock)
        try:
            await aeng.deploy(DEFINITIONS / "one_task.yaml")
            await aeng.deploy(DEFINITIONS / "hanging.yaml")
            loop = asyncio.get_running_loop()
            requests: asyncio.Queue[tuple[int, asyncio.Future[int]]] = asyncio.Queue()
            loops: list[asyncio.AbstractEventLoop] = []

            @aeng.task("jobs.work")
            async def work(data: Any) -> Any:
                loops.append(asyncio.get_running_loop())
                answer: asyncio.Future[int] = loop.create_future()
                await requests.put((data["n"], answer))
                return {"doubled": await answer}

            @aeng.task("remote.hangs")
            def blocking(data: Any) -> Any:
                with pytest.raises(RuntimeError):
                    asyncio.get_running_loop()
                return {"ok": True}

            inst = await aeng.start("one_task", {"n": 21})
            other = await aeng.start("hanging", {})
            runner = asyncio.create_task(aeng.run_until_idle())
            number, answer = await asyncio.wait_for(requests.get(), 10)
            answer.set_result(number * 2)
            assert await asyncio.wait_for(runner, 10) == 2
            assert (await aeng.get(inst.id)).context == {"n": 21, "doubled": 42}
            assert (await aeng.get(other.id)).state == "finished"
            assert loops == [loop]
        finally:
            await aeng.aclose()

    asyncio.run(scenario())


def test_async_work_runs_at_most_concurrency_handlers_and_finishes_them_when_cancelled(
    store_url: str, clock: Any
) -> None:
    """`work(concurrency=2)` holds two handlers of five ready tasks, even after sweeping
    (a probe's timer fires); cancelled, it claims no more and answers the two in hand."""

    async def scenario() -> None:
        aeng = AsyncEngine(store_url, clock=clock, lease=3600)  # the clock moves; leases hold
        try:
            await aeng.deploy(DEFINITIONS / "one_task.yaml")
            await aeng.deploy(DEFINITIONS / "timed_task.yaml")
            gate = asyncio.Event()
            started: asyncio.Queue[str] = asyncio.Queue()
            counts = {"running": 0, "most": 0}

            @aeng.task("jobs.work")
            async def stuck(data: Any) -> Any:
                counts["running"] += 1
                counts["most"] = max(counts["most"], counts["running"])
                await started.put("started")
                await gate.wait()
                counts["running"] -= 1
                return {"ok": True}

            ids = [(await aeng.start("one_task", {})).id for _ in range(5)]
            worker = asyncio.create_task(aeng.work(concurrency=2, poll_interval=0.02))
            for _ in range(2):
                await asyncio.wait_for(started.get(), 10)
            for _ in range(2):
                probe = await aeng.start("timed_task", {})
                clock.advance(120)
                for _ in range(500):
                    if (await aeng.get(probe.id)).state == "work":
                        break
                    await asyncio.sleep(0.02)
                assert (await aeng.get(probe.id)).state == "work"
            assert started.empty()
            worker.cancel()
            gate.set()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(worker, 10)
            states = sorted([(await aeng.get(i)).state for i in ids])
            assert counts["most"] == 2
            assert states == ["finished"] * 2 + ["work"] * 3
        finally:
            await aeng.aclose()

    asyncio.run(scenario())


def test_async_work_runs_handlers_that_await_the_applications_queue_and_lock(
    store_url: str, clock: Any
) -> None:
    """Under `work()` on the application's loop, handlers await a queue the application
    feeds and a lock it owns: the lock keeps one handler at a time in its critical section
    while three run, and every instance finishes with the application's answer."""

    async def scenario() -> None:
        aeng = AsyncEngine(store_url, clock=clock, lease=3600)
        try:
            await aeng.deploy(DEFINITIONS / "one_task.yaml")
            answers: asyncio.Queue[int] = asyncio.Queue()
            lock = asyncio.Lock()
            inside = {"now": 0, "most": 0, "waiting": 0}

            @aeng.task("jobs.work")
            async def work(data: Any) -> Any:
                inside["waiting"] += 1
                answer = await answers.get()
                async with lock:
                    inside["now"] += 1
                    inside["most"] = max(inside["most"], inside["now"])
                    await asyncio.sleep(0)  # another handler may run here, not in here
                    inside["now"] -= 1
                return {"n": data["n"], "answer": answer}

            ids = [(await aeng.start("one_task", {"n": n})).id for n in range(3)]
            worker = asyncio.create_task(aeng.work(concurrency=3, poll_interval=0.02))
            for _ in range(500):
                if inside["waiting"] == 3:
                    break
                await asyncio.sleep(0.02)
            assert inside["waiting"] == 3  # all three wait on the application's queue at once
            async with lock:  # the application holds its lock: no handler gets in meanwhile
                for number in (10, 20, 30):
                    answers.put_nowait(number)
                await asyncio.sleep(0.05)
                assert inside["now"] == 0
            for _ in range(500):
                done = [await aeng.get(one) for one in ids]
                if all(instance.finished for instance in done):
                    break
                await asyncio.sleep(0.02)
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(worker, 10)
            assert [instance.status for instance in done] == ["succeeded"] * 3
            assert sorted(instance.context["answer"] for instance in done) == [10, 20, 30]
            assert inside["most"] == 1
        finally:
            await aeng.aclose()

    asyncio.run(scenario())
