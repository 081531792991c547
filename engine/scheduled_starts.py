"""Starts that wait: `start(..., at=)` / `delay=` and debounced starts (`debounce=` with a key).

A start that waits is an instance row with status `scheduled`, its input as its context and
its due time, debounce window and deadline in its machine data, and one timer on the top
level (key `start`) in the timers table: `get`, `instances` and the dashboard show it before
it fires, it survives a restart like any timer, and the worker that fires due timers enters
its initial state (the version pinned when it was scheduled). A debounced start for a key
whose instance is still scheduled replaces that instance's input and moves its due time to
a full window after this start: the window restarts, as a classic (trailing) debounce does.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from statemachines.chart import TOP
from statemachines.durations import parse_duration
from statemachines.errors import DuplicateKey, InvalidInput
from statemachines.steps import Entry, Status, Step, TimerOrder

from .children import persist_step
from .counts import STARTED
from .flow_calls import prioritized
from .persist import Applied, persist, snapshot
from .rows import InstanceRow, new_id

if TYPE_CHECKING:
    from .catalog import Catalog
    from .records import Instance
    from .transaction import Transaction

Result = TypeVar("Result")

START_TIMER = "start"  # the key of a scheduled start's timer (path "", activation 0)
MAX_WAIT = timedelta(days=3650)


@dataclasses.dataclass(frozen=True)
class Later:
    """When a start is to happen: its due time (None: at once), the debounce window (None:
    no debounce), the longest a debounced start may wait from the first start of its key
    (None: no bound) and the instance's own deadline (None: the definition's)."""

    due: datetime | None
    debounce: timedelta | None = None
    deadline: timedelta | None = None
    debounce_max: timedelta | None = None


def check_duration(value: Any, what: str) -> timedelta:
    """`value` (a timedelta, a number of seconds or a duration such as '2d') as a positive
    timedelta; InvalidInput otherwise."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        try:
            result = parse_duration(value)
        except ValueError as exc:
            raise InvalidInput(f"{what}: {exc}") from None
    else:
        raise InvalidInput(f"{what} must be a duration (seconds or text such as '2d')")
    if not timedelta(0) < result <= MAX_WAIT:
        raise InvalidInput(f"{what} must be positive and at most 10 years, not {value!r}")
    return result


