"""Soak: starters, senders and workers in separate processes on one database, then every
instance is replayed through `statemachines.simulate` and must agree with the engine.

Among the healthy orders run poison instances (`soak_poison.yaml`): a timer that assigns `now`,
a handler that returns values to convert or refuse, raises or hangs, payloads too deep to store.
They must fail or succeed alone, as their replay says, and no worker may exit on their account.
Every tenth order also starts a parent (`soak_parent.yaml`) that calls a child
(`soak_child.yaml`) whose task is retried by error type: each child is replayed on its own, and
each parent with its child simulated from the same answers.

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
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import statemachines
from statemachines.durations import parse_duration

sys.path.insert(0, os.path.dirname(__file__))
import processes  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")


@dataclass
class SoakReport:
    instances: int = 0
    poison: int = 0
    parents: int = 0
    children: int = 0
    events: int = 0
    tasks: int = 0
    workers_killed: int = 0
    discrepancies: list[str] = field(default_factory=list)
    worker_exits: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.instances} instances ({self.poison} poison, {self.parents} parents, "
            f"{self.children} children), {self.events} events accepted, "
            f"{self.tasks} task results, {self.workers_killed} workers killed, "
            f"{len(self.worker_exits)} exited by themselves, "
            f"{len(self.discrepancies)} discrepancies"
        )


def run_soak(url: str, seconds: float, kill_workers: bool, workdir: Path) -> SoakReport:
    from engine import Engine

    engine = Engine(url)
    engine.deploy(processes.DEFINITION)
    engine.deploy(processes.POISON)
    engine.deploy(processes.CHILD)
    engine.deploy(processes.PARENT)
    stop_senders = SPAWN.Event()  # senders and starters are never killed
    stop_workers = workdir / "stop-workers"
    starters = [
        SPAWN.Process(
            target=processes.starter, args=(url, 1 + 100_000 * number, 10_000, stop_senders)
        )
        for number in range(2)
    ]
    senders = [
        SPAWN.Process(target=processes.sender, args=(url, seed, stop_senders)) for seed in range(2)
    ]
    workers = [
        SPAWN.Process(target=processes.worker, args=(url, str(stop_workers))) for _ in range(2)
    ]
    report = SoakReport()
    for process in [*starters, *senders, *workers]:
        process.start()
    rng = random.Random(7)
    # The run is timed from the first instance: on a loaded machine, spawning the processes
    # alone can take longer than a short run.
    started = time.monotonic() + 120
    while not engine.instances(definition="soak_order", limit=1) and time.monotonic() < started:
        time.sleep(0.1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        replace_exited_workers(workers, url, stop_workers, report)
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
    # Let the workers finish what was started: no instance left in a task or timer state.
    drain = time.monotonic() + 120
    while time.monotonic() < drain:
        replace_exited_workers(workers, url, stop_workers, report)
        busy = sum(
            len(engine.instances(definition=name, state=state, limit=1))
            for name, states in BUSY_STATES.items()
            for state in states
        )
        if not busy:
            break
        time.sleep(0.2)
    replace_exited_workers(workers, url, stop_workers, report)
    stop_workers.touch()
    for process in workers:
        process.join(60)
        if process.exitcode != 0:
            report.worker_exits.append(f"worker {process.pid} stopped with {process.exitcode}")
    assert all(p.exitcode == 0 for p in [*starters, *senders]), "a starter or sender crashed"
    compare_with_simulation(engine, report, processes.DEFINITION)
    compare_with_simulation(engine, report, processes.POISON)
    compare_with_simulation(engine, report, processes.CHILD)
    compare_with_simulation(engine, report, processes.PARENT)
    engine.close()
    return report


# The states an instance may not be left in once the workers have drained, by definition.
BUSY_STATES = {
    "soak_order": ("check", "process"),
    "soak_poison": ("wait", "work"),
    "soak_child": ("ship",),
    "soak_parent": ("ship",),
}


def replace_exited_workers(
    workers: list[Any], url: str, stop_file: Path, report: SoakReport
) -> None:
    """A worker that the soak did not kill has exited: note it, and start another."""
    for index, process in enumerate(workers):
        if not process.is_alive():
            report.worker_exits.append(f"worker {process.pid} exited with {process.exitcode}")
            fresh = SPAWN.Process(target=processes.worker, args=(url, str(stop_file)))
            fresh.start()
            workers[index] = fresh


def compare_with_simulation(engine: Any, report: SoakReport, file: Path) -> None:
    """Replay every instance of the definition in `file`: its accepted events and fired timers
    in history order, from its start data, with the same task answers."""
    definition = statemachines.load(file)
    busy = BUSY_STATES[definition.name]
    called = [statemachines.load(processes.CHILD)] if definition.name == "soak_parent" else []
    offset = 0
    while True:
        page = engine.instances(definition=definition.name, limit=500, offset=offset)
        if not page:
            break
        offset += len(page)
        for instance in page:
            report.instances += 1
            report.poison += definition.name == "soak_poison"
            report.parents += definition.name == "soak_parent"
            report.children += definition.name == "soak_child"
            history = engine.history(instance.id)
            start = history[0]
            events = [replayed(entry) for entry in history if entry.kind in ("event", "timer")]
            report.events += sum(1 for entry in history if entry.kind == "event")
            report.tasks += sum(1 for entry in history if entry.kind == "task")
            problems = []
            if [entry.seq for entry in history] != list(range(1, len(history) + 1)):
                problems.append("history seq has gaps")
            if instance.state in busy:
                problems.append(f"left in state {instance.state}")
            if instance.status not in ("running", "succeeded", "failed", "cancelled"):
                problems.append(f"left with status {instance.status}")
            try:
                run = statemachines.simulate(
                    definition,
                    events,
                    data=start.data,
                    results=processes.simulated_results(),
                    now=replay_clock(history),
                    definitions=called,
                )
            except statemachines.EventRejected as exc:
                problems.append(f"replay rejected an event the engine accepted: {exc}")
            else:
                path = [
                    (entry.event, entry.from_state, entry.to_state)
                    for entry in history
                    if entry.kind in ("start", "event", "task", "timer", "always", "call")
                    and entry.to_state
                ]
                if (run.state, run.status) != (instance.state, instance.status):
                    problems.append(
                        f"engine {instance.state}/{instance.status}, replay "
                        f"{run.state}/{run.status}"
                    )
                if definition.name in ("soak_parent", "soak_child"):
                    named, replayed_error = instance.error or {}, run.error or {}
                    if [named.get(k) for k in ("type", "message")] != [
                        replayed_error.get(k) for k in ("type", "message")
                    ]:
                        problems.append(f"error {named} != replay {replayed_error}")
                if run.context != instance.context:
                    problems.append(f"context {instance.context} != replay {run.context}")
                if [tuple(p) for p in run.path] != path:
                    problems.append(f"path {path} != replay {run.path}")
            if definition.name == "soak_child" and instance.parent is None:
                problems.append("a child without its parent")
            if definition.name == "soak_parent" and instance.status != "running":
                children = engine.instances(parent=instance.id, limit=5)
                if [child.status for child in children] not in (["succeeded"], ["failed"]):
                    problems.append(f"children {children} for one call")
            if not 1 + len(events) <= instance.revision <= len(history):
                problems.append(f"revision {instance.revision} out of bounds")
            report.discrepancies.extend(f"{instance.key}: {p}" for p in problems)


def replayed(entry: Any) -> Any:
    """An event or timer entry of the engine's history as `simulate` takes it."""
    return (entry.event, entry.data) if entry.kind == "event" else f"after:{entry.data['after']}"


