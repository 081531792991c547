"""The Prometheus metrics: `/metrics` parses with Prometheus's own text parser, and its
counters and gauges are exactly the work a known workload did, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from engine import DatabaseUnavailable, Engine, EventRejected
from engine.api import create_app
from engine.counts import ACCEPTED, PENDING_LIMIT, Counts
from engine.tables import instances_t

TASK = "metered.charge"
METERED = f"""
name: metered
initial: open
states:
  open:
    on:
      bump: {{assign: {{bumps: "(context.bumps or 0) + 1"}}}}
      charge: charging
    after:
      1h: lapsed
  charging:
    task: {TASK}
    retry: {{attempts: 2, delay: 10s}}
    timeout: 30s
    on: {{done: paid, failed: broken}}
  paid: {{final: true}}
  broken: {{final: failed}}
  lapsed: {{final: true}}
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scraped(client: TestClient) -> Samples:
    """Every sample of `/metrics`, read by Prometheus's parser, by name and labels."""
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for one the scrape has not (a count that has not started)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of `name`, by its labels."""
    return {labels: number for (sample, labels), number in samples.items() if sample == name}


@pytest.fixture
def engine(store_url: str, clock: Any) -> Iterator[Engine]:
    with Engine(store_url, clock) as engine:
        engine.deploy(METERED)
        failures: dict[str, int] = {}

        @engine.task(TASK)
        def charge(data: dict[str, Any]) -> dict[str, Any]:
            """'ok' succeeds, 'flaky' fails its first attempt, 'bad' every attempt."""
            failures[data["name"]] = failures.get(data["name"], 0) + 1
            if data["plan"] == "bad" or (data["plan"] == "flaky" and failures[data["name"]] == 1):
                raise RuntimeError("declined")
            return {"charged": data["name"]}

        yield engine


def test_metrics_count_exactly_the_work_done(engine: Engine, clock: Any) -> None:
    start = clock.now
    client = TestClient(create_app(engine), base_url="http://127.0.0.1")
    ids = {
        name: engine.start("metered", {"name": name, "plan": plan}).id
        for name, plan in [("a", "ok"), ("b", "flaky"), ("c", "bad"), ("d", "ok"), ("e", "ok")]
    }
    for _ in range(3):
        engine.send(ids["a"], "bump")
    for name in "abc":
        engine.send(ids[name], "charge")
    engine.cancel(ids["e"])
    for instance, event in [("a", "nope"), ("a", "bump"), ("e", "bump")]:
        with pytest.raises(EventRejected):
            engine.send(ids[instance], event)

    queued = scraped(client)
    assert value(queued, "turnout_tasks_ready", task=TASK) == 3
    assert value(queued, "turnout_timers_waiting") == 1  # d's; the others left `open`
    assert value(queued, "turnout_timers_due") == 0
    running = {"definition": "metered", "status": "running"}
    assert value(queued, "turnout_instances_unfinished", **running) == 4
    assert value(queued, "turnout_database_up") == 1

    engine.run_until_idle()  # a succeeds; b and c fail their first attempt
    retrying = scraped(client)
    assert value(retrying, "turnout_tasks_delayed", task=TASK) == 2
    assert value(retrying, "turnout_tasks_ready", task=TASK) == 0
    clock.advance(10)
    engine.run_until_idle()  # b succeeds; c fails again, and for good

    f = engine.start("metered", {"name": "f", "plan": "ok"}).id
    engine.send(f, "charge")
    [held] = engine.claim_tasks([TASK], worker="w1", lease=5)
    assert value(scraped(client), "turnout_tasks_claimed", task=TASK) == 1
    clock.advance(6)
    assert engine.expire_tasks() == 1  # w1's lease lapsed
    assert engine.complete_task(held.id, "w1", {"late": True}) is False  # recorded stale
    engine.claim_tasks([TASK], worker="w2", lease=60)
    clock.advance(31)
    assert engine.expire_tasks() == 1  # w2's attempt timed out; a retry waits 10 s
    clock.now = start + timedelta(hours=1, seconds=90)
    assert value(scraped(client), "turnout_timers_due_age_seconds") == 90
    engine.run_until_idle()  # d's timer fires 90 s late; f's retry succeeds

    final = scraped(client)
    assert labelled(final, "turnout_instances_started_total") == {
        frozenset({("definition", "metered")}): 6
    }
    assert labelled(final, "turnout_instances_finished_total") == {
        frozenset({("definition", "metered"), ("status", "succeeded")}): 4,  # a, b, d, f
        frozenset({("definition", "metered"), ("status", "failed")}): 1,  # c
        frozenset({("definition", "metered"), ("status", "cancelled")}): 1,  # e
    }
    assert value(final, "turnout_events_accepted_total", definition="metered") == 7
    assert value(final, "turnout_events_rejected_total", definition="metered") == 3
    assert labelled(final, "turnout_task_attempts_total") == {
        frozenset({("task", TASK), ("outcome", "completed")}): 3,  # a, b, f
        frozenset({("task", TASK), ("outcome", "failed")}): 3,  # b once, c twice
        frozenset({("task", TASK), ("outcome", "timed_out")}): 1,  # f, held by w2
        frozenset({("task", TASK), ("outcome", "stale")}): 1,  # w1's late answer
    }
    assert value(final, "turnout_task_lease_expiries_total", task=TASK) == 1
    # The handlers this process ran: a, b twice, c twice, f's last attempt.
    assert value(final, "turnout_task_duration_seconds_count", task=TASK) == 6
    assert value(final, "turnout_task_duration_seconds_bucket", task=TASK, le="+Inf") == 6
    assert value(final, "turnout_timers_fired_total") == 1
    assert value(final, "turnout_timer_lag_seconds_count") == 1
    assert value(final, "turnout_timer_lag_seconds_sum") == 90
    assert value(final, "turnout_timer_lag_seconds_bucket", le="60.0") == 0
    assert value(final, "turnout_timer_lag_seconds_bucket", le="300.0") == 1
    assert value(final, "turnout_database_errors_total") == 0
    assert labelled(final, "turnout_poisoned_total") == {}
    assert labelled(final, "turnout_instances_unfinished") == {}
    assert value(final, "turnout_tasks_ready_age_seconds") == 0
    assert value(final, "turnout_timers_waiting") == 0
    assert value(final, "turnout_tasks_claimed", task=TASK) == 0
    assert value(final, "process_cpu_seconds_total") > 0  # the process's own, beside them


def test_a_timer_whose_instance_cannot_take_it_is_counted_poisoned(
    engine: Engine, clock: Any
) -> None:
    instance = engine.start("metered", {"name": "g", "plan": "ok"})
    with engine.store.engine.begin() as conn:  # a version that is not deployed
        conn.execute(
            sa.update(instances_t).where(instances_t.c.id == instance.id).values(version=99)
        )
    clock.advance(timedelta(hours=2))
    engine.run_until_idle()
    samples = scraped(TestClient(create_app(engine), base_url="http://127.0.0.1"))
    assert labelled(samples, "turnout_poisoned_total") == {frozenset({("action", "failed")}): 1}
    assert value(samples, "turnout_timers_fired_total") == 0
    assert engine.get(instance.id).status == "failed"
    finished = {"definition": "metered", "status": "failed"}
    assert value(samples, "turnout_instances_finished_total", **finished) == 1


def test_database_errors_are_counted_and_a_scrape_still_answers(tmp_path: Path, clock: Any) -> None:
    path = tmp_path / "locked.db"
    with Engine(f"sqlite:///{path}", clock, busy_timeout=0.05) as engine:
        client = TestClient(create_app(engine), base_url="http://127.0.0.1")
        engine.deploy(METERED)
        instance = engine.start("metered", {"name": "h", "plan": "ok"})
        holder = sqlite3.connect(path)
        holder.execute("BEGIN EXCLUSIVE")  # another process's write lock
        try:
            with pytest.raises(DatabaseUnavailable):
                engine.send(instance.id, "bump")
            locked = scraped(client)  # reads do not wait for the writer
        finally:
            holder.rollback()
        holder.execute("DROP TABLE turnout_timers")  # a database the engine cannot use
        holder.close()
        broken = scraped(client)
    assert value(locked, "turnout_database_errors_total") == 1
    assert value(locked, "turnout_database_up") == 1
    assert value(locked, "turnout_events_accepted_total", definition="metered") == 0
    assert value(broken, "turnout_database_up") == 0  # the counters are still there
    assert value(broken, "turnout_database_errors_total") == 2
    assert value(broken, "turnout_instances_started_total", definition="metered") == 1
    assert labelled(broken, "turnout_tasks_ready") == {}


def test_metrics_need_the_token_when_the_server_has_one(engine: Engine) -> None:
    client = TestClient(create_app(engine, token="sesame"), base_url="http://127.0.0.1")
    assert client.get("/metrics").status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer sesame"})
    assert answer.status_code == 200
    assert "turnout_events_accepted_total" in answer.text


def test_an_applications_registry_exposes_the_engines_metrics(engine: Engine) -> None:
    registry = prometheus_client.CollectorRegistry()
    assert engine.metrics_registry(registry) is registry
    assert engine.metrics_registry(registry) is registry  # registered once
    assert engine.metrics_registry() is engine.metrics_registry()
    engine.start("metered", {"name": "i", "plan": "ok"})
    engine.start_many("metered", [{"name": n, "plan": "ok"} for n in "jkl"], batch=2)
    text = prometheus_client.generate_latest(registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    [sample] = families["turnout_instances_started"].samples
    assert sample.labels == {"definition": "metered"} and sample.value == 4
    assert "process_cpu_seconds" not in families  # only what the application put there


def test_counts_added_up_from_many_threads_are_exact() -> None:
    """Committed tallies queue without a lock and are added up past PENDING_LIMIT and at a
    scrape: none is lost or counted twice, whichever thread adds them up."""
    counts = Counts()
    per_thread = PENDING_LIMIT * 3

    def commit(definition: str) -> None:
        for _ in range(per_thread):
            counts.committed([(ACCEPTED, definition), (ACCEPTED, "shared")])

    threads = [threading.Thread(target=commit, args=(f"def{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    seen = [counts.snapshot().tallies.get((ACCEPTED, "shared"), 0) for _ in range(20)]
    for thread in threads:
        thread.join()
    final = counts.snapshot().tallies
    assert final[(ACCEPTED, "shared")] == 4 * per_thread
    assert all(final[(ACCEPTED, f"def{index}")] == per_thread for index in range(4))
    assert seen == sorted(seen)  # a scrape never sees a count go down
