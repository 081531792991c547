"""Call states' children, in the transaction of the step that concerns them: a step's calls
start child instances (in the parent's transaction), a call state left or an instance that
ends (an engine fault too: `end_children`) cancels its running children (and theirs), and a
child that ends tells its parent by a timer due at once, which a worker's sweep fires as the
parent's next operation. So a transaction locks a parent before its children, never a child
before its parent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from statemachines import CompiledMachine, Definition, Status, Step
from statemachines.calls import call_error, child_value, failure_of
from statemachines.errors import DefinitionNotFound, InvalidInput
from statemachines.model import MAX_CALL_DEPTH
from statemachines.steps import FINISHED, CallOrder, Entry, TimerOrder

from .catalog import Catalog, Version
from .flow_control import inherit_priority
from .persist import Applied, fail_instance, instance_fault, persist, snapshot_of
from .records import error_details
from .rows import Claim, InstanceRow, TimerRow, new_id
from .transaction import Transaction

CHILD_TIMER = "child:"  # the key of the timer that tells a parent its child CHILD_TIMER+id ended


class CallFailed(Exception):
    """A call whose child cannot be started: the calling state fails with CallError."""


def persist_step(
    tx: Transaction,
    catalog: Catalog,
    row: InstanceRow,
    step: Step,
    now: datetime,
    definition: Definition | None = None,
    *,
    insert: bool = False,
    finished: tuple[str, int] | None = None,
    claim: Claim | None = None,
) -> Applied:
    """`persist` (see there for the arguments), with what the step means for call states:
    its calls start their children, the call states it leaves cancel theirs, and the end of
    a child is reported to its parent. The children's history entries follow the step's."""
    if not step.calls and not (step.status in FINISHED and _link(step)):
        # Nothing starts, and nothing to tell a parent: only a definition with call states
        # can have children to cancel (the common case, on every event, is none).
        known = catalog.known(row.definition, row.version)
        nothing_left = not (step.cancelled or step.stopped or step.status in FINISHED)
        if nothing_left or (known is not None and not known.definition.calls):
            return persist(
                tx, row, step, now, definition, insert=insert, finished=finished, claim=claim
            )
    version = catalog.version(tx, row.definition, row.version)
    step, starts = _prepared(tx, catalog, version.machine, step, now)
    applied = persist(tx, row, step, now, definition, insert=insert, finished=finished, claim=claim)
    for order, called, child_id in starts:
        applied.entries.extend(_start(tx, catalog, row.id, order, called, child_id, step, now))
    applied.entries.extend(_cancel_children(tx, catalog, row.id, step, version.definition, now))
    if row.status not in FINISHED or insert:
        ended(tx, row.id, step.machine, step.status, now)
    return applied


def ended(
    tx: Transaction, instance_id: str, machine: dict[str, Any], status: str, now: datetime
) -> None:
    """When an instance a call started has just ended, a timer due now for its parent."""
    link = machine.get("parent") if isinstance(machine, dict) else None  # (a corrupt row)
    # A child its parent cancelled on leaving the calling state (`left`) has nothing to tell.
    if status in FINISHED and isinstance(link, dict) and not link.get("left"):
        order = TimerOrder(link["state"], link["activation"], CHILD_TIMER + instance_id, now)
        tx.insert_timers(link["id"], [order])


def deliver(
    tx: Transaction, catalog: Catalog, row: InstanceRow, timer: TimerRow, now: datetime
) -> Applied | None:
    """Fire the timer by which a child told its parent (`row`, locked) that it ended: `done`
    or `failed` on the calling state; nothing when that state has been left since."""
    child = tx.lock_instance(timer.key.removeprefix(CHILD_TIMER))
    if child is None or child.status not in FINISHED:
        return None
    link = child.machine.get("parent") or {}
    ref = (timer.state_path, timer.activation, link.get("item"))
    failure = None
    if child.status == Status.FAILED and not isinstance(child.machine.get("error"), dict):
        # An instance that ended failed keeps its error; an older row may not: its history has it.
        failure = failure_of(tx.last_failure(child.id))
    value = child_value(child.status, child.context, child.machine, failure, child.id)
    machine = catalog.version(tx, row.definition, row.version).machine
    step = machine.child_finished(snapshot_of(row), ref, child.status, value, now)
    if not step.changed and not step.history:
        return None
    return persist_step(tx, catalog, row, step, now)


def _link(step: Step) -> bool:
    return "parent" in step.machine


def _depth(machine: dict[str, Any]) -> int:
    link = machine.get("parent")
    return int(link.get("depth", 0)) if isinstance(link, dict) else 0


def _prepared(
    tx: Transaction, catalog: Catalog, machine: CompiledMachine, step: Step, now: datetime
) -> tuple[Step, list[tuple[CallOrder, Version, str]]]:
    """The step once every call that cannot start has failed its state (which may make new
    calls), with the children to start: (order, the version called, the child's id)."""
    depth = _depth(step.machine) + 1
    starts: list[tuple[CallOrder, Version, str]] = []
    while step.calls:
        gone = set(step.cancelled)
        failures: list[tuple[CallOrder, str]] = []
        for order in step.calls:
            if (order.state_path, order.activation) in gone:
                continue
            try:
                starts.append((order, _callable(tx, catalog, order, depth), new_id()))
            except CallFailed as exc:
                failures.append((order, str(exc)))
        step.calls = []
        for order, message in failures:
            ref = (order.state_path, order.activation, order.item)
            failed = machine.child_finished(
                step.snapshot, ref, Status.FAILED, call_error(message), now
            )
            step = _merged(step, failed)
    gone = set(step.cancelled)
    starts = [start for start in starts if (start[0].state_path, start[0].activation) not in gone]
    for order, called, child_id in starts:
        details = {
            "child": child_id,
            "definition": called.definition.name,
            "version": called.number,
        }
        step.history.append(Entry("call", None, order.state_path, None, details))
    return step, starts


def _callable(tx: Transaction, catalog: Catalog, order: CallOrder, depth: int) -> Version:
    """The version a call starts; CallFailed when it cannot start it."""
    if depth > MAX_CALL_DEPTH:
        raise CallFailed(f"calls nest deeper than {MAX_CALL_DEPTH}")
    try:
        called = catalog.version(tx, order.definition, order.version)
    except DefinitionNotFound:
        which = "" if order.version is None else f" version {order.version}"
        raise CallFailed(f"definition {order.definition!r}{which} is not deployed") from None
    if not isinstance(order.input, dict):
        raise CallFailed("the input of a call must be a JSON object")
    try:
        called.check_input(order.input)
    except InvalidInput as exc:
        raise CallFailed(str(exc)) from None
    return called


def _merged(first: Step, second: Step) -> Step:
    """`first` then `second` (made from `first`'s snapshot) as one step: work `first`
    ordered for state entries `second` left is never written."""
    gone = set(second.cancelled)
    return Step(
        second.machine,
        second.context,
        second.status,
        history=first.history + second.history,
        tasks=[t for t in first.tasks if (t.state_path, t.activation) not in gone] + second.tasks,
        timers=[t for t in first.timers if (t.state_path, t.activation) not in gone]
        + second.timers,
        cancelled=first.cancelled + second.cancelled,
        calls=second.calls,
        stopped=first.stopped + second.stopped,
    )


def _start(
    tx: Transaction,
    catalog: Catalog,
    parent_id: str,
    order: CallOrder,
    called: Version,
    child_id: str,
    parent_step: Step,
    now: datetime,
) -> list[Any]:
    """Start the child of a call in the parent's transaction; its history entries."""
    step = called.machine.start(order.input, now)
    step.machine["parent"] = {
        "id": parent_id,
        "state": order.state_path,
        "activation": order.activation,
        "item": order.item,
        "depth": _depth(parent_step.machine) + 1,
    }
    name, number = called.definition.name, called.number
    row = InstanceRow.new(child_id, None, name, number, now, parent_id)
    inherit_priority(tx, parent_id, child_id)
    return persist_step(tx, catalog, row, step, now, insert=True).entries


def _cancel_children(
    tx: Transaction,
    catalog: Catalog,
    parent_id: str,
    step: Step,
    definition: Definition,
    now: datetime,
) -> list[Any]:
    """Cancel, with their compensation, the running children of the call states (and
    foreach states that call) the step left and of the foreach items it stopped, or all of
    them when the step ends the instance; their history entries."""
    if not definition.calls:
        return []
    if step.status == Status.COMPENSATING:  # it compensates before it ends `outcome`
        outcome = step.machine.get("outcome", Status.FAILED)
        return end_children(tx, catalog, parent_id, f"{outcome}, compensating first", now)
    if step.status != Status.RUNNING:
        return end_children(tx, catalog, parent_id, step.status, now)
    refs = {ref for ref in step.cancelled if definition.calls_at(ref[0]) is not None}
    if not refs and not step.stopped:
        return []
    return _cancel(tx, catalog, parent_id, refs, now, items=set(step.stopped))


def end_children(
    tx: Transaction, catalog: Catalog, parent_id: str, status: str, now: datetime
) -> list[Any]:
    """Cancel, with their compensation, every running child of an instance that ends with
    `status` (by its machine, after compensating or not, or by an engine fault), and theirs
    in turn; their history entries."""
    reason = f"its calling instance {parent_id} ended ({status})"
    return _cancel(tx, catalog, parent_id, None, now, reason)


def cancel_left(
    tx: Transaction, catalog: Catalog, parent_id: str, refs: set[tuple[str, int]], now: datetime
) -> list[Any]:
    """Cancel, with their compensation, the running children of the state entries `refs`
    (state path, activation) that an operator's move of their parent left; their entries."""
    return _cancel(tx, catalog, parent_id, refs, now) if refs else []


def _cancel(
    tx: Transaction,
    catalog: Catalog,
    parent_id: str,
    refs: set[tuple[str, int]] | None,
    now: datetime,
    reason: str = "",
    items: set[tuple[str, int, int]] | None = None,
) -> list[Any]:
    """Cancel the running children of `parent_id` (those of the call state entries `refs`
    and of the foreach `items` stopped, else all). Each is marked `left` in its link: its
    end would change nothing in its parent, so it queues no timer there. A child that
    cannot even be cancelled (its own definition no longer loads, say) is failed as an
    engine fault would fail it."""
    entries: list[Any] = []
    for child_id in tx.children(parent_id, running=True):
        child = tx.lock_instance(child_id)  # after its parent: the order every writer keeps
        if child is None or child.status != Status.RUNNING:
            continue
        found = child.machine.get("parent") if isinstance(child.machine, dict) else None
        link = found if isinstance(found, dict) else {}
        at = (link.get("state"), link.get("activation"))
        stopped = (*at, link.get("item")) in (items or ())
        if refs is not None and at not in refs and not stopped:
            continue
        why = reason or f"its calling state {link['state']!r} of instance {parent_id} was left"
        if refs is not None and at not in refs:
            why = f"it ran past the timeout of its item in {link['state']!r} of {parent_id}"
        try:
            machine = catalog.version(tx, child.definition, child.version).machine
            cancelled = machine.cancel(snapshot_of(child), why, now)
        except Exception as exc:
            if not instance_fault(exc):
                raise
            failed = fail_instance(tx, child, error_details(exc), now)
            entries.extend(failed.entries)
            entries.extend(end_children(tx, catalog, child.id, failed.instance.status, now))
            continue
        if link:
            cancelled.machine["parent"] = {**link, "left": True}
        entries.extend(persist_step(tx, catalog, child, cancelled, now).entries)
    return entries
