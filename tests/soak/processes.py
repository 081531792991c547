"""The processes of the soak test: starters, senders and workers on one database.

Handlers are pure functions of their input, so a replay through `statemachines.simulate` can
predict every instance from the events its history says were accepted.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import statemachines

DEFINITION = Path(__file__).parent / "soak_order.yaml"


class SoakError(Exception):
    """The failure `soak.process` raises for orders whose number is a multiple of seven."""


def check(order: dict[str, Any]) -> dict[str, Any]:
    return {"ok": order["n"] % 5 != 0}


def process(order: dict[str, Any]) -> dict[str, Any]:
    if order["n"] % 7 == 0:
        raise SoakError(f"order {order['n']} cannot be processed")
    return {"order": order["n"], "bumps": order.get("bumps") or 0}


def simulated_results() -> dict[str, Any]:
    """The same handlers as answers for `statemachines.simulate`."""

    def simulated_process(order: dict[str, Any]) -> Any:
        try:
            return process(order)
        except SoakError as exc:
            return statemachines.Failure(str(exc), "SoakError")

    return {"soak.check": check, "soak.process": simulated_process}


def _engine(url: str) -> Any:
    from engine import Engine

    return Engine(url, lease=2)


def starter(url: str, first: int, count: int, stop: Any) -> None:
    """Start orders first .. first+count-1; every tenth key is tried twice (DuplicateKey)."""
    from engine import DuplicateKey

    engine = _engine(url)
    try:
        for n in range(first, first + count):
            if stop.is_set():
                break
            engine.start("soak_order", {"n": n}, key=f"order-{n}")
            if n % 10 == 0:
                try:
                    engine.start("soak_order", {"n": n}, key=f"order-{n}")
                except DuplicateKey:
                    pass
    finally:
        engine.close()


def sender(url: str, seed: int, stop: Any) -> None:
    """Send bumps (some with a repeated idempotency key), approvals, withdrawals and events
    that are rejected, to random instances, until `stop` is set."""
    from engine import EventRejected, InstanceNotFound

    rng = random.Random(seed)
    engine = _engine(url)
    try:
        while not stop.is_set():
            found = engine.instances(definition="soak_order", state="waiting", limit=50,
                                     offset=rng.randrange(0, 5) * 10)  # fmt: skip
            if not found:
                time.sleep(0.01)
                continue
            target = rng.choice(found)
            roll = rng.random()
            try:
                if roll < 0.6:
                    key = f"bump-{target.id}-{rng.randrange(3)}"  # repeats are applied once
                    engine.send(target.id, "bump", {"value": rng.randrange(100)},
                                idempotency_key=key)  # fmt: skip
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


def worker(url: str, stop_file: str) -> None:
    """Run soak tasks until `stop_file` exists."""
    from stopping import stop_when_file_exists

    engine = _engine(url)
    engine.task("soak.check")(check)
    engine.task("soak.process")(process)
    try:
        engine.work(concurrency=4, stop=stop_when_file_exists(stop_file), poll_interval=0.02)
    finally:
        engine.close()
