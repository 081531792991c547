"""Durable hooks: delivered from the change feed under a named cursor, with the snapshot of
each change rebuilt by time travel; at least once, across crashes and failing hooks."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hook_recording import DEFINITION, recorded
from waiting import until

from engine import AsyncEngine, Engine, HookContext

DEFINITIONS = Path(__file__).parent / "definitions"
SPAWN = multiprocessing.get_context("spawn")


class Crash(BaseException):
    """The process dying inside a hook: not an error a hook runner catches."""


@pytest.fixture
def order(engine: Engine, deploy: Callable[[str], Any]) -> Engine:
    """The engine with `hooked_order` deployed and its packing task done by a handler."""
    deploy(DEFINITION)
    deploy("counter")
    engine.task("warehouse.pack")(lambda data: None)
    return engine


@pytest.fixture
def restarted(store_url: str, clock: Any) -> Iterator[Callable[[], Engine]]:
    """New engines on the same database, as processes started after a crash make them."""
    made: list[Engine] = []

    def start() -> Engine:
        made.append(Engine(store_url, clock=clock))
        return made[-1]

    try:
        yield start
    finally:
        for engine in made:
            engine.close()


def walk(engine: Engine) -> str:
    """Take an order through every kind of step: start, a self-transition, an internal one,
    into a compound state, a task's answer into a parallel state, and out of it."""
    inst = engine.start(DEFINITION)
    for event in ("touch", "note", "pay", "pack"):
        engine.send(inst.id, event)
    engine.run_until_idle()
    engine.send(inst.id, "post")
    engine.send(inst.id, "settle")
    engine.start("counter", {"count": 0})  # a change no hook is for
    return inst.id


def test_changes_committed_before_any_runner_ran_are_delivered_as_they_were_made(
    order: Engine, restarted: Callable[[], Engine]
) -> None:
    """The process that committed stopped before any hook was delivered; a runner started
    later calls the durable hooks of every change, with the snapshot of its revision."""
    made = recorded(order)  # in-process, for comparison
    snapshots: dict[str, Any] = {}
    order.on_enter(DEFINITION)(lambda c: snapshots.setdefault(c.change_id, c.instance))
    instance_id = walk(order)
    runner = restarted()
    delivered = recorded(runner, durable=True)
    contexts: list[HookContext] = []
    runner.on_enter(DEFINITION, durable=True)(contexts.append)
    assert runner.deliver_hooks("mail") == len(order.changes())
    assert delivered == made
    for context in contexts:
        change = next(c for c in runner.changes(limit=100) if c.id == context.change_id)
        assert context.durable and context.position == change.position
        assert context.instance == snapshots[context.change_id]
        assert context.instance == runner.get(instance_id, at=change.last_entry)
    assert runner.change_cursor("mail") == runner.latest_change()
    delivered.clear()
    assert runner.deliver_hooks("mail") == 0 and delivered == []


def test_a_crash_before_the_cursor_is_saved_delivers_those_changes_again(
    order: Engine, restarted: Callable[[], Engine]
) -> None:
    walk(order)
    first = restarted()
    seen: list[str] = []

    @first.on_transition(DEFINITION, durable=True)
    def dies_on_the_third(context: HookContext) -> None:
        seen.append(context.change_id)
        if len(seen) == 3:
            raise Crash

    with pytest.raises(Crash):
        first.deliver_hooks("mail")
    assert first.change_cursor("mail") is None
    second = restarted()
    again: list[str] = []
    second.on_transition(DEFINITION, durable=True)(lambda c: again.append(c.change_id))
    second.deliver_hooks("mail")
    assert again[:3] == seen  # at least once: what the crash cut short comes again
    assert len(again) == len(recorded_transitions(order))


def recorded_transitions(engine: Engine) -> list[Any]:
    """Every history entry of `hooked_order` instances that names the state it went to."""
    instances = engine.instances(DEFINITION)
    return [e for i in instances for e in engine.history(i.id) if e.to_state is not None]


def deliver_until_killed(url: str, out: str, die_after: int) -> None:
    """Child process: deliver durable hooks, appending each change id to `out`; the process
    is killed (os._exit, no cleanup) inside the hook call number `die_after`."""
    engine = Engine(url)
    calls = 0

    @engine.on_transition(DEFINITION, durable=True)
    def note(context: HookContext) -> None:
        nonlocal calls
        calls += 1
        with open(out, "a") as file:
            file.write(context.change_id + "\n")
            file.flush()
            os.fsync(file.fileno())
        if calls == die_after:
            os._exit(9)

    engine.deliver_hooks("mail")
    engine.close()


