"""Unhandled failures, compensation in reverse order of completion (saga), and cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine import Engine, EventRejected, TurnoutError


def _register_bookings(engine: Engine, log: list[str], failing: str | None = None) -> None:
    for task in ("flights.book", "hotels.book", "cars.book"):
        engine.task(task)(_recorder(log, task, fail=(task == failing)))


def _register_compensations(engine: Engine, log: list[str]) -> None:
    for task in ("flights.cancel", "hotels.cancel", "cars.cancel"):
        engine.task(task)(_recorder(log, task))


def _recorder(log: list[str], name: str, fail: bool = False) -> Callable[[Any], Any]:
    def handler(data: Any) -> Any:
        log.append(name)
        if fail:
            raise RuntimeError(f"{name} unavailable")
        return {"ref": name}

    return handler


def test_unhandled_task_failure_makes_the_instance_failed(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("fragile")

    @engine.task("jobs.fragile")
    def fragile(data: Any) -> Any:
        raise RuntimeError("broken")

    inst = engine.start("fragile", {})
    engine.run_until_idle()
    failed = engine.get(inst.id)
    assert failed.status == "failed"
    assert engine.allowed(inst.id) == []
    assert any("broken" in str(e.data) for e in engine.history(inst.id))


def test_failure_compensates_completed_steps_in_reverse_order(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("saga")
    log: list[str] = []
    _register_bookings(engine, log, failing="cars.book")
    _register_compensations(engine, log)
    inst = engine.start("saga", {"trip": 1})
    engine.run_until_idle()
    assert log == ["flights.book", "hotels.book", "cars.book", "hotels.cancel", "flights.cancel"]
    done = engine.get(inst.id)
    assert done.status == "failed"
    assert "compensate" in [e.kind for e in engine.history(inst.id)]


def test_status_is_compensating_while_undo_steps_are_pending(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("saga")
    log: list[str] = []
    _register_bookings(engine, log, failing="cars.book")  # no compensation handlers here
    inst = engine.start("saga", {})
    engine.run_until_idle()
    assert engine.get(inst.id).status == "compensating"
    [first] = engine.claim_tasks(
        ["flights.cancel", "hotels.cancel", "cars.cancel"], "w", 60, limit=10
    )
    assert first.name == "hotels.cancel"  # one at a time, the last completed first
    assert engine.complete_task(first.id, "w", None) is True
    assert engine.get(inst.id).status == "compensating"
    [second] = engine.claim_tasks(
        ["flights.cancel", "hotels.cancel", "cars.cancel"], "w", 60, limit=10
    )
    assert second.name == "flights.cancel"
    assert engine.complete_task(second.id, "w", None) is True
    assert engine.get(inst.id).status == "failed"
    assert engine.claim_tasks(["flights.cancel", "hotels.cancel", "cars.cancel"], "w", 60) == []


def test_events_are_rejected_while_compensating(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("saga")
    _register_bookings(engine, [], failing="hotels.book")
    inst = engine.start("saga", {})
    engine.run_until_idle()
    assert engine.get(inst.id).status == "compensating"
    with pytest.raises(EventRejected):
        engine.send(inst.id, "anything")


def test_failure_before_any_completed_step_needs_no_compensation(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("saga")
    log: list[str] = []
    _register_bookings(engine, log, failing="flights.book")
    _register_compensations(engine, log)
    inst = engine.start("saga", {})
    engine.run_until_idle()
    assert log == ["flights.book"]
    assert engine.get(inst.id).status == "failed"


def test_explicit_failure_route_triggers_no_automatic_compensation(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("refunding")
    log: list[str] = []
    for task in ("payments.charge", "payments.void", "payments.refund"):
        engine.task(task)(_recorder(log, task))
    engine.task("shipping.ship")(_recorder(log, "shipping.ship", fail=True))
    inst = engine.start("refunding", {})
    engine.run_until_idle()
    assert log == ["payments.charge", "shipping.ship", "payments.refund"]
    done = engine.get(inst.id)
    assert done.state == "refunded"
    assert done.status == "failed"
    assert "compensate" not in [e.kind for e in engine.history(inst.id)]


def test_cancel_drops_pending_work_and_compensates_then_is_cancelled(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("saga")
    log: list[str] = []
    engine.task("flights.book")(_recorder(log, "flights.book"))
    _register_compensations(engine, log)
    inst = engine.start("saga", {})
    engine.run_until_idle()  # the flight is booked; hotels.book has no handler and waits
    assert engine.get(inst.id).state == "book_hotel"
    cancelled = engine.cancel(inst.id, reason="customer asked")
    assert cancelled.status in ("compensating", "cancelled")
    engine.run_until_idle()
    assert log == ["flights.book", "flights.cancel"]
    done = engine.get(inst.id)
    assert done.status == "cancelled"
    assert engine.claim_tasks(["hotels.book"], "w", 60) == []
    entries = engine.history(inst.id)
    cancel_entries = [e for e in entries if e.kind == "cancel"]
    assert len(cancel_entries) == 1
    assert "customer asked" in str(cancel_entries[0].data)


def test_cancel_without_completed_steps_is_cancelled_at_once(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("reminder")
    inst = engine.start("reminder", {})
    cancelled = engine.cancel(inst.id)
    assert cancelled.status == "cancelled"
    clock.advance(86400)
    assert engine.run_until_idle() == 0  # its timers were dropped
    assert engine.get(inst.id).status == "cancelled"
    with pytest.raises(EventRejected):
        engine.send(inst.id, "answer")


def test_cancel_of_a_finished_instance_is_refused_and_changes_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "a@x"})
    done = engine.send(inst.id, "reject")
    history = engine.history(inst.id)
    with pytest.raises(TurnoutError):
        engine.cancel(inst.id)
    assert engine.get(inst.id) == done
    assert engine.history(inst.id) == history


def test_cancel_status_is_compensating_until_undo_steps_finish(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("saga")
    engine.task("flights.book")(lambda data: {"pnr": "X1"})
    engine.task("hotels.book")(lambda data: {"room": 7})
    inst = engine.start("saga", {})
    engine.run_until_idle()  # flight and hotel booked, cars.book waits
    assert engine.cancel(inst.id).status == "compensating"
    names = ["flights.cancel", "hotels.cancel", "cars.cancel"]
    order = []
    while True:
        claimed = engine.claim_tasks(names, "w", 60, limit=10)
        if not claimed:
            break
        assert len(claimed) == 1
        order.append(claimed[0].name)
        engine.complete_task(claimed[0].id, "w", None)
    assert order == ["hotels.cancel", "flights.cancel"]
    assert engine.get(inst.id).status == "cancelled"


def test_failed_parallel_branch_compensates_completed_work_in_reverse_order(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("parallel_saga")
    undo = ["stock.release", "payments.refund"]
    inst = engine.start("parallel_saga", {})
    [reserve] = engine.claim_tasks(["stock.reserve"], "w", 60)
    assert engine.complete_task(reserve.id, "w", {"reserved": True}) is True
    [charge] = engine.claim_tasks(["payments.charge"], "w", 60)
    [ship] = engine.claim_tasks(["shipping.ship"], "w", 60)
    assert engine.complete_task(charge.id, "w", {"charged": True}) is True
    assert engine.fail_task(ship.id, "w", "truck broke down") is True
    assert engine.get(inst.id).status == "compensating"
    order = []
    while claimed := engine.claim_tasks(undo, "w", 60, limit=10):
        assert len(claimed) == 1
        order.append(claimed[0].name)
        assert engine.complete_task(claimed[0].id, "w", None) is True
    assert order == ["payments.refund", "stock.release"]
    assert engine.get(inst.id).status == "failed"


def test_result_of_a_task_claimed_before_cancel_is_stale(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w", 60)
    engine.cancel(inst.id, reason="no longer needed")
    assert engine.complete_task(task.id, "w", {"late": True}) is False
    done = engine.get(inst.id)
    assert done.status == "cancelled"
    assert done.context == {}
    assert "stale" in [e.kind for e in engine.history(inst.id)]


def test_cancel_drops_every_pending_foreach_item(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    inst = engine.start("mailing", {"recipients": ["a", "b", "c", "d"]})
    [first, _second] = engine.claim_tasks(["mail.send"], "w", 60, limit=10)
    engine.cancel(inst.id)
    assert engine.complete_task(first.id, "w", "ok") is False
    assert engine.claim_tasks(["mail.send"], "w", 60, limit=10) == []
    assert engine.get(inst.id).status == "cancelled"


def test_instances_can_be_listed_by_compensating_status(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("saga")
    engine.task("flights.book")(lambda data: {"pnr": 1})
    engine.task("hotels.book")(lambda data: {"room": 2})
    inst = engine.start("saga", {})
    engine.run_until_idle()
    engine.cancel(inst.id)
    assert [i.id for i in engine.instances(status="compensating")] == [inst.id]
    assert engine.instances(status="running") == []
