"""The figure of migration: `Engine.plan_migration` over 10,000 running instances on SQLite,
beside `simulate` of the same 10,000 runs and beside a replay of their histories in memory,
measured in the same run.

Planning reads every instance's history in one statement and replays it through the new
version; `simulate` runs the same events through the old version without a database (it
compiles the definition on every call, as a user's call does); the in-memory replay is the
floor: the same histories through a machine compiled once, nothing read.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import statemachines
from engine import Engine
from statemachines.replay import replay

HERE = Path(__file__).parent
V1, V2 = HERE / "definitions" / "migrate_v1.yaml", HERE / "definitions" / "migrate_v2.yaml"
REPEATS = 3


def events(number: int) -> list[str]:
    """The events of instance `number`: a few items, a checkout, then for one in four a
    declined payment and another item (version 2 cancels instead: divergent), for one in four
    a payment (packing: its task waits), for the others nothing (paying)."""
    sent = ["add"] * (1 + number % 3) + ["checkout"]
    if number % 4 == 0:
        sent += ["declined", "add"]
    elif number % 4 == 1:
        sent += ["paid"]
    return sent


def populated(url: str, count: int) -> Engine:
    """An engine on `url` with `count` running instances of version 1 and version 2 deployed."""
    engine = Engine(url)
    engine.deploy(V1)
    ids = engine.start_many("bench_migrate", ({} for _ in range(count)))
    for number, instance in enumerate(ids):
        for event in events(number):
            engine.send(instance, event)
    engine.deploy(V2)
    return engine


def median_seconds(run: Any, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def plan_and_baselines(workdir: Path, count: int = 10_000) -> tuple[float, float, float, Any]:
    """Median seconds of: planning `count` instances, simulating their runs, replaying their
    histories in memory; and the plan's counts per class."""
    engine = populated(f"sqlite:///{workdir}/migrate.db", count)
    try:
        counts = engine.plan_migration("bench_migrate", 1).counts()
        planned = median_seconds(lambda: engine.plan_migration("bench_migrate", 1))
        histories = [engine.history(instance.id) for instance in _all(engine)]
    finally:
        engine.close()
    old = statemachines.load(V1)
    simulated = median_seconds(
        lambda: [statemachines.simulate(old, events(number)) for number in range(count)]
    )
    machine = statemachines.compile_definition(old)
    replayed = median_seconds(lambda: [replay(machine, history) for history in histories])
    return planned, simulated, replayed, counts


def _all(engine: Engine) -> list[Any]:
    found: list[Any] = []
    while page := engine.instances("bench_migrate", limit=1000, offset=len(found)):
        found.extend(page)
    return found
