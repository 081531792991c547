"""`make bench`: every figure beside the baseline measured in the same run.

The machine is shared and noisy, so each figure is the median of several repetitions, and
what matters is the ratio to its baseline. Results also go to benchmarks/results/latest.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console
from rich.table import Table

from engine import Engine

from .baseline import Baseline, RawBaseline
from .event_batches import send_many_on_postgres, send_many_on_sqlite
from .figures import REPEATS, Figure, median_rate, shown
from .flow import flow_figures
from .operations import context_search_figures, purge_figures
from .startup import startup_figures

HERE = Path(__file__).parent


def engine_and_baseline(
    engine_url: str,
    baseline_url: str,
    raw_url: str,
    label: str,
    count: int,
    instances: int,
    raw_target: str = ">= 0.5x",
) -> list[Figure]:
    """Engine.send against the hand-written ORM event and against the same SQL on the bare
    driver, `count` events over `instances` each (`raw_target`: the ratio aimed at)."""
    engine = Engine(engine_url)
    engine.deploy(HERE / "definitions" / "toggle.yaml")
    engine.deploy(HERE / "definitions" / "nested_toggle.yaml")
    ids = [engine.start("bench_toggle").id for _ in range(instances)]
    nested = [engine.start("bench_nested_toggle").id for _ in range(instances)]
    baseline = Baseline(baseline_url, instances)
    raw = RawBaseline(raw_url, instances)

    def events(send: Callable[[int], object]) -> Callable[[], int]:
        def run() -> int:
            for number in range(count):
                send(number % instances)
            return count

        return run

    def starts() -> int:
        for number in range(count):
            engine.start("bench_toggle", {"n": number})
        return count

    try:
        engine_rate = median_rate(events(lambda index: engine.send(ids[index], "flip")))
        nested_rate = median_rate(events(lambda index: engine.send(nested[index], "flip")))
        start_rate = median_rate(starts)
        baseline_rate = median_rate(events(baseline.send))
        raw_rate = median_rate(events(raw.send))
    finally:
        engine.close()
        baseline.close()
        raw.close()
    name = f"Engine.send, durable events ({label})"
    return [
        Figure(
            name=name,
            unit="events/s",
            value=engine_rate,
            baseline_name="hand-written SQLModel ORM event",
            baseline=baseline_rate,
            target=">= 3x",
        ),
        Figure(
            name=name,
            unit="events/s",
            value=engine_rate,
            baseline_name="the same SQL on the bare driver (ceiling)",
            baseline=raw_rate,
            target=raw_target,
        ),
        Figure(
            name=f"Engine.send, a chart nested four deep ({label})",
            unit="events/s",
            value=nested_rate,
            baseline_name="Engine.send on a flat definition",
            baseline=engine_rate,
            target="reported",
            baseline_unit="events/s",
        ),
        Figure(
            name=f"Engine.start, one instance per call ({label})",
            unit="starts/s",
            value=start_rate,
            baseline_name="Engine.send on the same database",
            baseline=engine_rate,
            target=">= 1x",
            baseline_unit="events/s",
        ),
    ]


def events_on_sqlite(workdir: Path, count: int = 2000, instances: int = 100) -> list[Figure]:
    return engine_and_baseline(
        f"sqlite:///{workdir}/events.db",
        f"sqlite:///{workdir}/baseline.db",
        f"sqlite:///{workdir}/raw.db",
        "SQLite",
        count,
        instances,
    )


def tasks_on_sqlite(workdir: Path, instances: int = 200) -> Figure:
    """Tasks run in process by run_until_idle: instances started, then every task run.

    Each task costs two transactions (claim, answer) against one for an event, so the
    figure beside it is the rate of plain events on the same database.
    """
    engine = Engine(f"sqlite:///{workdir}/tasks.db")
    engine.deploy(HERE / "definitions" / "three_tasks.yaml")
    engine.deploy(HERE / "definitions" / "toggle.yaml")
    engine.task("bench.step")(lambda value: None)
    ids = [engine.start("bench_toggle").id for _ in range(100)]

    def run_tasks() -> int:
        engine.start_many("bench_three_tasks", ({} for _ in range(instances)))
        engine.run_until_idle()
        return instances * 3

    def send_events() -> int:
        for number in range(instances * 3):
            engine.send(ids[number % len(ids)], "flip")
        return instances * 3

    task_rate = median_rate(run_tasks)
    event_rate = median_rate(send_events)
    engine.close()
    return Figure(
        name="run_until_idle, 3-task sequence (SQLite)",
        unit="tasks/s",
        value=task_rate,
        baseline_name="Engine.send on the same database",
        baseline=event_rate,
        target="reported",
        baseline_unit="events/s",
    )


def events_on_postgres(url: str, count: int = 600, instances: int = 100) -> list[Figure]:
    from .contention import drop_schema, fresh_schema

    engine_url, schema = fresh_schema(url)
    try:
        # The ceiling reads the row locked, then updates, inserts and commits, a statement
        # (and a round trip) at a time; Engine.send takes one round trip ("one_trip").
        return engine_and_baseline(
            engine_url, engine_url, engine_url, "PostgreSQL", count, instances, ">= 0.9x"
        )
    finally:
        drop_schema(url, schema)


def contention_on_postgres(url: str) -> list[Figure]:
    from .contention import run

    rates: dict[str, list[float]] = {
        "row": [],
        "optimistic": [],
        "single": [],
        "row read": [],
        "single read": [],
    }
    discrepancies = 0
    for _ in range(3):  # the default send path ("one_trip"), then reading first, alternating
        for locking in ("row", "optimistic"):
            rate, wrong = run(url, 4, 250, 10, locking)
            rates[locking].append(rate)
            discrepancies += wrong
        rate, wrong = run(url, 4, 250, 10, "row", "read")
        rates["row read"].append(rate)
        discrepancies += wrong
        for name, path in (("single", "one_trip"), ("single read", "read")):
            rate, wrong = run(url, 1, 500, 10, "row", path)
            rates[name].append(rate)
            discrepancies += wrong
    row, optimistic, single, row_read, single_read = (
        statistics.median(rates[name]) for name in rates
    )
    spread = statistics.median(run(url, 4, 750, 1000, "row")[0] for _ in range(3))
    alone = statistics.median(run(url, 1, 1500, 1000, "row")[0] for _ in range(3))
    return [
        Figure(
            name="4 senders vs 1, 1,000 instances (PostgreSQL)",
            unit="events/s",
            value=spread,
            baseline_name="1 sender",
            baseline=alone,
            target=">= 2.5x",
        ),
        Figure(
            name="4 senders, 10 hot instances, row locks (PostgreSQL)",
            unit="events/s",
            value=row,
            baseline_name="the same with optimistic revision checks",
            baseline=optimistic,
            target=f"faster one chosen; {discrepancies} events lost or doubled",
        ),
        Figure(
            name="1 sender, 10 instances, send in one round trip (PostgreSQL)",
            unit="events/s",
            value=single,
            baseline_name='the row read first (send_path="read")',
            baseline=single_read,
            target=">= 1x (the default)",
        ),
        Figure(
            name="4 senders, 10 hot instances, send in one round trip (PostgreSQL)",
            unit="events/s",
            value=row,
            baseline_name='the row read first (send_path="read")',
            baseline=row_read,
            target=">= 0.95x",
        ),
        Figure(
            name="4 senders vs 1 sender, row locks (PostgreSQL)",
            unit="events/s",
            value=row,
            baseline_name="1 sender",
            baseline=single,
            target="reported",
        ),
    ]


def wake_up_on_postgres(url: str) -> list[Figure]:
    """From `send` (and from its commit) of an event that makes a task ready to the handler
    starting in an idle worker in another process: LISTEN/NOTIFY against polling only."""
    from .wakeup import POLL_INTERVAL, wake_figures

    found = wake_figures(url)
    figures = []
    for worker in ("Engine.work", "AsyncEngine.work"):
        (notified, notified_commit), (polled, polled_commit) = (
            found[worker, True],
            found[worker, False],
        )
        polling = f"polling only (listen=False, poll {POLL_INTERVAL:g} s)"
        figures.append(
            Figure(
                f"send -> handler start, idle {worker}, NOTIFY (PostgreSQL)",
                "ms",
                notified,
                polling,
                polled,
                "< 20 ms",
            )
        )
        figures.append(
            Figure(
                f"commit -> handler start, idle {worker}, NOTIFY (PostgreSQL)",
                "ms",
                notified_commit,
                polling,
                polled_commit,
                "reported",
            )
        )
    return figures


def scale_figures(workdir: Path, postgres: str | None, send_rate: float) -> list[Figure]:
    from . import scale

    figures = []
    loaded, bare = scale.load_large_definition()
    figures.append(
        Figure(
            name="load + validate + compile, 1,000 states",
            unit="s",
            value=loaded,
            baseline_name="transitions alone building the same machine",
            baseline=bare,
            target="< 1 s",
        )
    )
    drawn, overlay = scale.render_large_definition()
    figures.append(
        Figure(
            name="SVG of a 200-state definition",
            unit="s",
            value=drawn,
            baseline_name="the target",
            baseline=2.0,
            target="< 1x (under 2 s)",
        )
    )
    figures.append(
        Figure(
            name="SVG of a 300-state chart nested four deep (no dot)",
            unit="s",
            value=scale.render_nested_definition(),
            baseline_name="the target",
            baseline=2.0,
            target="< 1x (under 2 s)",
        )
    )
    figures.append(
        Figure(
            name="instance overlay on a cached 200-state definition",
            unit="ms",
            value=overlay * 1000,
            baseline_name="the target",
            baseline=50.0,
            target="< 1x (under 50 ms)",
        )
    )
    listed = scale.list_among_a_million(workdir)
    figures.append(
        Figure(
            name="list 50 in one state among 1,000,000 (SQLite)",
            unit="ms",
            value=listed * 1000,
            baseline_name="the target",
            baseline=20.0,
            target="< 1x (under 20 ms)",
        )
    )
    bulk = scale.bulk_start(workdir)
    figures.append(
        Figure(
            name="start_many of 100,000 instances (SQLite)",
            unit="s",
            value=bulk,
            baseline_name="the target",
            baseline=60.0,
            target="< 1x (under a minute)",
        )
    )
    figures.append(
        Figure(
            name="start_many, instances/s (SQLite, 500 per transaction)",
            unit="starts/s",
            value=100_000 / bulk,
            baseline_name="Engine.send on SQLite",
            baseline=send_rate,
            target=">= 1x",
            baseline_unit="events/s",
        )
    )
    small, large = scale.worker_memory(workdir, 1_000), scale.worker_memory(workdir, 100_000)
    figures.append(
        Figure(
            name="worker peak memory, 100,000 instances in the database",
            unit="MiB",
            value=large,
            baseline_name="the same with 1,000",
            baseline=small,
            target="<= 1.2x",
        )
    )
    # Three runs each, a fresh database every time; the median is the figure.
    figures.extend(
        worker_figures("SQLite", lambda: f"sqlite:///{workdir}/w{uuid4().hex}.db", workdir)
    )
    if postgres:
        figures.extend(worker_figures("PostgreSQL", None, workdir, postgres))
    return figures


# The worker options of the batched figures (group commit, batching.py): 32 tasks in hand per
# process, their results committed up to 64 at a time; against them, today's worker with one
# commit per step (4 in hand, linger 0), measured in the same run.
BATCHED = {"concurrency": 32}
ONE_COMMIT_PER_STEP = {"concurrency": 4, "linger": 0}
WORKER_TARGETS = {"SQLite": (2500.0, "reported"), "PostgreSQL": (1500.0, ">= 5x")}


def worker_figures(
    database: str, fresh_url: Callable[[], str] | None, workdir: Path, postgres: str = ""
) -> list[Figure]:
    """Instances finished per second by two work() processes on `database`: the three-task
    workflow with group commit against the target and against one commit per step in the
    same run, and parents calling a child (the same three tasks) against the three-task
    figure. Each run gets a fresh database (a fresh schema on PostgreSQL); the median of
    three, the batched and the unbatched runs alternating, is the figure."""
    from . import scale

    def rate(definition: str, options: dict[str, Any]) -> float:
        if fresh_url is not None:
            return scale.tasks_by_worker_processes(
                fresh_url(), workdir, definition=definition, **options
            )
        from .contention import drop_schema, fresh_schema

        url, schema = fresh_schema(postgres)
        try:
            return scale.tasks_by_worker_processes(url, workdir, definition=definition, **options)
        finally:
            drop_schema(postgres, schema)

    runs = [
        (rate("bench_three_tasks", BATCHED), rate("bench_three_tasks", ONE_COMMIT_PER_STEP))
        for _ in range(3)
    ]
    three = statistics.median(batched for batched, _ in runs)
    unbatched = statistics.median(single for _, single in runs)
    parents = statistics.median(rate("bench_parent", BATCHED) for _ in range(3))
    target, ratio = WORKER_TARGETS[database]
    name = f"3-task instances by 2 work() processes, group commit ({database})"
    return [
        Figure(name, "instances/s", three, "the target", target, ">= 1x"),
        Figure(
            name,
            "instances/s",
            three,
            "one commit per step (4 in hand, linger 0), same run",
            unbatched,
            ratio,
        ),
        Figure(
            name=f"parent-and-child instances by 2 work() processes ({database})",
            unit="parents/s",
            value=parents,
            baseline_name="3-task instances, same database and run",
            baseline=three,
            target="reported (a child per parent)",
            baseline_unit="instances/s",
        ),
    ]


def migration_figures(workdir: Path, count: int = 10_000) -> list[Figure]:
    """plan_migration over `count` running instances against its target, against simulate of
    the same runs, and against a replay of the same histories in memory (the floor)."""
    from . import migration

    planned, simulated, replayed, counts = migration.plan_and_baselines(workdir, count)
    classes = ", ".join(f"{number:,} {kind}" for kind, number in counts.items() if number)
    name = f"plan_migration of {count:,} running instances (SQLite; {classes})"
    return [
        Figure(name, "s", planned, "the target", 10.0, "< 1x (under 10 s)"),
        Figure(
            name,
            "s",
            planned,
            f"simulate of the same {count:,} runs (no database)",
            simulated,
            "reported",
        ),
        Figure(
            name,
            "s",
            planned,
            "replay of the same histories in memory (the floor)",
            replayed,
            "reported",
        ),
    ]


def nats_rabbitmq_relay_figures(
    workdir: Path, postgres: str | None
) -> tuple[list[Figure], list[str]]:
    """Changes relayed per second to NATS JetStream and to RabbitMQ, each beside its bare
    client publishing the same messages with the same acknowledgements awaited; the brokers
    not running are named instead."""
    from . import relay_nats_rabbitmq

    measured, missing = relay_nats_rabbitmq.measure(workdir, REPEATS, postgres)
    figures = [
        Figure(
            name=f"Relay to {broker.broker}, batches of 500 ({broker.database})",
            unit="changes/s",
            value=broker.relay,
            baseline_name=f"bare {broker.client}: the same messages, acks awaited per batch",
            baseline=broker.bare,
            target="reported",
            baseline_unit="messages/s",
        )
        for broker in measured
    ]
    return figures, missing


def redis_relay_figures(workdir: Path, postgres: str | None) -> list[Figure]:
    """Changes relayed per second to Redis Streams, beside redis-py alone sending the same
    messages in the same pipeline sizes; none when no Redis answers on 127.0.0.1:6379."""
    from . import relay_redis

    if not relay_redis.redis_answers():
        return []
    measured = [("SQLite", relay_redis.relay_and_bare(f"sqlite:///{workdir}/relay.db"))]
    if postgres:
        measured.append(("PostgreSQL", relay_redis.relay_and_bare_on_postgres(postgres)))
    figures = []
    for label, (relayed, bare) in measured:
        figures.append(
            Figure(
                name=f"Relay to Redis Streams, 500 per pipeline ({label})",
                unit="changes/s",
                value=relayed,
                baseline_name="redis-py XADDing the same messages, same pipelines",
                baseline=bare,
                target="reported",
                baseline_unit="messages/s",
            )
        )
    return figures


def peer_figures_if_installed(postgres: str, workdir: Path, console: Console) -> list[Figure]:
    """turnout beside DBOS Transact on the same server, when the `bench` extra is installed."""
    from . import peer

    if not peer.peer_installed():
        console.print(
            f"{peer.PEER} figures skipped: `dbos` is not installed (pip install '.[bench]')",
            style="yellow",
        )
        return []
    console.print(f"running peer_figures ({peer.PEER}) ...", style="dim")
    return peer.peer_figures(postgres, workdir)


def main() -> int:
    console = Console(width=None if sys.stdout.isatty() else 150)
    postgres = os.environ.get("TURNOUT_BENCH_POSTGRES_URL") or os.environ.get(
        "TURNOUT_TEST_POSTGRES_URL"
    )
    with tempfile.TemporaryDirectory(prefix="turnout-bench-") as tmp:
        workdir = Path(tmp)
        figures = []
        console.print("running startup_figures ...", style="dim")
        figures.extend(startup_figures())
        console.print("running events_on_sqlite ...", style="dim")
        figures.extend(events_on_sqlite(workdir))
        console.print("running send_many_on_sqlite ...", style="dim")
        figures.append(send_many_on_sqlite(workdir))
        console.print("running tasks_on_sqlite ...", style="dim")
        figures.append(tasks_on_sqlite(workdir))
        console.print("running migration_figures ...", style="dim")
        figures.extend(migration_figures(workdir))
        console.print("running scale_figures ...", style="dim")
        sqlite_send = "Engine.send, durable events (SQLite)"
        send_rate = next(f.value for f in figures if f.name == sqlite_send)
        figures.extend(scale_figures(workdir, postgres, send_rate))
        console.print("running purge_figures ...", style="dim")
        figures.extend(purge_figures(workdir, postgres))
        console.print("running context_search_figures ...", style="dim")
        figures.extend(context_search_figures(workdir, postgres))
        console.print("running flow_figures ...", style="dim")
        figures.extend(flow_figures(workdir, postgres))
        if postgres:
            console.print("running events_on_postgres ...", style="dim")
            figures.extend(events_on_postgres(postgres))
            console.print("running send_many_on_postgres ...", style="dim")
            figures.append(send_many_on_postgres(postgres))
            console.print("running contention_on_postgres ...", style="dim")
            figures.extend(contention_on_postgres(postgres))
            console.print("running wake_up_on_postgres ...", style="dim")
            figures.extend(wake_up_on_postgres(postgres))
            figures.extend(peer_figures_if_installed(postgres, workdir, console))
        else:
            console.print(
                "PostgreSQL figures skipped: set TURNOUT_BENCH_POSTGRES_URL", style="yellow"
            )
        console.print("running redis_relay_figures ...", style="dim")
        relayed = redis_relay_figures(workdir, postgres)
        if not relayed:
            console.print("Redis figures skipped: no Redis on 127.0.0.1:6379", style="yellow")
        figures.extend(relayed)
        console.print("running nats_rabbitmq_relay_figures ...", style="dim")
        relayed, missing = nats_rabbitmq_relay_figures(workdir, postgres)
        figures.extend(relayed)
        for broker in missing:
            console.print(f"relay figures skipped: {broker} is not running", style="yellow")
    table = Table(title=f"turnout benchmarks (median of {REPEATS})")
    for column in ("figure", "value", "baseline", "baseline value", "ratio", "target"):
        table.add_column(column)
    for figure in figures:
        table.add_row(
            figure.name,
            f"{shown(figure.value)} {figure.unit}",
            figure.baseline_name,
            f"{shown(figure.baseline)} {figure.baseline_unit or figure.unit}",
            f"{figure.ratio:.3g}x",
            figure.target,
        )
    console.print(table)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.json").write_text(
        json.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "repeats": REPEATS,
                "figures": [asdict(figure) | {"ratio": figure.ratio} for figure in figures],
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"written {results / 'latest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