def test_a_runner_killed_mid_delivery_loses_nothing(
    order: Engine, store_url: str, restarted: Callable[[], Engine], tmp_path: Path
) -> None:
    walk(order)
    out = tmp_path / "delivered.txt"
    child = SPAWN.Process(target=deliver_until_killed, args=(store_url, str(out), 4))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    before_crash = out.read_text().split()
    assert len(before_crash) == 4
    runner = restarted()
    after: list[str] = []
    runner.on_transition(DEFINITION, durable=True)(lambda c: after.append(c.change_id))
    runner.deliver_hooks("mail")
    expected = [f"{e.instance_id}.{i}" for i, e in transitions_by_revision(order)]
    assert sorted(set(before_crash) | set(after)) == sorted(set(expected))
    assert set(before_crash) <= set(after)  # the cursor was never saved: all come again


def transitions_by_revision(engine: Engine) -> list[tuple[int, Any]]:
    """(revision, entry) of each transition entry, from the changes of `hooked_order`."""
    found = []
    for change in engine.changes(limit=100, definitions=[DEFINITION]):
        for entry in engine.history(change.instance_id):
            if change.first_entry <= entry.seq <= change.last_entry and entry.to_state:
                found.append((change.revision, entry))
    return found


def test_a_failing_durable_hook_holds_its_change_until_it_returns(
    order: Engine, restarted: Callable[[], Engine], caplog: pytest.LogCaptureFixture
) -> None:
    inst = order.start(DEFINITION)
    order.send(inst.id, "pay")
    runner = restarted()
    steady: list[str] = []
    flaky: list[str] = []
    runner.on_transition(DEFINITION, durable=True)(lambda c: steady.append(c.change_id))

    @runner.on_enter(DEFINITION, "paid", durable=True)
    def fails_once(context: HookContext) -> None:
        flaky.append(context.change_id)
        if len(flaky) == 1:
            raise ConnectionError("the mail server is down")

    [started, paid] = runner.changes()
    with caplog.at_level(logging.ERROR, logger="turnout.hooks"):
        assert runner.deliver_hooks("mail") == 1  # the start; the payment is held
    assert runner.change_cursor("mail") == started.position
    assert f"change {paid.id}" in caplog.records[-1].getMessage()
    assert runner.deliver_hooks("mail") == 1
    assert flaky == [paid.id, paid.id]
    assert steady == [started.id, paid.id]  # not called again for the held change
    assert runner.change_cursor("mail") == paid.position


def test_runners_of_other_names_keep_their_own_place(
    order: Engine, restarted: Callable[[], Engine]
) -> None:
    walk(order)
    runner = restarted()
    assert runner.deliver_hooks("one", limit=3) == 3
    assert runner.deliver_hooks("two") == len(runner.changes())
    assert runner.change_cursor("one") == runner.changes()[2].position


def test_run_hooks_delivers_what_another_engine_commits_until_stopped(
    order: Engine, restarted: Callable[[], Engine]
) -> None:
    runner = restarted()
    entered: list[str] = []
    runner.on_enter(DEFINITION, "paid", durable=True)(lambda c: entered.append(c.change_id))
    stop = threading.Event()
    loop = threading.Thread(target=runner.run_hooks, kwargs={"stop": stop, "idle": 0.05})
    loop.start()
    try:
        inst = order.start(DEFINITION)
        moved = order.send(inst.id, "pay")
        assert until(lambda: entered == [f"{inst.id}.{moved.revision}"])
    finally:
        stop.set()
        loop.join(30)
    assert not loop.is_alive()


def test_async_engine_runs_durable_hooks_until_cancelled(
    order: Engine, store_url: str, clock: Any
) -> None:
    inst = order.start(DEFINITION)
    order.send(inst.id, "pay")
    entered: list[str] = []

    async def scenario() -> int:
        async with AsyncEngine(store_url, clock) as aeng:
            aeng.on_enter(DEFINITION, "paid", durable=True)(lambda c: entered.append(c.state or ""))
            runner = asyncio.create_task(aeng.run_hooks("mail", idle=0.05))
            for _ in range(1500):  # another thread delivers: at most 30 s
                if entered:
                    break
                await asyncio.sleep(0.02)
            runner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await runner
            return await aeng.deliver_hooks("mail")

    assert asyncio.run(scenario()) == 0
    assert entered == ["paid"]
