"""Partitions as the claim reads them: in SQL for a plain path over the input (on both
databases), in Python for any other expression, both against a model of the rule (ready
tasks in order, each taken while its partition has fewer than the limit running)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg.sql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.flow_control import TaskLimit
from engine.flow_statements import LOCK_FOR_FEW, claim_sql, in_one_statement, partition_path
from engine.statements import driver_sql

NAME = "flow.work"
MISSING = object()  # a start whose input has no customer at all

customers = st.one_of(
    st.sampled_from(["a", "b", "é", "1"]),
    st.integers(min_value=0, max_value=2),
    st.none(),
    st.just(MISSING),
    st.just({"region": "eu"}),
)


def _data(customer: Any) -> dict[str, Any]:
    return {} if customer is MISSING else {"customer": customer}


def _key(customer: Any) -> str:
    return json.dumps(None if customer is MISSING else customer, sort_keys=True)


def _model(ready: list[str], running: list[str], per: int, wanted: int) -> list[int]:
    """The places in `ready` (partitions, oldest first) a claim of `wanted` takes."""
    busy = Counter(running)
    taken: list[int] = []
    for place, key in enumerate(ready):
        if len(taken) == wanted:
            break
        if busy[key] < per:
            busy[key] += 1
            taken.append(place)
    return taken


@pytest.mark.parametrize(
    ("partition", "path"),
    [
        ("input.customer", ("customer",)),
        ('input["order"].shop', ("order", "shop")),
        ("input.lines[0]", ("lines", 0)),
        ("input.region + '/' + input.shop", None),
        ("input", None),
        ('input["say \\"hi\\""]', None),
    ],
)
def test_plain_paths_are_read_in_sql_and_other_expressions_in_python(
    partition: str, path: tuple[Any, ...] | None
) -> None:
    assert partition_path(partition) == path
    limit = TaskLimit(NAME, partition=partition)
    assert in_one_statement(limit, postgres=True) is (path is not None)
    assert not in_one_statement(TaskLimit(NAME, rate=(5, 1.0), partition=partition), True)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    starts=st.lists(customers, min_size=1, max_size=12),
    per=st.integers(min_value=1, max_value=2),
    rounds=st.lists(
        st.tuples(st.integers(min_value=1, max_value=5), st.integers(min_value=0, max_value=2)),
        min_size=1,
        max_size=4,
    ),
)
def test_a_claim_under_partitions_takes_what_the_rule_allows(
    engine: Engine,
    deploy: Callable[[str], Any],
    clock: Any,
    starts: list[Any],
    per: int,
    rounds: list[tuple[int, int]],
) -> None:
    deploy("flow_job")
    engine.limit_task(NAME, partition="input.customer", partition_limit=per)
    assert in_one_statement(TaskLimit(NAME, partition="input.customer"), engine.store.postgres)
    ids, keys = [], {}
    for customer in starts:
        clock.advance(0.001)  # distinct ready times: the order of the claim is the model's
        instance = engine.start("flow_job", _data(customer)).id
        ids.append(instance)
        keys[instance] = _key(customer)
    ready, running = list(ids), dict[str, str]()
    try:
        for wanted, answered in rounds:
            expected = _model([keys[i] for i in ready], [keys[i] for i in running], per, wanted)
            claimed = engine.claim_tasks([NAME], limit=wanted)
            assert [task.instance_id for task in claimed] == [ready[p] for p in expected]
            ready = [i for p, i in enumerate(ready) if p not in expected]
            running.update((task.instance_id, task.id) for task in claimed)
            for task in claimed[:answered]:
                engine.complete_task(task.id, None, {})
                del running[task.instance_id]
    finally:  # leave no task of this example, ready or running, for the next
        for task_id in running.values():
            engine.complete_task(task_id, None, {})
        engine.clear_task_limit(NAME)
        while leftover := engine.claim_tasks([NAME], limit=50):
            for task in leftover:
                engine.complete_task(task.id, None, {})


def test_a_compound_partition_is_evaluated_in_python_with_the_same_rule(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("flow_job")
    engine.limit_task(NAME, partition="input.region + '/' + input.shop")
    shops = [("eu", "1"), ("eu", "1"), ("us", "1"), ("eu", "2"), ("us", "1")]
    ids = [engine.start("flow_job", {"region": r, "shop": s}).id for r, s in shops]
    claimed = engine.claim_tasks([NAME], limit=10)
    assert [task.instance_id for task in claimed] == [ids[0], ids[2], ids[3]]
    reason = engine.get(ids[1]).held[0]["reason"]
    expression = "input.region + '/' + input.shop"
    assert reason == f'partition limit: {expression} = "eu/1" has 1 of 1 running'


def test_partitions_with_a_concurrency_limit_keep_both(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("flow_job")
    engine.limit_task(NAME, concurrency=2, partition="input.customer")
    ids = [engine.start("flow_job", {"customer": c}).id for c in "aabcd"]
    first = engine.claim_tasks([NAME], limit=10)
    assert [task.instance_id for task in first] == [ids[0], ids[2]]
    assert engine.claim_tasks([NAME], limit=10) == []
    engine.complete_task(first[0].id, None, {})
    assert [task.instance_id for task in engine.claim_tasks([NAME], limit=10)] == [ids[1]]


def test_priorities_come_first_within_partitions(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("flow_job")
    engine.limit_task(NAME, partition="input.customer")
    plain_a = engine.start("flow_job", {"customer": "a"}).id
    plain_b = engine.start("flow_job", {"customer": "b"}).id
    urgent_a = engine.start("flow_job", {"customer": "a"}, priority=5).id
    late_c = engine.start("flow_job", {"customer": "c"}, priority=-1).id
    claimed = engine.claim_tasks([NAME], limit=10)
    assert {task.instance_id for task in claimed} == {urgent_a, plain_b, late_c}
    assert engine.get(plain_a).held[0]["reason"].startswith("partition limit")


@pytest.mark.parametrize("per", [1, 2])
def test_a_free_partition_behind_many_tasks_of_a_busy_one_is_claimed(
    engine: Engine, deploy: Callable[[str], Any], clock: Any, per: int
) -> None:
    # The claim looks at the first few ready tasks, then further: 60 tasks of a busy
    # customer ahead of one of a free customer must not hide it.
    deploy("flow_job")
    engine.limit_task(NAME, partition="input.customer", partition_limit=per)
    busy = []
    for _ in range(60):
        clock.advance(0.001)
        busy.append(engine.start("flow_job", {"customer": "a"}).id)
    clock.advance(0.001)
    free = engine.start("flow_job", {"customer": "b"}).id
    running = engine.claim_tasks([NAME], limit=per)
    assert [task.instance_id for task in running] == busy[:per]
    assert [task.instance_id for task in engine.claim_tasks([NAME], limit=3)] == [free]
    assert engine.claim_tasks([NAME], limit=3) == []
    engine.complete_task(running[0].id, None, {})
    assert [task.instance_id for task in engine.claim_tasks([NAME], limit=3)] == [busy[per]]


@pytest.mark.parametrize("per", [1, 2])
def test_a_claim_planned_while_the_tasks_table_is_empty_does_not_scan_it(
    engine: Engine, deploy: Callable[[str], Any], per: int
) -> None:
    # The server keeps one plan per prepared statement and connection, and a worker's first
    # claims may run while the table is empty: that plan must look tasks up by key, not read
    # every task on each later claim, and must not be compiled by JIT either.
    if not engine.store.postgres:
        pytest.skip("a plan kept for a prepared statement is PostgreSQL's")
    deploy("flow_job")
    engine.limit_task(NAME, partition="input.customer", partition_limit=per)
    sql = claim_sql(True, False, "COALESCE(t.input #> ?::text[], 'null'::jsonb)", per == 1)
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))  # in order of first use
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql)
    values = {
        "worker": "w",
        "at": "2026-12-04",
        "until": "2026-12-05",
        "name": NAME,
        "wanted": 8,
        "concurrency": None,
        "key": '{"customer"}',
        "per": per,
        "window": 12,
    }
    raw = engine.store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(driver_sql(LOCK_FOR_FEW, True), (NAME,))
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE claim AS {numbered}")
        arguments = psycopg.sql.SQL(", ").join(psycopg.sql.Literal(values[n]) for n in names)
        cursor.execute(psycopg.sql.SQL("EXPLAIN EXECUTE claim({})").format(arguments))
        plan = "\n".join(row[0] for row in cursor.fetchall())
    finally:
        raw.invalidate()  # the prepared statement goes with the connection
    assert "Seq Scan on turnout_tasks" not in plan, plan
    assert "Index Scan using turnout_tasks_pkey on turnout_tasks" in plan, plan
    assert "JIT" not in plan, plan
