"""The calls of `Engine` for flow control (a part of `Engine`): setting and reading the
limits of task names, from code or a TOML settings file, and saying why a ready task of an
instance is held back. The claims themselves are in flow_control.py."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from statemachines.durations import parse_duration
from statemachines.errors import InvalidInput

from . import flow_control, flow_statements
from .flow_control import Limits, TaskLimit
from .store import Store
from .transaction import Transaction

Result = TypeVar("Result")


class FlowCalls:
    """Limits per task name and the priorities of instances (a part of `Engine`)."""

    if TYPE_CHECKING:  # the other parts of `Engine`
        store: Store
        clock: Callable[[], datetime]

    @cached_property
    def _flow_limits(self) -> Limits:
        """The task limits as this process knows them (read again every few seconds)."""
        return Limits(self._read_limits)

    def _read_limits(self) -> dict[str, TaskLimit]:
        with self.store.core() as conn:
            return flow_control.read_limits(conn)

    def limit_task(
        self,
        name: str | TaskLimit,
        *,
        concurrency: int | None = None,
        rate: tuple[int, float | timedelta] | None = None,
        partition: str | None = None,
        partition_limit: int = 1,
    ) -> TaskLimit:
        """Put the tasks named `name` under flow control, for every worker of the database
        (replacing the limits the name had): at most `concurrency` running at once, at most
        `rate[0]` starts per `rate[1]` (seconds or a timedelta), at most `partition_limit`
        running per value of the expression `partition` over the task's `input`. Its ready
        tasks are claimed by their instance's priority, then oldest first. InvalidInput for a
        limit that cannot be kept."""
        if isinstance(name, TaskLimit):
            limit = name
        else:
            if rate is not None:
                count, period = rate
                seconds = period.total_seconds() if isinstance(period, timedelta) else period
                rate = (count, float(seconds))
            limit = TaskLimit(name, concurrency, rate, partition, partition_limit)
        with self.store.core(write=True) as conn:
            flow_control.save_limit(conn, limit, self.clock())
        self._flow_limits.forget()
        return limit

    def clear_task_limit(self, name: str) -> bool:
        """Take the tasks named `name` out of flow control; False if they were not in it."""
        with self.store.core(write=True) as conn:
            removed = flow_control.delete_limit(conn, name)
        self._flow_limits.forget()
        return removed

    def task_limits(self) -> list[TaskLimit]:
        """Every task name's limits, by name."""
        return list(self._read_limits().values())

    def load_task_limits(self, path: str | Path) -> list[TaskLimit]:
        """Set the limits a TOML settings file gives, one table per task name:

        [tasks."payments.charge"]
        concurrency = 3
        rate = "20/1s"            # or [20, 1.0]: 20 starts per second
        partition = "input.customer_id"
        partition_limit = 1
        """
        try:
            settings = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInput(f"task limits file {path}: {exc}") from None
        tasks = settings.get("tasks")
        if not isinstance(tasks, dict):
            raise InvalidInput(f"task limits file {path}: no [tasks.NAME] tables")
        limits = [limit_from_settings(name, values) for name, values in tasks.items()]
        for limit in limits:  # every one checked before any is set
            self.limit_task(limit)
        return limits

    def held_tasks(self, instance_id: str) -> list[dict[str, Any]]:
        """The instance's ready tasks that a limit holds back now, each with the reason."""
        limits = self._flow_limits.current()
        if not limits:
            return []
        with self.store.reading() as tx:
            return held_in(tx, limits, instance_id, self.clock())


def limit_from_settings(name: str, values: Any) -> TaskLimit:
    """A TaskLimit from one `[tasks.NAME]` table of a settings file."""
    if not isinstance(values, dict):
        raise InvalidInput(f"task limits of {name}: a table of settings is expected")
    unknown = set(values) - {"concurrency", "rate", "partition", "partition_limit"}
    if unknown:
        raise InvalidInput(f"task limits of {name}: unknown settings {sorted(unknown)}")
    rate = values.get("rate")
    try:
        if isinstance(rate, str):
            count, _, period = rate.partition("/")
            rate = (int(count), parse_duration(period or "1s").total_seconds())
        elif isinstance(rate, list) and len(rate) == 2:
            rate = (int(rate[0]), float(rate[1]))
        elif rate is not None:
            raise ValueError(rate)
    except (ValueError, TypeError):
        raise InvalidInput(
            f'task limits of {name}: rate is COUNT/DURATION ("20/1s") or [COUNT, SECONDS]'
        ) from None
    return TaskLimit(
        name,
        values.get("concurrency"),
        rate,
        values.get("partition"),
        values.get("partition_limit", 1),
    )


def held_in(
    tx: Transaction, limits: dict[str, TaskLimit], instance_id: str, now: datetime
) -> list[dict[str, Any]]:
    rows = flow_statements.run(
        tx,
        "SELECT id, name, state_path, input, ready_at FROM turnout_tasks "
        "WHERE instance_id = ? AND status = 'ready' ORDER BY created_at, id",
        (instance_id,),
    ).fetchall()
    held = []
    for task_id, name, state, task_input, ready_at in rows:
        limit = limits.get(name)
        if limit is None or tx.read_time(ready_at) > now:
            continue
        reason = hold_reason(tx, limit, tx.read_json(task_input), now)
        if reason is not None:
            held.append({"task": task_id, "name": name, "state": state, "reason": reason})
    return held


def hold_reason(tx: Transaction, limit: TaskLimit, task_input: Any, now: datetime) -> str | None:
    """Why a ready task under `limit` would not be claimed now; None if it could be."""
    running = []
    if limit.concurrency is not None or limit.partition is not None:
        running = flow_control.running_inputs(tx, limit.name)
    if limit.concurrency is not None and len(running) >= limit.concurrency:
        return f"concurrency limit: {len(running)} of {limit.concurrency} running"
    if limit.partition is not None:
        partition = limit.partition_of(task_input)
        busy = sum(1 for other in running if limit.partition_of(other) == partition)
        if busy >= limit.partition_limit:
            return (
                f"partition limit: {limit.partition} = {partition} has {busy} of "
                f"{limit.partition_limit} running"
            )
    if limit.rate is not None:
        found = flow_statements.run(
            tx, "SELECT next_start_at FROM turnout_task_limits WHERE name = ?", (limit.name,)
        ).fetchone()
        next_start = None if found is None else tx.read_time(found[0])
        if flow_control.rate_allowance(limit, next_start, now)[0] < 1:
            count, period = limit.rate
            return f"rate limit: {count} per {period:g}s, next start at {next_start:%H:%M:%S.%f}"
    return None


def prioritized(
    operation: Callable[..., Result], priority: int, *, replace: bool = False
) -> Callable[..., Result]:
    """`operation` (a start or a batch of starts), recording the priority of the instances
    it starts in its transaction; `replace`: instead of the one they had (a debounced start
    that postponed a pending one)."""

    def started(tx: Transaction, *args: Any) -> Result:
        tx.priority = priority
        result = operation(tx, *args)
        applied: list[Any] = result if isinstance(result, list) else [result]
        ids = [each.instance.id for each in applied]
        if replace:
            flow_control.forget_priority(tx, ids)
        flow_control.save_priority(tx, ids, priority)
        return result

    return started
