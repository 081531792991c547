"""`Engine.metrics_registry`: the engine's metrics for Prometheus (a part of `Engine`).

The engine counts what it does in plain ints (counts.py); the collector (prometheus.py)
turns the counts into metric families, and reads the queues from the database, only when
a registry holding it is scraped: `turnout serve` at `/metrics`, `turnout worker
--metrics-port`, or an application's own exposition.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from .counts import Counts
    from .store import Store

_REGISTERING = threading.Lock()


class Metrics:
    """The metrics of an engine (a part of `Engine`)."""

    if TYPE_CHECKING:  # the other parts of `Engine`
        store: Store
        counts: Counts
        clock: Callable[[], datetime]

    def metrics_registry(self, registry: CollectorRegistry | None = None) -> CollectorRegistry:
        """The Prometheus registry holding this engine's metrics.

        Given `registry` (`prometheus_client.REGISTRY`, say, to expose them with an
        application's own), the engine's collector is registered on it the first time and
        it is returned. Without one, the engine's own registry, made on the first call: its
        metrics and this process's (CPU, memory, garbage collection). Counters count what
        this process did; the queue gauges are read from the database when scraped.
        """
        from . import prometheus

        with _REGISTERING:
            # By the registry's id: the registries themselves are kept, so no id is reused.
            kept: dict[int | None, CollectorRegistry] = vars(self).setdefault(
                "_metrics_registries", {}
            )
            key = None if registry is None else id(registry)
            if key not in kept:
                collector = prometheus.EngineCollector(self.counts, self.store, self.clock)
                kept[key] = prometheus.registered(collector, registry)
            return kept[key]
