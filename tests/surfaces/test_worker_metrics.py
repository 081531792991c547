"""Metrics served by the real commands: `turnout serve` at `/metrics`, and `turnout worker
--metrics-port`; what they count is read with Prometheus's own parser."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from turnout_command import turnout_command, turnout_env
from turnout_processes import TASK_MODULES, free_port, run_turnout, wait_until

from engine import Engine

TASK = "metered.charge"
DEFINITION = f"""
name: metered_work
initial: charging
states:
  charging:
    task: {TASK}
    on: {{done: paid, failed: refused}}
  paid: {{final: true}}
  refused: {{final: failed}}
"""
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scraped(port: int) -> Samples | None:
    """The worker's samples by name and labels; None while it does not answer yet."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except httpx.TransportError:
        return None
    return parsed(answer)


def parsed(answer: httpx.Response) -> Samples:
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_worker_serves_metrics_that_count_the_tasks_it_ran(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{database}_url")
    shutil.copy(TASK_MODULES / "metered_handlers.py", tmp_path / "metered_handlers.py")
    with Engine(url) as engine:  # another process starts the instances
        engine.deploy(DEFINITION)
        for number in range(5):
            engine.start("metered_work", {"refuse": number < 2})
    port = free_port()
    worker = subprocess.Popen(
        [turnout_command(), "worker", "--tasks", "metered_handlers", "--metrics-port", str(port)],
        env=turnout_env(url),
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def all_answered() -> Samples | None:
        found = scraped(port)
        attempts = "turnout_task_attempts_total"
        if found is None or value(found, attempts, task=TASK, outcome="failed") != 2:
            return None
        return found if value(found, attempts, task=TASK, outcome="completed") == 3 else None

    try:
        samples = wait_until(all_answered, 60, "the worker's metrics to count 5 answers")
    finally:
        worker.send_signal(signal.SIGINT)
        _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert f"metrics on http://127.0.0.1:{port}/metrics" in stderr
    finished = "turnout_instances_finished_total"
    assert value(samples, finished, definition="metered_work", status="succeeded") == 3
    assert value(samples, finished, definition="metered_work", status="failed") == 2
    assert value(samples, "turnout_task_duration_seconds_count", task=TASK) == 5
    # Counters are the worker's own: the instances were started by another process...
    assert value(samples, "turnout_instances_started_total", definition="metered_work") is None
    # ...while the gauges are the database's: no task waits any more.
    assert value(samples, "turnout_tasks_ready", task=TASK) is None
    assert value(samples, "turnout_database_up") == 1
    assert value(samples, "process_cpu_seconds_total") is not None


def test_serve_answers_metrics_counting_what_it_was_asked(api: httpx.Client, door: str) -> None:
    """The module's server is this test's alone: its counters are exactly what was sent."""
    instance = api.post("/api/instances", json={"definition": door}).json()
    events = f"/api/instances/{instance['id']}/events"
    assert api.post(events, json={"event": "open"}).status_code == 200
    assert api.post(events, json={"event": "unlock"}).status_code == 409
    samples = parsed(api.get("/metrics"))
    assert value(samples, "turnout_instances_started_total", definition=door) == 1
    assert value(samples, "turnout_events_accepted_total", definition=door) == 1
    assert value(samples, "turnout_events_rejected_total", definition=door) == 1
    assert value(samples, "turnout_instances_unfinished", definition=door, status="running") == 1


def test_a_metrics_port_that_is_taken_is_a_clear_error(tmp_path: Path, sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_turnout(
            "worker", "--metrics-port", str(port), database=sqlite_url, cwd=tmp_path
        )
    assert result.returncode != 0
    assert f"cannot serve the metrics on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
