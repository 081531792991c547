"""What an engine has done in this process, counted in plain ints for the metrics
(`Engine.metrics_registry`; prometheus.py builds the families when scraped).

Counting sits on the event path, so it is cheap: a transaction appends a tuple (a tally)
for each thing worth counting that it does, and once it has committed its tallies join a
queue (a deque's `extend`, safe between threads without a lock); they are added up under a
lock when a scrape reads them or the queue grows long. No metrics library is called until a
scrape. Every count is this
process's own; the queues (ready tasks, due timers) are read from the database at scrape
time instead.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import deque

from statemachines.steps import FINISHED

# The upper bounds of the histograms' buckets, in seconds. A handler may run for an hour;
# a timer fired minutes late is an outage worth seeing.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# The first item of a tally (`Transaction.tallies`, `Counts.tally`): what it counts.
STARTED = "started"  # (STARTED, definition): an instance started
ENDED = "ended"  # (ENDED, definition, status): an instance reached a final status
ACCEPTED = "accepted"  # (ACCEPTED, definition): an event applied by `send`
REJECTED = "rejected"  # (REJECTED, definition): an event `send` refused
ATTEMPT = "attempt"  # (ATTEMPT, task name, outcome): an attempt's answer applied
LEASE_EXPIRED = "lease_expired"  # (LEASE_EXPIRED, task name): a lapsed lease released
POISONED = "poisoned"  # (POISONED, action): work an instance could not take
# Committed tallies waiting to be added up: at most this many (then the committer adds them).
PENDING_LIMIT = 4096


class Histogram:
    """Observations counted in fixed buckets (not cumulative: the scrape adds them up)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose bound is at least `value`."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


def tally_status(
    tallies: list[tuple[str, ...]], definition: str, status: str, started: bool
) -> None:
    """The tallies of a step of an instance of `definition` that started it or changed its
    status to `status`."""
    if started:
        tallies.append((STARTED, definition))
    if status in FINISHED:
        tallies.append((ENDED, definition, status))


class Counts:
    """The counters and histograms of one engine in this process.

    `committed(tallies)` is called with the tallies of every transaction that commits;
    `tally` counts what no transaction records (a refusal). Workers add task durations,
    the timer sweep timer lags.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: deque[tuple[str, ...]] = deque()  # committed, not yet added up
        self.tallies: dict[tuple[str, ...], int] = {}
        self.durations: dict[str, Histogram] = {}  # task name -> its handler's run times
        self.lags = Histogram(LAG_BUCKETS)  # how late timers fired

    def committed(self, tallies: list[tuple[str, ...]]) -> None:
        """Count the tallies of a transaction that has committed."""
        pending = self.pending
        pending.extend(tallies)
        if len(pending) > PENDING_LIMIT:
            self.add_up()

    def tally(self, tally: tuple[str, ...]) -> None:
        """Count one `tally` that no committed transaction records (a refusal)."""
        self.pending.append(tally)

    def add_up(self) -> None:
        """Add the pending tallies to the counts."""
        with self.lock:
            counted, pending = self.tallies, self.pending
            for _ in range(len(pending)):  # others may append meanwhile: they wait their turn
                tally = pending.popleft()
                counted[tally] = counted.get(tally, 0) + 1

    def ran(self, task: str, seconds: float) -> None:
        """A handler of `task` ran for `seconds` in this process."""
        with self.lock:
            histogram = self.durations.get(task)
            if histogram is None:
                histogram = self.durations[task] = Histogram(DURATION_BUCKETS)
            histogram.observe(seconds)

    def fired(self, lag: float) -> None:
        """A timer fired `lag` seconds after it was due."""
        with self.lock:
            self.lags.observe(max(lag, 0.0))

    def snapshot(self) -> Counts:
        """A copy, consistent as of one moment, for a scrape to read at leisure."""
        copy = Counts()
        self.add_up()
        with self.lock:
            copy.tallies = dict(self.tallies)
            for name, histogram in self.durations.items():
                copy.durations[name] = _copied(histogram)
            copy.lags = _copied(self.lags)
        return copy


def _copied(histogram: Histogram) -> Histogram:
    copy = Histogram(histogram.bounds)
    copy.counts = list(histogram.counts)
    copy.total = histogram.total
    return copy
