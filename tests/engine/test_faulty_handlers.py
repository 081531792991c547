"""Handlers that misbehave: raise, return something that is not JSON or is huge, or hang.

Each ends as a clear failed attempt; the worker carries on with other work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from engine import Engine


def _failure(engine: Engine, instance_id: str) -> dict[str, Any]:
    entry = next(e for e in engine.history(instance_id) if e.event == "failed")
    return dict(entry.data["error"])


def test_handler_that_raises_fails_the_attempt_with_its_type_and_message(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")

    @engine.task("jobs.work")
    def explode(value: Any) -> Any:
        raise LookupError("no such customer")

    inst = engine.start("one_task", {})
    engine.run_until_idle()
    assert engine.get(inst.id).state == "broken"
    assert _failure(engine, inst.id) == {"type": "LookupError", "message": "no such customer"}


def test_handler_returning_something_that_is_not_json_fails_the_attempt(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    engine.task("jobs.work")(lambda value: {"when": object()})
    inst = engine.start("one_task", {})
    engine.run_until_idle()
    assert engine.get(inst.id).state == "broken"
    error = _failure(engine, inst.id)
    assert error["type"] == "ResultError"
    assert "not a JSON value" in error["message"]
    assert engine.get(inst.id).context == {}


def test_handler_returning_a_huge_value_fails_the_attempt_with_the_size_limit(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    engine.task("jobs.work")(lambda value: {"blob": "x" * 2_000_000})
    inst = engine.start("one_task", {})
    engine.run_until_idle()
    assert engine.get(inst.id).state == "broken"
    error = _failure(engine, inst.id)
    assert error["type"] == "ResultError"
    assert "over the limit of 1000000" in error["message"]
    assert "blob" not in engine.get(inst.id).context


def test_hung_handler_fails_its_attempt_at_the_timeout_and_the_worker_goes_on(
    store_url: str, deploy_on: Callable[[Engine, str], Any]
) -> None:
    # Real time here: the worker loop runs in a thread, as in production.
    engine = Engine(store_url, lease=5)
    release = threading.Event()
    try:
        deploy_on(engine, "hanging")
        deploy_on(engine, "one_task")
        engine.task("remote.hangs")(lambda value: release.wait(60))
        engine.task("jobs.work")(lambda value: {"ok": True})
        hung = engine.start("hanging", {})
        stop = threading.Event()
        worker = threading.Thread(
            target=engine.work, kwargs={"stop": stop, "concurrency": 1, "poll_interval": 0.05}
        )
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while engine.get(hung.id).status == "running" and time.monotonic() < deadline:
                time.sleep(0.05)
            # the only slot was taken by the hung handler: a stuck worker would never run this
            quick = engine.start("one_task", {})
            while engine.get(quick.id).status == "running" and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            release.set()
            worker.join(30)
        assert engine.get(hung.id).state == "gave_up"
        assert _failure(engine, hung.id)["type"] == "Timeout"
        assert engine.get(quick.id).state == "finished"
        assert not worker.is_alive()
    finally:
        engine.close()
