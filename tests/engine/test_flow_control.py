"""Flow control per task name, claim by claim on the fake clock: concurrency, rate,
partitions, priorities, the reasons a held task gives, and the settings file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine import Engine, InvalidInput
from engine.tables import priorities_t


def _start(engine: Engine, count: int, **data: Any) -> list[str]:
    return [engine.start("flow_job", dict(data)).id for _ in range(count)]


def _claim(engine: Engine, limit: int = 10) -> list[str]:
    return [task.instance_id for task in engine.claim_tasks(["flow.work"], limit=limit)]


def test_concurrency_limit_holds_the_rest_ready_with_the_reason(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("flow_job")
    engine.limit_task("flow.work", concurrency=2)
    ids = _start(engine, 5)
    first = engine.claim_tasks(["flow.work"], limit=10)
    assert [task.instance_id for task in first] == ids[:2]
    assert _claim(engine) == []
    held = engine.get(ids[2]).held
    assert [entry["reason"] for entry in held] == ["concurrency limit: 2 of 2 running"]
    assert held[0]["name"] == "flow.work" and held[0]["state"] == "work"
    assert engine.get(ids[0]).held == []  # running, not held
    engine.complete_task(first[0].id, None, {})
    assert _claim(engine) == [ids[2]]
    assert engine.get(ids[0]).held == []  # finished


def test_rate_limit_spaces_starts_and_a_late_claim_catches_up_only_a_little(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("flow_job")
    engine.limit_task("flow.work", rate=(4, 1.0))  # one start each 0.25 s
    ids = _start(engine, 12)
    assert _claim(engine) == ids[:2]  # the slot now, and one of the catch-up window
    assert _claim(engine) == []
    assert engine.get(ids[2]).held[0]["reason"].startswith("rate limit: 4 per 1s")
    clock.advance(0.25)
    assert _claim(engine) == ids[2:3]
    clock.advance(0.6)  # two slots passed: both taken, the third not yet come
    assert _claim(engine) == ids[3:5]
    clock.advance(60)  # a long pause: the missed slots are not made up for
    assert len(_claim(engine)) == 2


def test_partition_runs_one_task_per_customer(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("flow_job")
    engine.limit_task("flow.work", partition="input.customer")
    a1, a2, b1, a3, b2 = (
        engine.start("flow_job", {"customer": name}).id for name in ["a", "a", "b", "a", "b"]
    )
    claimed = engine.claim_tasks(["flow.work"], limit=10)
    assert [task.instance_id for task in claimed] == [a1, b1]
    reason = engine.get(a2).held[0]["reason"]
    assert reason == 'partition limit: input.customer = "a" has 1 of 1 running'
    engine.complete_task(claimed[0].id, None, {})
    assert _claim(engine) == [a2]
    engine.limit_task("flow.work", partition="input.customer", partition_limit=2)
    assert _claim(engine) == [a3, b2]


def test_higher_priority_is_claimed_first_then_oldest_first(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("flow_job")
    engine.limit_task("flow.work")  # no limit: the claims are in priority order
    low = _start(engine, 3)
    urgent = engine.start("flow_job", {}, priority=10).id
    middle = engine.start_many("flow_job", [{}, {}], priority=5)
    assert set(_claim(engine, 4)) == {urgent, *middle, low[0]}
    assert set(_claim(engine, 1)) == {low[1]}
    engine.limit_task("flow.work", concurrency=6)  # 5 running: room for one more
    later = engine.start("flow_job", {}, priority=1).id
    assert _claim(engine, 4) == [later]


def test_unlimited_names_are_claimed_beside_limited_ones(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("flow_job")
    deploy("pipeline")
    engine.limit_task("flow.work", concurrency=1)
    jobs = _start(engine, 3)
    pipes = [engine.start("pipeline", {}).id for _ in range(2)]
    claimed = engine.claim_tasks(None, limit=10)
    assert sorted(task.instance_id for task in claimed) == sorted([jobs[0], *pipes])
    assert engine.claim_tasks(["flow.work", "pipeline.fetch"], limit=10) == []


def test_an_answer_does_not_claim_a_limited_task_past_its_limit(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("pipeline")
    engine.limit_task("pipeline.store", concurrency=1)
    first, second = (engine.start("pipeline", {}).id for _ in range(2))
    names = ["pipeline.fetch", "pipeline.store"]
    fetches = engine.claim_tasks(names, limit=10)
    assert len(fetches) == 2
    for task in fetches:  # the next task is limited: not taken with the answer
        assert engine.complete_and_claim(task.id, None, {}, names) == (True, [])
    assert [task.name for task in engine.claim_tasks(names, limit=10)] == ["pipeline.store"]
    assert engine.get(second).held[0]["reason"] == "concurrency limit: 1 of 1 running"
    assert engine.get(first).held == []


def test_limits_are_shared_through_the_database_and_can_be_cleared(
    engine: Engine, deploy: Callable[[str], Any], store_url: str, clock: Any
) -> None:
    deploy("flow_job")
    engine.limit_task("flow.work", concurrency=1, rate=(10, 2.0), partition="input.customer")
    other = Engine(store_url, clock=clock)
    try:
        assert [limit.to_json() for limit in other.task_limits()] == [
            {
                "name": "flow.work",
                "concurrency": 1,
                "rate": {"count": 10, "per": 2.0},
                "partition": "input.customer",
                "partition_limit": 1,
            }
        ]
        _start(engine, 2)
        assert len(other.claim_tasks(["flow.work"], limit=5)) == 1
        assert other.clear_task_limit("flow.work") is True
        assert other.clear_task_limit("flow.work") is False
        assert len(other.claim_tasks(["flow.work"], limit=5)) == 1
    finally:
        other.close()


def test_settings_file_sets_the_limits(
    engine: Engine, deploy: Callable[[str], Any], tmp_path: Path
) -> None:
    settings = tmp_path / "limits.toml"
    settings.write_text(
        '[tasks."flow.work"]\nconcurrency = 3\nrate = "20/1s"\n'
        'partition = "input.customer"\npartition_limit = 2\n\n'
        '[tasks."mail.send"]\nrate = [5, 60]\n'
    )
    engine.load_task_limits(settings)
    assert {limit.name: (limit.concurrency, limit.rate) for limit in engine.task_limits()} == {
        "flow.work": (3, (20, 1.0)),
        "mail.send": (None, (5, 60.0)),
    }


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ('[tasks."a.b"]\nconcurrency = 0\n', "concurrency must be 1 or more"),
        ('[tasks."a.b"]\nrate = "fast"\n', "rate is COUNT/DURATION"),
        ('[tasks."a.b"]\npartition = "input.("\n', "partition"),
        ('[tasks."a.b"]\nlimit = 3\n', "unknown settings"),
        ("[tasks\n", "limits.toml"),
    ],
)
def test_a_limit_that_cannot_be_kept_is_refused_before_any_is_set(
    engine: Engine, tmp_path: Path, settings: str, problem: str
) -> None:
    path = tmp_path / "limits.toml"
    path.write_text('[tasks."ok.task"]\nconcurrency = 2\n' + settings)
    with pytest.raises(InvalidInput, match=problem):
        engine.load_task_limits(path)
    assert engine.task_limits() == []


def test_the_children_a_call_starts_take_their_parents_priority(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    for name in ("call_grandparent", "call_parent", "call_child"):
        deploy(name)
    urgent = engine.start("call_grandparent", {"n": 1}, priority=4).id
    plain = engine.start("call_grandparent", {"n": 2}).id

    def family(instance_id: str) -> list[str]:
        children = engine.get(instance_id).children
        return [instance_id] + [i for child in children for i in family(child)]

    with engine.store.core() as conn:
        rows = conn.execute(sa.select(priorities_t.c.instance_id, priorities_t.c.priority))
        priorities = {row[0]: row[1] for row in rows}
    assert len(family(urgent)) == 3 and len(family(plain)) == 3
    assert {i: priorities.get(i) for i in family(urgent)} == dict.fromkeys(family(urgent), 4)
    assert not set(family(plain)) & set(priorities)
