"""Failures with a name on the durable engine (SQLite and PostgreSQL): the error a failed
instance ended with (type, message, the state where it arose, the history entry that records
it) is part of its snapshot: `get()`, `to_json()`, the listing, and it survives a new engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from engine import Engine
from engine.tables import instances_t

CHECKOUT = """\
name: checkout
initial: pay
states:
  pay:
    task: payments.charge
    on:
      done: confirm
      failed:
        Declined: {to: declined, assign: {reason: event.error.message}}
  confirm:
    on:
      confirm: done
      refuse: {to: refused, assign: {why: event.why}}
  declined:
    final: failed
    error:
      type: PaymentDeclined
      message: "'card declined: ' + context.reason"
  refused:
    final: failed
    error: {type: OrderRefused, message: event.why}
  done: {final: true}
"""

SHIPPING = """\
name: shipping
initial: ship
states:
  ship:
    parallel:
      pack: {task: warehouse.pack}
      pay:
        initial: charge
        states:
          charge: {task: payments.charge, on: {done: paid, failed: declined}}
          paid: {final: true}
          declined:
            final: failed
            error: {type: PaymentDeclined, message: "'no funds for ' + str(context.amount)"}
    on:
      done: shipped
      failed:
        PaymentDeclined: {to: unpaid, assign: {cause: event.error}}
        "*": broken
  shipped: {final: true}
  unpaid: {final: failed, error: {type: Unpaid, message: event.error.message}}
  broken: {final: failed}
"""


class Declined(Exception):
    """A refusal from the payment provider."""


def _charge(engine: Engine) -> None:
    @engine.task("payments.charge")
    def charge(data: dict[str, Any]) -> Any:
        if data.get("refuse"):
            raise Declined(data["refuse"])
        if data.get("break"):
            raise KeyError("amount")
        return {"charged": True}

    engine.task("warehouse.pack")(lambda data: {"packed": True})


def _entry(engine: Engine, instance_id: str, seq: int) -> Any:
    return next(entry for entry in engine.history(instance_id) if entry.seq == seq)


def test_a_named_final_state_is_the_error_get_shows(engine: Engine) -> None:
    engine.deploy(CHECKOUT)
    _charge(engine)
    instance = engine.start("checkout", {"refuse": "insufficient funds"})
    assert instance.error is None
    engine.run_until_idle()
    failed = engine.get(instance.id)
    assert failed.status == "failed" and failed.state == "declined"
    assert failed.error == {
        "type": "PaymentDeclined",
        "message": "card declined: insufficient funds",
        "state": "declined",
        "seq": 2,
    }
    entry = _entry(engine, instance.id, 2)
    assert (entry.event, entry.to_state) == ("failed", "declined")
    assert failed.to_json()["error"] == failed.error
    listed = engine.instances(definition="checkout")
    assert [item.error for item in listed] == [failed.error]


def test_an_event_into_a_named_final_state_gives_its_message(engine: Engine) -> None:
    engine.deploy(CHECKOUT)
    _charge(engine)
    instance = engine.start("checkout", {})
    engine.run_until_idle()
    ended = engine.send(instance.id, "refuse", {"why": "out of stock"})
    assert ended.status == "failed"
    assert ended.error == {
        "type": "OrderRefused",
        "message": "out of stock",
        "state": "refused",
        "seq": 3,
    }
    assert engine.get(instance.id).error == ended.error


def test_an_unhandled_task_failure_is_the_error_with_the_handler_s_type(engine: Engine) -> None:
    engine.deploy(CHECKOUT)
    _charge(engine)
    instance = engine.start("checkout", {"break": True})
    engine.run_until_idle()
    failed = engine.get(instance.id)
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error["type"], failed.error["message"]) == ("KeyError", "'amount'")
    assert failed.error["state"] == "pay"
    entry = _entry(engine, instance.id, failed.error["seq"])
    assert (entry.kind, entry.event, entry.from_state) == ("task", "failed", "pay")
    assert "traceback" in entry.data["error"] and "details" not in failed.error
    assert failed.last_error is not None and failed.last_error["type"] == "KeyError"


def test_a_parallel_state_catches_a_branch_s_own_type(engine: Engine) -> None:
    engine.deploy(SHIPPING)
    _charge(engine)
    instance = engine.start("shipping", {"amount": 12, "refuse": "no"})
    engine.run_until_idle()
    failed = engine.get(instance.id)
    assert failed.state == "unpaid" and failed.status == "failed"
    assert failed.context["cause"] == {
        "type": "PaymentDeclined",
        "message": "no funds for 12",
        "state": "ship.pay.declined",
        "branch": "pay",
        "wrapper": "BranchFailed",
    }
    assert failed.error is not None
    assert (failed.error["type"], failed.error["message"]) == ("Unpaid", "no funds for 12")
    assert failed.error["state"] == "unpaid"


def test_running_succeeded_and_cancelled_instances_have_no_error(engine: Engine) -> None:
    engine.deploy(CHECKOUT)
    _charge(engine)
    running = engine.start("checkout", {})
    engine.run_until_idle()
    assert engine.get(running.id).error is None
    assert engine.send(running.id, "confirm").error is None
    cancelled = engine.start("checkout", {})
    engine.run_until_idle()
    assert engine.cancel(cancelled.id, "not wanted").error is None
    assert engine.get(cancelled.id).to_json()["error"] is None


def test_an_instance_failed_by_the_engine_keeps_that_error(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    """A timer that cannot be applied (its definition version is gone) fails the instance:
    the engine's error is the instance's error, at the `error` entry it records."""
    deploy("timed_task")
    instance = engine.start("timed_task", {})
    with engine.store.engine.begin() as conn:
        conn.execute(
            sa.update(instances_t).where(instances_t.c.id == instance.id).values(version=99)
        )
    clock.advance(120)
    engine.run_until_idle()
    failed = engine.get(instance.id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["type"] == "DefinitionNotFound"
    assert "version 99" in failed.error["message"]
    assert failed.error["state"] == "waiting"
    entry = _entry(engine, instance.id, failed.error["seq"])
    assert entry.kind == "error" and entry.data["type"] == "DefinitionNotFound"


def test_the_error_survives_a_new_engine(store_url: str, clock: Any) -> None:
    first = Engine(store_url, clock=clock)
    try:
        first.deploy(CHECKOUT)
        _charge(first)
        instance = first.start("checkout", {"refuse": "expired card"})
        first.run_until_idle()
        error = first.get(instance.id).error
    finally:
        first.close()
    second = Engine(store_url, clock=clock)
    try:
        assert second.get(instance.id).error == error
        assert error is not None and error["message"] == "card declined: expired card"
    finally:
        second.close()
