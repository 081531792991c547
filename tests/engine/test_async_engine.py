"""`AsyncEngine`: the same calls as coroutines, on the same durable instances."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine import AsyncEngine, Engine, EventRejected, InvalidInput

DEFINITIONS = Path(__file__).parent / "definitions"


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
