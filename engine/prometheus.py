"""An engine's metrics in Prometheus's terms: a collector that turns the engine's counts
(counts.py) into metric families when scraped, and reads the queues (ready and claimed
tasks, due timers, unfinished instances) from the database then, one bounded query each.

Imported only when metrics are asked for (`Engine.metrics_registry`): the client library
takes longer to import than the rest of the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from statemachines.errors import DatabaseUnavailable
from statemachines.steps import Status

from .counts import (
    ACCEPTED,
    ATTEMPT,
    ENDED,
    LEASE_EXPIRED,
    POISONED,
    REJECTED,
    STARTED,
    Counts,
    Histogram,
)
from .store import Store
from .tables import TaskState, instances_t, tasks_t, timers_t

# The most rows one gauge query counts: a queue longer than that reads as this many, so a
# scrape costs the database the same however far behind the workers are.
COUNT_LIMIT = 100_000
UNFINISHED = (Status.RUNNING.value, Status.COMPENSATING.value)

# name -> (type, help, label names): every family the collector exposes, in this order.
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "turnout_instances_started_total": (
        "counter",
        "Instances started in this process (children of call states included).",
        ("definition",),
    ),
    "turnout_instances_finished_total": (
        "counter",
        "Instances that reached a final status (succeeded, failed, cancelled) in this process.",
        ("definition", "status"),
    ),
    "turnout_events_accepted_total": (
        "counter",
        "Events sent to instances and applied (a repeat under a seen idempotency key aside).",
        ("definition",),
    ),
    "turnout_events_rejected_total": (
        "counter",
        "Events sent to instances and refused (EventRejected): no transition takes them.",
        ("definition",),
    ),
    "turnout_task_attempts_total": (
        "counter",
        "Task attempts whose answer was applied in this process, by outcome: completed, "
        "failed, timed_out, stale (a late answer, recorded only).",
        ("task", "outcome"),
    ),
    "turnout_task_lease_expiries_total": (
        "counter",
        "Claimed tasks released because their holder's lease lapsed (it died or hung).",
        ("task",),
    ),
    "turnout_task_duration_seconds": (
        "histogram",
        "How long task handlers run by workers in this process took, failures included.",
        ("task",),
    ),
    "turnout_timers_fired_total": (
        "counter",
        "Timers fired in this process (a call state's child ending included).",
        (),
    ),
    "turnout_timer_lag_seconds": (
        "histogram",
        "How long after it was due each timer fired in this process.",
        (),
    ),
    "turnout_poisoned_total": (
        "counter",
        "Work an instance could not take (a task's answer, a timer, an expiry): its "
        "instance failed, or, failing that too, the work set aside.",
        ("action",),
    ),
    "turnout_database_errors_total": (
        "counter",
        "DatabaseUnavailable errors raised in this process (down, unreachable, locked).",
        (),
    ),
    "turnout_database_up": (
        "gauge",
        "1 when this scrape could read the queues from the database, else 0.",
        (),
    ),
    "turnout_tasks_ready": (
        "gauge",
        "Tasks ready to run now, waiting for a worker (all processes).",
        ("task",),
    ),
    "turnout_tasks_delayed": (
        "gauge",
        "Tasks waiting for a later time to run: a retry's wait (all processes).",
        ("task",),
    ),
    "turnout_tasks_claimed": (
        "gauge",
        "Tasks held by a worker under a lease (all processes).",
        ("task",),
    ),
    "turnout_tasks_ready_age_seconds": (
        "gauge",
        "How long the longest-waiting ready task has been ready to run (0: none waits).",
        (),
    ),
    "turnout_timers_due": (
        "gauge",
        "Timers past their due time, not yet fired (all processes).",
        (),
    ),
    "turnout_timers_waiting": (
        "gauge",
        "Timers not yet fired, due or not (all processes).",
        (),
    ),
    "turnout_timers_due_age_seconds": (
        "gauge",
        "How long past its due time the most overdue timer is (0: none is due).",
        (),
    ),
    "turnout_instances_unfinished": (
        "gauge",
        "Instances running or compensating (all processes).",
        ("definition", "status"),
    ),
}


def _family(name: str) -> Metric:
    kind, documentation, labels = FAMILIES[name]
    if kind == "counter":
        return CounterMetricFamily(name, documentation, labels=labels)
    if kind == "histogram":
        return HistogramMetricFamily(name, documentation, labels=labels)
    return GaugeMetricFamily(name, documentation, labels=labels)


class EngineCollector(Collector):
    """The metrics of one engine: its counts in this process and the queues in its
    database, read when scraped."""

    def __init__(self, counts: Counts, store: Store, clock: Callable[[], datetime]) -> None:
        self.counts = counts
        self.store = store
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        """The families without their samples: registering reads no database."""
        for name in FAMILIES:
            yield _family(name)

    def collect(self) -> Iterator[Metric]:
        """Every family, the counts as of now, the queues as the database has them."""
        families: dict[str, Any] = {name: _family(name) for name in FAMILIES}
        _add_counts(families, self.counts.snapshot())
        try:
            _add_queues(families, self.store, self.clock())
            families["turnout_database_up"].add_metric([], 1)
        except DatabaseUnavailable:
            families["turnout_database_up"].add_metric([], 0)
        # Read last: a scrape that could not read the queues has counted its own error.
        families["turnout_database_errors_total"].add_metric([], self.store.unavailable)
        yield from families.values()


def _add_counts(families: dict[str, Any], counts: Counts) -> None:
    by_kind = {
        STARTED: "turnout_instances_started_total",
        ENDED: "turnout_instances_finished_total",
        ACCEPTED: "turnout_events_accepted_total",
        REJECTED: "turnout_events_rejected_total",
        ATTEMPT: "turnout_task_attempts_total",
        LEASE_EXPIRED: "turnout_task_lease_expiries_total",
        POISONED: "turnout_poisoned_total",
    }
    for (kind, *labels), number in sorted(counts.tallies.items()):
        families[by_kind[kind]].add_metric(labels, number)
    for task, histogram in sorted(counts.durations.items()):
        _add_histogram(families["turnout_task_duration_seconds"], [task], histogram)
    _add_histogram(families["turnout_timer_lag_seconds"], [], counts.lags)
    families["turnout_timers_fired_total"].add_metric([], sum(counts.lags.counts))


def _add_histogram(family: HistogramMetricFamily, labels: list[str], data: Histogram) -> None:
    """Prometheus's buckets are cumulative: each counts every observation up to its bound."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*data.bounds, float("inf")), data.counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
    family.add_metric(labels, buckets, data.total)


