"""Schedules: one instance per tick however many workers claim it, catch-up after downtime,
overlap policies, time zones across daylight saving time, pause, resume and delete, a retry
that cannot start a tick twice, and the errors a bad schedule gets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from waiting import until

from engine import (
    AsyncEngine,
    DatabaseUnavailable,
    DefinitionNotFound,
    Engine,
    InvalidInput,
    ScheduleExists,
    ScheduleNotFound,
)
from engine import schedules as schedules_module
from engine.schedule_times import tick_key

DEFINITIONS = Path(__file__).parent / "definitions"
MINUTE = timedelta(minutes=1)


def started_keys(engine: Engine, definition: str = "counter") -> list[str]:
    """The business keys of the instances of `definition`, oldest first."""
    return [i.key or "" for i in engine.instances(definition=definition, limit=1000)]


def key_at(name: str, minutes: float, start: datetime) -> str:
    return tick_key(name, start + timedelta(minutes=minutes))


def test_four_workers_start_exactly_one_instance_per_tick(
    store_url: str, clock: Any, deploy: Callable[[str], Any], engine: Engine
) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("every-minute", "counter", every="1m", overlap="allow")
    workers = [Engine(store_url, clock=clock) for _ in range(4)]
    ticks = 100
    gate = threading.Barrier(len(workers) + 1)
    counts = [0] * len(workers)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(ticks):
                gate.wait()  # the clock has moved to the next tick
                counts[index] += workers[index].run_due_schedules()
                gate.wait()  # every worker has had its go at this tick
        except BaseException as exc:
            errors.append(exc)
            gate.abort()

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(workers))]
    for thread in threads:
        thread.start()
    try:
        for _ in range(ticks):
            clock.advance(MINUTE)
            gate.wait(timeout=60)
            gate.wait(timeout=60)
    finally:
        for thread in threads:
            thread.join(timeout=60)
        for worker in workers:
            worker.close()
    assert errors == []
    assert sum(counts) == ticks
    expected = [key_at("every-minute", minute, start) for minute in range(1, ticks + 1)]
    assert started_keys(engine) == expected
    schedule = engine.schedule("every-minute")
    assert schedule.next_tick_at == start + (ticks + 1) * MINUTE
    assert schedule.last_tick_at == start + ticks * MINUTE


@pytest.mark.parametrize(
    ("catch_up", "late", "expected"),
    [
        ("none", timedelta(minutes=5), []),
        ("none", timedelta(seconds=30), [100]),  # late, but not missed
        ("last", timedelta(minutes=5), [100]),
        ("all", timedelta(minutes=5), list(range(10, 101, 10))),
    ],
)
def test_catch_up_after_downtime(
    engine: Engine,
    clock: Any,
    deploy: Callable[[str], Any],
    catch_up: str,
    late: timedelta,
    expected: list[int],
) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("reports", "counter", every="10m", overlap="allow", catch_up=catch_up)
    clock.advance(timedelta(minutes=100) + late)  # the workers were down for ten ticks
    assert engine.run_due_schedules() == len(expected)
    assert started_keys(engine) == [key_at("reports", minute, start) for minute in expected]
    assert engine.schedule("reports").next_tick_at == start + timedelta(minutes=110)
    assert engine.run_due_schedules() == 0  # nothing is due twice


def test_catch_up_all_is_bounded_to_the_newest_hundred_ticks(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("often", "counter", every=60, overlap="allow", catch_up="all")
    clock.advance(250 * MINUTE)
    assert engine.run_due_schedules() == 100
    assert started_keys(engine) == [key_at("often", m, start) for m in range(151, 251)]


def test_catch_up_all_on_a_cron_schedule(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("quarters", "counter", cron="*/15 * * * *", overlap="allow", catch_up="all")
    clock.advance(timedelta(hours=1, minutes=5))
    assert engine.run_due_schedules() == 4
    assert started_keys(engine) == [key_at("quarters", m, start) for m in (15, 30, 45, 60)]
    assert engine.schedule("quarters").next_tick_at == start + timedelta(minutes=75)


def test_overlap_skip_waits_for_the_running_instance(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("single", "counter", every="1m", overlap="skip")
    clock.advance(MINUTE)
    assert engine.run_due_schedules() == 1
    clock.advance(MINUTE)
    assert engine.run_due_schedules() == 0  # the first is still running: tick skipped
    first = engine.get_by_key("counter", key_at("single", 1, start))
    engine.send(first.id, "stop")
    clock.advance(MINUTE)
    assert engine.run_due_schedules() == 1
    assert started_keys(engine) == [key_at("single", m, start) for m in (1, 3)]


def test_overlap_allow_starts_every_tick(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    engine.add_schedule("many", "counter", every="1m", overlap="allow")
    for _ in range(3):
        clock.advance(MINUTE)
        assert engine.run_due_schedules() == 1
    assert len(started_keys(engine)) == 3


def test_overlap_buffer_one_starts_one_held_tick_once_the_instance_finishes(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("queued", "counter", every="1m", overlap="buffer_one")
    clock.advance(MINUTE)
    assert engine.run_due_schedules() == 1
    for _ in range(2):  # the second tick is held, the third dropped
        clock.advance(MINUTE)
        assert engine.run_due_schedules() == 0
    assert engine.schedule("queued").buffered_tick == start + 2 * MINUTE
    engine.send(engine.get_by_key("counter", key_at("queued", 1, start)).id, "stop")
    assert engine.run_due_schedules() == 1  # no tick due: the held one starts
    assert started_keys(engine) == [key_at("queued", m, start) for m in (1, 2)]
    assert engine.schedule("queued").buffered_tick is None
    assert engine.run_due_schedules() == 0


def test_a_cron_schedule_follows_its_time_zone_across_daylight_saving_time(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    clock.now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    schedule = engine.add_schedule(
        "nightly", "counter", cron="30 2 * * *", timezone="Europe/Paris", overlap="allow"
    )
    # 02:30 does not exist in Paris on 29 March 2026 (clocks go from 02:00 to 03:00).
    assert schedule.next_tick_at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert schedule.next_run_local.isoformat() == "2026-03-29T03:00:00+02:00"
    clock.now = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert engine.run_due_schedules() == 1
    following = engine.schedule("nightly")
    assert following.next_tick_at == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST
    clock.now = datetime(2026, 3, 30, 0, 30, tzinfo=UTC)
    assert engine.run_due_schedules() == 1
    # Winter time: 02:30 in Paris is 01:30 UTC.
    clock.now = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    assert engine.add_schedule(
        "winter", "counter", cron="30 2 * * *", timezone="Europe/Paris"
    ).next_tick_at == datetime(2026, 11, 3, 1, 30, tzinfo=UTC)


def test_pause_resume_and_delete(engine: Engine, clock: Any, deploy: Callable[[str], Any]) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("paused", "counter", every="1m", overlap="allow", catch_up="all")
    assert engine.pause_schedule("paused").paused is True
    clock.advance(5 * MINUTE)
    assert engine.run_due_schedules() == 0
    resumed = engine.resume_schedule("paused")
    assert resumed.paused is False
    assert resumed.next_tick_at == start + 6 * MINUTE  # the paused ticks are not caught up
    assert engine.run_due_schedules() == 0
    clock.advance(MINUTE)
    assert engine.run_due_schedules() == 1
    assert [s.name for s in engine.schedules()] == ["paused"]
    engine.delete_schedule("paused")
    assert engine.schedules() == []
    with pytest.raises(ScheduleNotFound):
        engine.schedule("paused")
    with pytest.raises(ScheduleNotFound):
        engine.delete_schedule("paused")
    with pytest.raises(ScheduleNotFound):
        engine.pause_schedule("paused")
    assert len(started_keys(engine)) == 1  # its instances stay


def test_a_round_that_failed_is_run_again_without_a_second_start(
    engine: Engine, clock: Any, deploy: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("retried", "counter", every="1m")
    real_start = schedules_module.runtime.start

    def start_then_lose_the_connection(*args: Any) -> Any:
        real_start(*args)
        raise DatabaseUnavailable("the connection was lost", outcome_unknown=True)

    monkeypatch.setattr(schedules_module.runtime, "start", start_then_lose_the_connection)
    clock.advance(MINUTE)
    with pytest.raises(DatabaseUnavailable):
        engine.run_due_schedules()
    monkeypatch.undo()
    assert engine.run_due_schedules() == 1
    assert engine.run_due_schedules() == 0
    assert started_keys(engine) == [key_at("retried", 1, start)]


def test_a_tick_whose_instance_exists_already_is_not_started_again(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("known", "counter", every="1m")
    # As after a commit whose outcome was lost: the tick's instance is there.
    existing = engine.start("counter", key=key_at("known", 1, start))
    clock.advance(MINUTE)
    assert engine.run_due_schedules() == 0
    schedule = engine.schedule("known")
    assert schedule.last_instance_id == existing.id
    assert schedule.next_tick_at == start + 2 * MINUTE


def test_workers_and_next_due_see_schedules(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    assert engine.next_due() is None
    engine.add_schedule("woken", "counter", every="1h", start_at=clock.now + MINUTE)
    assert engine.next_due() == clock.now + MINUTE
    clock.advance(MINUTE)
    engine.run_until_idle()
    assert len(started_keys(engine)) == 1
    assert engine.next_due() == clock.now + timedelta(hours=1)
    engine.pause_schedule("woken")
    assert engine.next_due() is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"cron": "61 * * * *"}, "not a cron expression"),
        ({"cron": "* * *"}, "five fields"),
        ({"every": "10 parsecs"}, "not an interval"),
        ({"every": 0}, "between 1 second"),
        ({"cron": "* * * * *", "every": 60}, "either a cron expression or an interval"),
        ({}, "either a cron expression or an interval"),
        ({"every": 60, "timezone": "Mars/Olympus"}, "not a known time zone"),
        ({"every": 60, "overlap": "queue"}, "overlap must be one of"),
        ({"every": 60, "catch_up": "some"}, "catch-up must be one of"),
        ({"every": 60, "start_at": datetime(2026, 1, 1)}, "with a time zone"),
    ],
)
def test_a_bad_schedule_is_refused_plainly(
    engine: Engine, deploy: Callable[[str], Any], arguments: dict[str, Any], message: str
) -> None:
    deploy("counter")
    with pytest.raises(InvalidInput, match=message):
        engine.add_schedule("bad", "counter", **arguments)
    assert engine.schedules() == []


def test_unknown_definitions_bad_names_and_taken_names_are_refused(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    with pytest.raises(DefinitionNotFound):
        engine.add_schedule("orphan", "nowhere", every=60)
    deploy("counter")
    with pytest.raises(InvalidInput, match="not a schedule name"):
        engine.add_schedule("no spaces", "counter", every=60)
    engine.add_schedule("taken", "counter", every=60)
    with pytest.raises(ScheduleExists):
        engine.add_schedule("taken", "counter", every=120)
    assert engine.schedule("taken").every_seconds == 60


def test_a_start_the_definition_now_refuses_is_recorded_and_not_retried_every_round(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("strict", "counter", every="1m")
    stricter = (
        (DEFINITIONS / "counter.yaml")
        .read_text()
        .replace(
            "initial: counting", "input:\n  type: object\n  required: [count]\ninitial: counting"
        )
    )
    engine.deploy(stricter)  # version 2 wants a count the schedule's data lacks
    clock.advance(MINUTE)
    assert engine.run_due_schedules() == 0
    failing = engine.schedule("strict")
    assert failing.last_error is not None and "InvalidInput" in failing.last_error
    assert failing.next_tick_at == start + 2 * MINUTE
    assert started_keys(engine) == []
    clock.advance(MINUTE)
    assert engine.run_due_schedules() == 0
    assert "InvalidInput" in (engine.schedule("strict").last_error or "")
    engine.delete_schedule("strict")  # added again with data the definition takes
    engine.add_schedule("strict", "counter", every="1m", data={"count": 0})
    clock.advance(MINUTE)
    assert engine.run_due_schedules() == 1
    assert engine.schedule("strict").last_error is None


def test_data_the_definition_refuses_is_refused_when_the_schedule_is_added(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    with pytest.raises(InvalidInput):
        engine.add_schedule("mails", "mailing", every="1d", data={"nobody": []})
    assert engine.add_schedule("mails", "mailing", every="1d", data={"recipients": ["a"]})


def test_an_async_engine_runs_schedules_with_its_other_work(
    store_url: str, clock: Any, deploy: Callable[[str], Any], engine: Engine
) -> None:
    deploy("counter")
    engine.add_schedule("async", "counter", every="1m")
    clock.advance(MINUTE)

    async def run() -> int:
        async_engine = AsyncEngine(store_url, clock=clock)
        try:
            await async_engine.run_until_idle()
            return len(await async_engine.schedules())
        finally:
            await async_engine.close()

    assert asyncio.run(run()) == 1
    assert len(started_keys(engine)) == 1


def test_four_worker_loops_start_each_tick_once(
    store_url: str, clock: Any, deploy: Callable[[str], Any], engine: Engine
) -> None:
    deploy("counter")
    start = clock.now
    engine.add_schedule("looped", "counter", every="1m", overlap="allow", catch_up="all")
    workers = [Engine(store_url, clock=clock) for _ in range(4)]
    stop = threading.Event()
    loops = [
        threading.Thread(target=worker.work, kwargs={"stop": stop, "poll_interval": 0.05})
        for worker in workers
    ]
    for loop in loops:
        loop.start()
    try:
        for _ in range(100):  # the ticks come due while the loops sweep, in whatever batches
            clock.advance(MINUTE)
        assert until(lambda: len(started_keys(engine)) >= 100)
        assert until(lambda: engine.schedule("looped").next_tick_at > clock.now)
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=30)
        for worker in workers:
            worker.close()
    assert sorted(started_keys(engine)) == [key_at("looped", m, start) for m in range(1, 101)]
