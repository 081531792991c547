"""The processes of the soak test: starters, senders and workers on one database.

Handlers are pure functions of their input, so a replay through `statemachines.simulate` can
predict every instance from the events its history says were accepted. The poison definition's
handler gives, by order number, a result to convert, one that cannot be stored, an exception,
or a hang past the timeout.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import statemachines

DEFINITION = Path(__file__).parent / "soak_order.yaml"
POISON = Path(__file__).parent / "soak_poison.yaml"
CHILD = Path(__file__).parent / "soak_child.yaml"
PARENT = Path(__file__).parent / "soak_parent.yaml"
PARENT_EVERY = 10  # every tenth order (ending in 5) also starts a parent calling soak_child
POISON_EVERY = 50  # every 50th order also starts a poison instance
MAX_BACKLOG = 400  # orders waiting for a worker before the starters pause
POISON_HANG_SECONDS = 1.5  # past the poison task's 500ms timeout
DEEP_PAYLOAD_LEVELS = 900


class SoakError(Exception):
    """The failure `soak.process` raises for orders whose number is a multiple of seven."""


class SoakTransient(Exception):
    """A fault `soak.ship` raises for a quarter of the shipments: retried, every attempt fails."""


class SoakRefused(Exception):
    """A refusal `soak.ship` raises for a quarter of the shipments: not retried."""


def ship(order: dict[str, Any]) -> dict[str, Any]:
    """By the order's number: shipped, a transient fault (retried, then the child fails), a
    refusal (not retried; the child ends in its named failure), or another error (tried
    twice)."""
    kind = order["n"] // PARENT_EVERY % 4
    if kind == 1:
        raise SoakTransient(f"order {order['n']}: carrier busy")
    if kind == 2:
        raise SoakRefused(f"order {order['n']}: address refused")
    if kind == 3:
        raise LookupError(f"order {order['n']}: no such parcel")
    return {"parcel": order["n"]}


def check(order: dict[str, Any]) -> dict[str, Any]:
    return {"ok": order["n"] % 5 != 0}


def process(order: dict[str, Any]) -> dict[str, Any]:
    if order["n"] % 7 == 0:
        raise SoakError(f"order {order['n']} cannot be processed")
    return {"order": order["n"], "bumps": order.get("bumps") or 0}


def poison(order: dict[str, Any]) -> Any:
    """By the order's number: a result holding a datetime and a tuple (converted), a set
    (cannot be stored: the attempt fails), an exception, or a hang past the timeout."""
    kind = order["n"] // POISON_EVERY % 4
    if kind == 0:
        return {"stamp": datetime(2026, 1, 1, tzinfo=UTC), "echo": (order["n"], order["at"])}
    if kind == 1:
        return {"tags": {"a", "b"}}
    if kind == 2:
        raise SoakError(f"poison order {order['n']} raises")
    time.sleep(POISON_HANG_SECONDS)
    return {"late": True}


def simulated_results() -> dict[str, Any]:
    """The same handlers as answers for `statemachines.simulate` (a hang is a timeout)."""

    def simulated_process(order: dict[str, Any]) -> Any:
        try:
            return process(order)
        except SoakError as exc:
            return statemachines.Failure(str(exc), "SoakError")

    def simulated_poison(order: dict[str, Any]) -> Any:
        if order["n"] // POISON_EVERY % 4 == 3:
            return statemachines.Failure("timed out", "Timeout")
        try:
            return poison(order)
        except SoakError as exc:
            return statemachines.Failure(str(exc), "SoakError")

    def simulated_ship(order: dict[str, Any]) -> Any:
        try:
            return ship(order)
        except Exception as exc:
            return statemachines.Failure(str(exc), type(exc).__name__)

    return {
        "soak.check": check,
        "soak.process": simulated_process,
        "soak.poison": simulated_poison,
        "soak.ship": simulated_ship,
    }


def deep_payload() -> Any:
    """An event payload nested far past the storable depth: it must be refused."""
    value: Any = 0
    for _ in range(DEEP_PAYLOAD_LEVELS):
        value = [value]
    return value


def _engine(url: str) -> Any:
    from engine import Engine

    return Engine(url, lease=2)


def backlog(engine: Any) -> int:
    """How many orders wait in a task state (at most MAX_BACKLOG are counted)."""
    return sum(
        len(engine.instances(definition="soak_order", state=state, limit=MAX_BACKLOG))
        for state in ("check", "process")
    )


def starter(url: str, first: int, count: int, stop: Any) -> None:
    """Start orders first .. first+count-1; every tenth key is tried twice (DuplicateKey);
    every POISON_EVERY-th order also starts a poison instance. A starter pauses while
    MAX_BACKLOG orders wait for a worker: the soak is a steady load that the workers keep up
    with, not a flood that outgrows them on a slow machine."""
    from engine import DuplicateKey

    engine = _engine(url)
    try:
        for number in range(first, first + count):
            if stop.is_set():
                break
            while number % 20 == 0 and not stop.is_set() and backlog(engine) >= MAX_BACKLOG:
                stop.wait(0.1)
            engine.start("soak_order", {"n": number}, key=f"order-{number}")
            if number % POISON_EVERY == 0:
                engine.start("soak_poison", {"n": number}, key=f"poison-{number}")
            if number % PARENT_EVERY == 5:
                engine.start("soak_parent", {"n": number}, key=f"parent-{number}")
            if number % 10 == 0:
                try:
                    engine.start("soak_order", {"n": number}, key=f"order-{number}")
                except DuplicateKey:
                    pass
    finally:
        engine.close()


def sender(url: str, seed: int, stop: Any) -> None:
    """Send bumps (some with a repeated idempotency key), approvals, withdrawals and events
    that are rejected, to random instances, until `stop` is set; now and then a nudge (some
    nested too deep to be stored) or a drop to a waiting poison instance."""
    from engine import EventRejected, InstanceNotFound

    rng = random.Random(seed)
    engine = _engine(url)
    try:
        while not stop.is_set():
            if rng.random() < 0.05:
                poke_poison(engine, rng, seed)
                continue
            found = engine.instances(
                definition="soak_order", state="waiting", limit=50, offset=rng.randrange(0, 5) * 10
            )
            if not found:
                time.sleep(0.01)
                continue
            target = rng.choice(found)
            roll = rng.random()
            try:
                if roll < 0.6:
                    key = f"bump-{target.id}-{rng.randrange(3)}"  # repeats are applied once
                    engine.send(
                        target.id, "bump", {"value": rng.randrange(100)}, idempotency_key=key
                    )
                elif roll < 0.8:
                    engine.send(target.id, "approve", {"by": f"sender{seed}"})
                elif roll < 0.85:
                    engine.send(target.id, "withdraw")
                else:
                    engine.send(target.id, "no_such_event")
            except (EventRejected, InstanceNotFound):
                pass
    finally:
        engine.close()


def poke_poison(engine: Any, rng: random.Random, seed: int) -> None:
    """Nudge (or drop) a waiting poison instance; a payload too deep must be refused."""
    from engine import EventRejected, InstanceNotFound, InvalidInput

    found = engine.instances(definition="soak_poison", state="wait", limit=20)
    if not found:
        return
    target = rng.choice(found)
    roll = rng.random()
    try:
        if roll < 0.3:
            try:
                engine.send(target.id, "nudge", {"value": deep_payload()})
            except InvalidInput:
                return
            raise AssertionError(f"a {DEEP_PAYLOAD_LEVELS}-level payload was accepted")
        if roll < 0.95:
            engine.send(target.id, "nudge", {"value": rng.randrange(100)})
        else:
            engine.send(target.id, "drop", {"by": f"sender{seed}"})
    except (EventRejected, InstanceNotFound):
        pass


def worker(url: str, stop_file: str) -> None:
    """Run soak tasks until `stop_file` exists."""
    from stopping import stop_when_file_exists

    engine = _engine(url)
    engine.task("soak.check")(check)
    engine.task("soak.process")(process)
    engine.task("soak.poison")(poison)
    engine.task("soak.ship")(ship)
    try:
        # Batching on, eight tasks in hand: the results of several instances share a
        # transaction, and a SIGKILL lands in the middle of batches.
        engine.work(
            concurrency=8,
            batch=8,
            linger=0.005,
            stop=stop_when_file_exists(stop_file),
            poll_interval=0.02,
        )
    finally:
        engine.close()