def _add_queues(families: dict[str, Any], store: Store, now: datetime) -> None:
    """The gauges read from the database: shared by every process that uses it."""
    tasks, timers, instances = tasks_t.c, timers_t.c, instances_t.c
    queued = (
        sa.select(tasks.name, tasks.status, tasks.ready_at <= now)
        .where(tasks.status.in_((TaskState.READY.value, TaskState.CLAIMED.value)))
        .limit(COUNT_LIMIT)
        .subquery()
    )
    task_counts = sa.select(*queued.c, sa.func.count()).group_by(*queued.c)
    oldest_task = sa.select(sa.func.min(tasks.ready_at)).where(
        tasks.status == TaskState.READY.value
    )
    due = sa.select(timers.id).where(timers.due_at <= now).limit(COUNT_LIMIT).subquery()
    waiting = sa.select(timers.id).limit(COUNT_LIMIT).subquery()
    unfinished = (
        sa.select(instances.definition, instances.status)
        .where(instances.status.in_(UNFINISHED))
        .limit(COUNT_LIMIT)
        .subquery()
    )
    instance_counts = sa.select(*unfinished.c, sa.func.count()).group_by(*unfinished.c)
    with store.core() as conn:
        task_rows = conn.execute(task_counts).all()
        oldest_ready = conn.execute(oldest_task).scalar()
        due_count = conn.execute(sa.select(sa.func.count()).select_from(due)).scalar()
        waiting_count = conn.execute(sa.select(sa.func.count()).select_from(waiting)).scalar()
        oldest_due = conn.execute(sa.select(sa.func.min(timers.due_at))).scalar()
        instance_rows = conn.execute(instance_counts).all()
    by_task: dict[str, dict[str, int]] = {"ready": {}, "delayed": {}, "claimed": {}}
    for row in task_rows:
        name, status, is_due, number = row[0], row[1], row[2], int(row[3])
        kind = "claimed" if status == TaskState.CLAIMED.value else "ready" if is_due else "delayed"
        by_task[kind][name] = by_task[kind].get(name, 0) + number
    for kind, numbers in by_task.items():
        for name, number in sorted(numbers.items()):
            families[f"turnout_tasks_{kind}"].add_metric([name], number)
    families["turnout_tasks_ready_age_seconds"].add_metric([], _age(oldest_ready, now))
    families["turnout_timers_due"].add_metric([], int(due_count or 0))
    families["turnout_timers_waiting"].add_metric([], int(waiting_count or 0))
    families["turnout_timers_due_age_seconds"].add_metric([], _age(oldest_due, now))
    for row in sorted(instance_rows):
        families["turnout_instances_unfinished"].add_metric([row[0], row[1]], int(row[2]))


def _age(since: datetime | None, now: datetime) -> float:
    """Seconds from `since` to `now`; 0 for none, or for a time still to come."""
    return 0.0 if since is None else max((now - since).total_seconds(), 0.0)


def registered(collector: EngineCollector, registry: CollectorRegistry | None) -> CollectorRegistry:
    """`registry` with `collector` registered on it; without one, a new registry with the
    collector and this process's own metrics (CPU, memory, open files, garbage collection)."""
    if registry is None:
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

        registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    registry.register(collector)
    return registry