def check_instant(value: Any) -> datetime:
    """`at` as an aware datetime (a datetime with its zone, or ISO 8601 text with one)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"at: {value!r} is not an ISO 8601 time") from None
    if not isinstance(value, datetime):
        raise InvalidInput("at must be a datetime or ISO 8601 text")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"at: {value.isoformat()} has no time zone; give one, such as Z")
    return value.astimezone(UTC)


def when(
    now: datetime,
    key: str | None,
    at: Any = None,
    delay: Any = None,
    debounce: Any = None,
    deadline: Any = None,
    debounce_max: Any = None,
) -> Later:
    """The checked timing of a start; InvalidInput on a bad mix."""
    given = [name for name, value in (("at", at), ("delay", delay)) if value is not None]
    if len(given) == 2:
        raise InvalidInput("give at or delay, not both")
    limit = None if deadline is None else check_duration(deadline, "deadline")
    if debounce is not None:
        if key is None:
            raise InvalidInput("a debounced start needs a business key")
        if given:
            raise InvalidInput(f"a debounced start waits its window; {given[0]} is not taken")
        window = check_duration(debounce, "debounce")
        bound = None if debounce_max is None else check_duration(debounce_max, "debounce_max")
        if bound is not None and bound < window:
            raise InvalidInput("debounce_max must be at least the debounce window")
        return Later(now + window, window, limit, bound)
    if debounce_max is not None:
        raise InvalidInput("debounce_max bounds a debounced start: give debounce too")
    if at is not None:
        return Later(check_instant(at), None, limit)
    if delay is not None:
        return Later(now + check_duration(delay, "delay"), None, limit)
    return Later(None, None, limit)


def schedule(
    tx: Transaction,
    catalog: Catalog,
    definition: str,
    version: int | None,
    items: list[tuple[dict[str, Any], str | None]],
    later: Later,
    now: datetime,
) -> list[Applied]:
    """A scheduled instance per (data, key) of `items`, or, debounced, the pending one of
    the key with its input replaced and its window restarted."""
    assert later.due is not None
    found = catalog.version(tx, definition, version)
    applied = []
    for data, key in items:
        found.check_input(data)
        if later.debounce is not None and key is not None:
            pending = _pending(tx, found.definition.name, key)
            if pending is not None:
                applied.append(_postpone(tx, pending, data, later, now))
                continue
        machine = {
            "due_at": later.due.isoformat(),
            "debounce": None if later.debounce is None else later.debounce.total_seconds(),
            "deadline": None if later.deadline is None else later.deadline.total_seconds(),
        }
        if later.debounce_max is not None:  # the latest it may start, however many follow
            machine["debounce_until"] = (now + later.debounce_max).isoformat()
        row = InstanceRow.new(new_id(), key, found.definition.name, found.number, now)
        row = dataclasses.replace(
            row, status=Status.SCHEDULED, context=data, machine=machine, revision=1
        )
        tx.insert_instance(row)
        tx.insert_timers(row.id, [TimerOrder(TOP, 0, START_TIMER, later.due)])
        applied.append(Applied(snapshot(row), []))
    return applied


def _pending(tx: Transaction, definition: str, key: str) -> InstanceRow | None:
    """The locked row of the instance of `key`, if it is a debounced start not yet fired;
    DuplicateKey if the key names any other instance."""
    instance_id = tx.find_by_key(definition, key)
    if instance_id is None:
        return None
    row = tx.lock_instance(instance_id)
    if row is None:
        return None
    if row.status != Status.SCHEDULED or row.machine.get("debounce") is None:
        raise DuplicateKey(definition, key)
    return row


def _postpone(
    tx: Transaction, row: InstanceRow, data: dict[str, Any], later: Later, now: datetime
) -> Applied:
    assert later.due is not None
    machine = dict(row.machine)
    if "debounce_until" not in machine and later.debounce_max is not None:
        machine["debounce_until"] = (row.created_at + later.debounce_max).isoformat()
    due = later.due
    until = machine.get("debounce_until")
    if until is not None:  # bounded since the key's first start: the window restarts within it
        due = max(min(due, datetime.fromisoformat(until)), now)
    machine["due_at"] = due.isoformat()
    if later.deadline is not None:
        machine["deadline"] = later.deadline.total_seconds()
    new = dataclasses.replace(
        row, context=data, machine=machine, revision=row.revision + 1, updated_at=now
    )
    tx.update_instance(new, row)
    tx.drop_all_work(row.id)
    tx.insert_timers(row.id, [TimerOrder(TOP, 0, START_TIMER, due)])
    return Applied(snapshot(new), [])


def fire(tx: Transaction, catalog: Catalog, row: InstanceRow, now: datetime) -> Applied | None:
    """Enter the initial state of a scheduled instance whose time has come; its deadline,
    if it has one, runs from now."""
    if row.status != Status.SCHEDULED:
        return None
    machine = catalog.version(tx, row.definition, row.version).machine
    seconds = row.machine.get("deadline")
    deadline = None if seconds is None else timedelta(seconds=float(seconds))
    step = machine.start(row.context, now, deadline)
    tx.tallies.append((STARTED, row.definition))
    return persist_step(tx, catalog, row, step, now)


def cancel(tx: Transaction, row: InstanceRow, reason: str | None, now: datetime) -> Applied:
    """Cancel a start that has not fired: its timer is dropped, nothing ran to compensate."""
    tx.drop_all_work(row.id)
    entry = Entry("cancel", "cancel", None, None, {"reason": reason})
    step = Step(row.machine, row.context, Status.CANCELLED, [entry])
    return persist(tx, row, step, now)


class ScheduledStarts:
    """The part of `Engine` that writes starts that wait (`Engine.start` hands them here)."""

    if TYPE_CHECKING:  # the other parts of `Engine`
        catalog: Catalog

        def _apply(self, operation: Callable[..., Result], *args: Any) -> Result: ...

        def _publish(self, applied: Applied | None) -> None: ...

        def _within(self, within: Any, operation: Callable[..., Result], *args: Any) -> Result: ...

    def _start_later(
        self,
        definition: str,
        version: int | None,
        items: list[tuple[dict[str, Any], str | None]],
        later: Later,
        now: datetime,
        priority: int = 0,
        within: Any = None,
    ) -> list[Instance]:
        """Write scheduled instances (or postpone debounced ones) and publish them; a
        priority is recorded with them (flow_control.py): a debounced start's replaces the
        pending one's, as its data does. `within`: in the application's transaction (see
        `Engine.start`), published at its commit."""
        write = schedule
        if priority or later.debounce is not None:
            write = prioritized(schedule, priority, replace=later.debounce is not None)
        args = (write, self.catalog, definition, version, items, later, now)
        run = self._apply if within is None else functools.partial(self._within, within)
        try:
            applied = run(*args)
        except DuplicateKey:
            if later.debounce is None:
                raise
            # Two debounced starts of one key raced and the other wrote the pending start
            # first: this one now finds it and postpones it.
            applied = run(*args)
        for one in applied if within is None else ():  # else published at its commit
            self._publish(one)
        return [one.instance for one in applied]
