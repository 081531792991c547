"""PostgreSQL restarted under a running worker and a sender: calls in flight fail with a
clear, retryable DatabaseUnavailable; the worker reconnects by itself; nothing is lost and,
thanks to idempotency keys on the retried sends, nothing is applied twice."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from databases import in_ci
from stopping import stop_when_file_exists

from engine import DatabaseUnavailable, Engine

DEFINITIONS = Path(__file__).parent / "definitions"
SPAWN = multiprocessing.get_context("spawn")


def restart_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    command = shutil.which("pg_ctlcluster")
    if command is None or not versions:
        if in_ci():
            pytest.fail("pg_ctlcluster is needed to restart PostgreSQL in CI")
        pytest.skip("pg_ctlcluster is not available here")
    subprocess.run(
        [command, "--skip-systemctl-redirect", versions[-1], "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def pipeline_worker(url: str, stop_file: str) -> None:
    """Child process: run the pipeline tasks until `stop_file` exists."""
    engine = Engine(url, lease=2)
    engine.task("pipeline.fetch")(lambda data: {"fetched": data["n"]})
    engine.task("pipeline.store")(lambda data: {"stored": data["n"]})
    try:
        engine.work(concurrency=2, stop=stop_when_file_exists(stop_file), poll_interval=0.05)
    finally:
        engine.close()


def send_with_retries(
    engine: Engine,
    instance_id: str,
    count: int,
    failures: list[str],
    unexpected: list[BaseException],
) -> None:
    """Send `count` increments, each under its own idempotency key, retrying on failure;
    any other error stops the sender and is kept for the test to report."""
    try:
        for number in range(count):
            while True:
                try:
                    engine.send(instance_id, "increment", idempotency_key=f"k{number}")
                    break
                except DatabaseUnavailable as exc:
                    failures.append(str(exc))
                    time.sleep(0.1)
    except BaseException as exc:
        unexpected.append(exc)


@pytest.mark.postgres
def test_postgres_restart_mid_run_loses_and_doubles_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = Engine(postgres_url)
    try:
        engine.deploy(DEFINITIONS / "counter.yaml")
        engine.deploy(DEFINITIONS / "pipeline.yaml")
        counter = engine.start("counter", {"count": 0}).id
        first = engine.start_many("pipeline", ({"n": n} for n in range(40)))
        stop_file = tmp_path / "stop"
        worker = SPAWN.Process(target=pipeline_worker, args=(postgres_url, str(stop_file)))
        worker.start()
        failures: list[str] = []
        unexpected: list[BaseException] = []
        sender = threading.Thread(
            target=send_with_retries, args=(engine, counter, 3000, failures, unexpected)
        )
        sender.start()
        # Both at work before the database goes away: some pipelines done, some events in.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            engine.instances(definition="pipeline", status="succeeded", limit=1)
            and engine.get(counter).revision > 5
        ):
            time.sleep(0.05)
        restart_postgres()
        sender.join(120)
        later = engine.start_many("pipeline", ({"n": n} for n in range(40, 60)))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if not engine.instances(definition="pipeline", status="running", limit=1):
                break
            time.sleep(0.2)
        stop_file.touch()
        worker.join(60)

        assert not sender.is_alive()
        assert unexpected == [], "the sender met an error other than DatabaseUnavailable"
        assert worker.exitcode == 0
        final = engine.get(counter)
        assert final.context == {"count": 3000}
        assert final.revision == 3001
        for instance_id in [*first, *later]:
            done = engine.get(instance_id)
            assert done.state == "finished", done
            tasks = [e for e in engine.history(instance_id) if e.kind == "task"]
            assert [(e.from_state, e.to_state) for e in tasks] == [
                ("fetch", "store"),
                ("store", "finished"),
            ]
        # the sender was cut off, saw the documented retryable error, and its retries (under
        # the same idempotency keys) were applied once each
        assert failures
        for message in failures:
            assert message.startswith("the database postgresql+psycopg://")
    finally:
        engine.close()
