"""Soak: starters, senders and workers in separate processes on one database, then every
instance is replayed through `statemachines.simulate` and must agree with the engine.

The short run is part of `make test`; `make soak` runs the long one (TURNOUT_SOAK_SECONDS,
default 180) with workers killed by SIGKILL along the way.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import statemachines

sys.path.insert(0, os.path.dirname(__file__))
import processes  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")


@dataclass
class SoakReport:
    instances: int = 0
    events: int = 0
    tasks: int = 0
    workers_killed: int = 0
    discrepancies: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.instances} instances, {self.events} events accepted, {self.tasks} task "
            f"results, {self.workers_killed} workers killed, "
            f"{len(self.discrepancies)} discrepancies"
        )


def run_soak(url: str, seconds: float, kill_workers: bool, workdir: Path) -> SoakReport:
    from engine import Engine

    engine = Engine(url)
    engine.deploy(processes.DEFINITION)
    stop_senders = SPAWN.Event()  # senders and starters are never killed
    stop_workers = workdir / "stop-workers"
    starters = [SPAWN.Process(target=processes.starter, args=(url, 1 + 100_000 * s, 10_000,
                                                                stop_senders))
                for s in range(2)]  # fmt: skip
    senders = [SPAWN.Process(target=processes.sender, args=(url, seed, stop_senders))
               for seed in range(2)]  # fmt: skip
    workers = [SPAWN.Process(target=processes.worker, args=(url, str(stop_workers)))
               for _ in range(2)]  # fmt: skip
    report = SoakReport()
    for process in [*starters, *senders, *workers]:
        process.start()
    rng = random.Random(7)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if kill_workers and rng.random() < 0.3:
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()  # SIGKILL: no chance to answer or release what it holds
            victim.join(10)
            report.workers_killed += 1
            fresh = SPAWN.Process(target=processes.worker, args=(url, str(stop_workers)))
            fresh.start()
            workers.append(fresh)
    stop_senders.set()
    for process in [*starters, *senders]:
        process.join(60)
    # Let the workers finish what was started: no instance left in a task state.
    drain = time.monotonic() + 120
    while time.monotonic() < drain:
        busy = sum(len(engine.instances(definition="soak_order", state=s, limit=1))
                   for s in ("check", "process"))  # fmt: skip
        if not busy:
            break
        time.sleep(0.2)
    stop_workers.touch()
    for process in workers:
        process.join(60)
    assert all(p.exitcode == 0 for p in [*starters, *senders]), "a starter or sender crashed"
    compare_with_simulation(engine, report)
    engine.close()
    return report


def compare_with_simulation(engine: Any, report: SoakReport) -> None:
    definition = statemachines.load(processes.DEFINITION)
    offset = 0
    while True:
        page = engine.instances(definition="soak_order", limit=500, offset=offset)
        if not page:
            break
        offset += len(page)
        for instance in page:
            report.instances += 1
            history = engine.history(instance.id)
            start = history[0]
            events = [(e.event, e.data) for e in history if e.kind == "event"]
            report.events += len(events)
            report.tasks += sum(1 for e in history if e.kind == "task")
            problems = []
            if [e.seq for e in history] != list(range(1, len(history) + 1)):
                problems.append("history seq has gaps")
            if instance.state in ("check", "process"):
                problems.append(f"left in task state {instance.state}")
            try:
                run = statemachines.simulate(definition, events, data=start.data,
                                             results=processes.simulated_results())  # fmt: skip
            except statemachines.EventRejected as exc:
                problems.append(f"replay rejected an event the engine accepted: {exc}")
            else:
                path = [(e.event, e.from_state, e.to_state) for e in history
                        if e.kind in ("start", "event", "task", "timer", "always")
                        and e.to_state]  # fmt: skip
                if (run.state, run.status) != (instance.state, instance.status):
                    problems.append(f"engine {instance.state}/{instance.status}, replay "
                                    f"{run.state}/{run.status}")  # fmt: skip
                if run.context != instance.context:
                    problems.append(f"context {instance.context} != replay {run.context}")
                if [tuple(p) for p in run.path] != path:
                    problems.append(f"path {path} != replay {run.path}")
            if not 1 + len(events) <= instance.revision <= len(history):
                problems.append(f"revision {instance.revision} out of bounds")
            report.discrepancies.extend(f"{instance.key}: {p}" for p in problems)


def test_short_soak_every_instance_agrees_with_its_replay(store_url: str, tmp_path: Path) -> None:
    report = run_soak(store_url, seconds=6, kill_workers=False, workdir=tmp_path)
    print(report)
    assert report.instances > 20 and report.events > 20
    assert report.discrepancies == []


@pytest.mark.soak
def test_long_soak_with_killed_workers_agrees_with_replay(store_url: str, tmp_path: Path) -> None:
    seconds = float(os.environ.get("TURNOUT_SOAK_SECONDS", "180"))
    report = run_soak(store_url, seconds=seconds, kill_workers=True, workdir=tmp_path)
    print(report)
    assert report.workers_killed > 0
    assert report.discrepancies == []