def replay_clock(history: list[Any]) -> datetime | None:
    """The time a replay starts at so that its first timer fires when the engine's did.

    `simulate` moves its clock by a timer's duration when the timer fires; the engine fired it
    on a worker's round after it was due, at the time its history entry has, and `now` in the
    timer's `assign` is that time.
    """
    for entry in history:
        if entry.kind == "timer":
            return entry.at - parse_duration(entry.data["after"])
    return None


def test_short_soak_every_instance_agrees_with_its_replay(store_url: str, tmp_path: Path) -> None:
    report = run_soak(store_url, seconds=6, kill_workers=False, workdir=tmp_path)
    print(report)
    assert report.instances > 20 and report.events > 20 and report.poison > 0
    assert report.parents > 0 and report.children == report.parents
    assert report.discrepancies == []
    assert report.worker_exits == []


@pytest.mark.soak
def test_long_soak_with_killed_workers_agrees_with_replay(store_url: str, tmp_path: Path) -> None:
    seconds = float(os.environ.get("TURNOUT_SOAK_SECONDS", "180"))
    report = run_soak(store_url, seconds=seconds, kill_workers=True, workdir=tmp_path)
    print(report)
    assert report.workers_killed > 0 and report.poison > 0
    assert report.parents > 0 and report.children == report.parents
    assert report.discrepancies == []
    assert report.worker_exits == []
