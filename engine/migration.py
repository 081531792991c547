"""Migrating running instances to another version of their definition: the plan, made from
every selected instance's history without writing anything (`plan_migration`), and its
application, one instance per transaction (`migrate`). The classes and the steps are
`statemachines.migration`'s; this part of `Engine` reads the rows and writes the moves.

Applying a plan checks each instance again under its row lock, against its history as it
is then: an event committed before the lock belongs to the old version and is part of the
history the instance is judged by (it may no longer move); once the move has committed,
events go to the new version. An instance already on the new version is skipped, so a plan
applied twice moves each instance once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from statemachines import Status, Step
from statemachines.errors import DatabaseUnavailable, InvalidInput, TurnoutError
from statemachines.migration import (
    Candidate,
    assess,
    check_state_map,
    migration_data,
    migration_step,
)
from statemachines.migration_plan import (
    MOVING,
    MigrationClass,
    MigrationPlan,
    PlanFilter,
    PlannedInstance,
)
from statemachines.steps import CALL_TIMEOUT, TaskOrder, TimerOrder

from . import migration_rows as rows
from .catalog import Catalog, Version
from .checks import check_version
from .children import CHILD_TIMER, cancel_left, persist_step
from .migration_result import MigratedInstance, MigrationResult, Outcome
from .persist import Applied
from .rows import InstanceRow, new_id
from .store import Store
from .transaction import Transaction

Result = TypeVar("Result")


class Migrations:
    """Migration of running instances (a part of `Engine`, kept here with what it needs)."""

    store: Store
    catalog: Catalog
    clock: Callable[[], datetime]

    def _apply(self, operation: Callable[..., Result], *args: Any) -> Result:
        raise NotImplementedError

    def _publish(self, applied: Applied | None) -> None:
        raise NotImplementedError

    def plan_migration(
        self,
        name: str,
        from_version: int,
        to_version: int | None = None,
        state_map: Mapping[str, str] | None = None,
        where: PlanFilter | Mapping[str, Any] | None = None,
    ) -> MigrationPlan:
        """Classify the running instances of `name` on `from_version` for a move to
        `to_version` (default the latest): safe, mapped, divergent or impossible (see
        `statemachines.migration`), without writing anything.

        `state_map` maps states of the old version to states of the new one (full paths);
        `where` selects among the running instances (`PlanFilter`: state, key_prefix, ids).
        An instance that is compensating is finishing and is not taken. InvalidInput for
        a map naming unknown states or for the same version twice; DefinitionNotFound for a
        version not deployed."""
        check_version(name, from_version)
        check_version(name, to_version)
        chosen_by = PlanFilter.of(where)
        with self.store.reading() as tx:
            old, new = _versions(tx, self.catalog, name, from_version, to_version)
            mapping = check_state_map(
                old.definition, new.definition, state_map, (old.number, new.number)
            )
            chosen = {
                row.id: row
                for row in rows.running(tx, name, old.number)
                if chosen_by.matches(row.id, row.key, row.active)
            }
            found: dict[str, PlannedInstance] = {}
            for instance_id, history in rows.histories(tx, name, old.number):
                row = chosen.get(instance_id)
                if row is None:
                    continue
                # PostgreSQL reads each statement anew: entries written since the row was
                # read are left out, and the instance is judged as the row shows it.
                kept = [entry for entry in history if entry.seq <= row.history_seq]
                candidate = candidate_of(row, kept)
                found[row.id] = assess(candidate, new.machine, mapping, new.number).planned
        planned = tuple(found[instance_id] for instance_id in chosen if instance_id in found)
        return MigrationPlan(
            new_id(),
            name,
            old.number,
            new.number,
            self.clock(),
            planned,
            tuple(mapping.items()),
            chosen_by,
        )

    def migrate(self, plan: MigrationPlan | Mapping[str, Any]) -> MigrationResult:
        """Move the plan's safe and mapped instances to its new version, each in a
        transaction of its own, with a `migrated` history entry; the others stay as they
        are. `plan` is a MigrationPlan or its JSON form. Each instance is classified again
        under its row lock against its history then (an event since the plan may keep it
        where it is); one already on the new version is skipped, so a plan applied twice
        moves each instance once."""
        if not isinstance(plan, MigrationPlan):
            plan = MigrationPlan.from_json(plan)
        with self.store.reading() as tx:
            old, new = _versions(
                tx, self.catalog, plan.definition, plan.from_version, plan.to_version
            )
        versions = (old.number, new.number)
        mapping = check_state_map(old.definition, new.definition, dict(plan.state_map), versions)
        done: list[MigratedInstance] = []
        for planned in plan.instances:
            if planned.kind not in MOVING:
                why = planned.reason or f"{planned.kind} in the plan"
                done.append(
                    MigratedInstance(planned.id, Outcome.UNTOUCHED, planned.kind, reason=why)
                )
                continue
            try:
                outcome, applied = self._apply(
                    migrate_one, self.catalog, plan, planned, mapping, self.clock()
                )
            except DatabaseUnavailable:
                raise
            except TurnoutError as exc:  # this instance's own trouble: the others go on
                why = f"could not be moved: {exc}"
                outcome, applied = (
                    MigratedInstance(planned.id, Outcome.STAYED, planned.kind, reason=why),
                    None,
                )
            self._publish(applied)
            done.append(outcome)
        return MigrationResult(
            plan.id, plan.definition, plan.from_version, plan.to_version, tuple(done)
        )


def _versions(
    tx: Transaction, catalog: Catalog, name: str, old: int, new: int | None
) -> tuple[Version, Version]:
    before, after = catalog.version(tx, name, old), catalog.version(tx, name, new)
    if before.number == after.number:
        raise InvalidInput(
            f"version {before.number} of {name!r} is both the version to migrate from and "
            "the one to migrate to"
        )
    return before, after


def candidate_of(row: InstanceRow, history: list[Any]) -> Candidate:
    """What classification reads of an instance row and its history."""
    return Candidate(
        row.id,
        row.key,
        row.revision,
        row.state,
        tuple(row.active or ()),
        row.status,
        row.context,
        row.machine,
        history,
    )


def migrate_one(
    tx: Transaction,
    catalog: Catalog,
    plan: MigrationPlan,
    planned: PlannedInstance,
    mapping: dict[str, str],
    now: datetime,
) -> tuple[MigratedInstance, Applied | None]:
    """Move one instance of the plan, locked, classified again against its history now."""
    row = tx.lock_instance(planned.id)
    skipped = _skipped(row, plan)
    if row is None or skipped:
        why = skipped or "it no longer exists"
        return MigratedInstance(planned.id, Outcome.SKIPPED, planned.kind, reason=why), None
    changed = row.revision != planned.revision
    old = catalog.version(tx, row.definition, row.version)
    new = catalog.version(tx, row.definition, plan.to_version)
    candidate = candidate_of(row, rows.history(tx, row))
    assessed = assess(candidate, new.machine, mapping, new.number)
    kind = assessed.planned.kind
    if kind not in MOVING:
        return MigratedInstance(
            row.id,
            Outcome.STAYED,
            planned.kind,
            kind,
            moved_on=changed,
            reason=assessed.planned.reason,
            divergence=assessed.planned.divergence,
        ), None
    data = migration_data(candidate, assessed, old.number, new.number, plan.id, mapping)
    step = migration_step(candidate, assessed, new.machine, data, now)
    entries: list[Any] = []
    if old.definition.calls:  # the children of the state entries it no longer has
        before = _entries(row.machine)
        entries = cancel_left(tx, catalog, row.id, before - _entries(step.machine), now)
    replan(tx, row.id, step, old, fresh=kind == MigrationClass.MAPPED)
    rows.set_version(tx, row.id, new.number)
    applied = persist_step(tx, catalog, dataclasses.replace(row, version=new.number), step, now)
    applied.entries.extend(entries)
    outcome = MigratedInstance(
        row.id,
        Outcome.MIGRATED,
        planned.kind,
        kind,
        applied.instance.revision,
        changed,
        assessed.planned.reason,
    )
    return outcome, applied


def _skipped(row: InstanceRow | None, plan: MigrationPlan) -> str:
    """Why the instance is not looked at again ('' when it is)."""
    if row is None:
        return "it no longer exists"
    if row.definition != plan.definition:
        return f"it is an instance of {row.definition!r}, not of {plan.definition!r}"
    if row.version == plan.to_version:
        return f"already on version {plan.to_version}"
    if row.version != plan.from_version:
        return f"on version {row.version} now"
    if row.status != Status.RUNNING:
        return f"{row.status} now"
    return ""


def _entries(machine: dict[str, Any]) -> set[tuple[str, int]]:
    active = machine.get("active") if isinstance(machine, dict) else None
    return {(str(path), int(number)) for path, number in (active or {}).items()}


def replan(tx: Transaction, instance_id: str, step: Step, old: Version, *, fresh: bool) -> None:
    """Make the instance's tasks and timers those of `step` on the new version, keeping what
    is still valid: `step` is left with the tasks and timers to create, nothing to cancel.

    A task of the same state entry, item, kind and name as one still waiting or held is
    kept, with its attempts and lease, under the new version's retry and timeout from then
    on; one whose row has finished ran already and is not made again. A timer of the same
    state entry, key and due time is kept; a replayed one without a row fired already when
    the old version had it too (`fresh`: the step entered its states anew, and every timer
    is new). The others are dropped, but for the reports of children that have ended
    (CHILD_TIMER)."""
    found = rows.tasks(tx, instance_id)
    live = {task.key: task for task in found if task.live}
    finished = {task.key for task in found if not task.live}
    kept: set[str] = set()
    creating = []
    for order in step.tasks:
        key = (order.state_path, order.activation, order.item, order.kind)
        task = live.get(key)
        if task is not None and task.name == order.name:
            kept.add(task.id)
            policy = (max(1, order.retry.attempts), _retry(order, task), _ms(order))
            if policy != (task.max_attempts, task.retry, task.timeout_ms):
                rows.renew_policy(tx, task.id, *policy)
        elif task is not None or key not in finished:
            creating.append(order)
    rows.drop_tasks(tx, [task.id for task in live.values() if task.id not in kept])
    waiting = rows.timers(tx, instance_id)
    by_key = {(timer.state_path, timer.activation, timer.key): timer for timer in waiting}
    kept = set()
    starting = []
    for timer in step.timers:
        row = by_key.get((timer.state_path, timer.activation, timer.key))
        if row is not None and row.due_at == timer.due:
            kept.add(row.id)
        elif row is not None or fresh or not _had_timer(old, timer):
            starting.append(timer)
    dropped = [
        one.id for one in waiting if one.id not in kept and not one.key.startswith(CHILD_TIMER)
    ]
    rows.delete_timers(tx, dropped)
    step.tasks, step.timers, step.cancelled = creating, starting, []


def _ms(order: TaskOrder) -> int | None:
    return None if order.timeout is None else round(order.timeout.total_seconds() * 1000)


def _retry(order: TaskOrder, task: rows.TaskKey) -> dict[str, Any]:
    """The new version's retry policy for a kept task, with the failures it counted by
    policy (typed retry) carried over when the new version has as many policies."""
    retry = order.retry.to_json()
    failures = task.retry.get("failures") if isinstance(task.retry, dict) else None
    if isinstance(failures, list) and len(failures) == len(order.retry.policies):
        retry["failures"] = failures
    return retry


def _had_timer(old: Version, timer: TimerOrder) -> bool:
    """Whether the old version started this timer on entering the same state: a replayed
    timer with no row then fired already."""
    chart = old.machine.chart
    if timer.key == CALL_TIMEOUT or timer.key.startswith(CALL_TIMEOUT + ":"):
        spec = old.definition.calls_at(timer.state_path)
        return spec is not None and spec.timeout is not None
    if not chart.is_node(timer.state_path):
        return False
    return any(one.key == timer.key for one in chart.node(timer.state_path).after)
