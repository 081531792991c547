"""Handlers that misbehave: raise, return something that is not JSON or is huge, or hang.

Each ends as a clear failed attempt; the worker carries on with other work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from waiting import until

from engine import Engine


def _failure(engine: Engine, instance_id: str) -> dict[str, Any]:
    entry = next(e for e in engine.history(instance_id) if e.event == "failed")
    return dict(entry.data["error"])


def test_handler_that_raises_is_logged_and_fails_the_attempt_with_its_traceback(
    engine: Engine, deploy: Callable[[str], Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The exception is logged by `turnout.worker` with its traceback, and the failed
    attempt's error keeps its type, message and the head of that traceback."""
    deploy("one_task")

    @engine.task("jobs.work")
    def explode(value: Any) -> Any:
        raise LookupError("no such customer")

    inst = engine.start("one_task", {})
    with caplog.at_level(logging.WARNING, logger="turnout.worker"):
        engine.run_until_idle()
    assert engine.get(inst.id).state == "broken"
    error = _failure(engine, inst.id)
    assert (error["type"], error["message"]) == ("LookupError", "no such customer")
    assert "in explode" in error["traceback"]
    assert error["traceback"].endswith("LookupError: no such customer")
    assert len(error["traceback"]) <= 2000
    [record] = [r for r in caplog.records if r.name == "turnout.worker"]
    assert record.exc_info is not None and record.exc_info[0] is LookupError
    assert inst.id in record.getMessage()


def test_instance_shows_the_last_error_with_its_traceback(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    """`get()` carries the newest error of the instance's history, even once it has been
    handled by a `failed` transition; an instance without errors has none."""
    deploy("one_task")
    engine.task("jobs.work")(lambda value: value["missing"])
    inst = engine.start("one_task", {})
    assert engine.get(inst.id).last_error is None
    engine.run_until_idle()
    last = engine.get(inst.id).last_error
    assert last is not None
    assert (last["type"], last["message"]) == ("KeyError", "'missing'")
    assert 'value["missing"]' in last["traceback"]
    assert engine.get(inst.id).to_json()["last_error"] == last


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
    assert error["message"] == "result.when is of type object, which JSON cannot hold"
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
            target=engine.work, kwargs={"stop": stop, "concurrency": 2, "poll_interval": 0.05}
        )
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while engine.get(hung.id).status == "running" and time.monotonic() < deadline:
                time.sleep(0.05)
            # the hung handler keeps its slot until it returns; the other slot runs this
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


def test_handlers_hung_past_their_timeout_keep_their_slots_until_they_return(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    """With concurrency 2, five tasks whose handlers hang past their timeout never have more
    than two handlers running: the attempts time out (on the engine's clock), yet the other
    tasks wait until a hung handler returns. Each probe's timer firing shows the worker has
    swept (and would have claimed) after the timeouts."""
    deploy("stuck_call")
    deploy("timed_task")
    release = threading.Event()
    lock = threading.Lock()
    counts = {"running": 0, "most": 0, "calls": 0}

    @engine.task("remote.stuck")
    def stuck(value: Any) -> Any:
        with lock:
            counts["running"] += 1
            counts["calls"] += 1
            counts["most"] = max(counts["most"], counts["running"])
        try:
            release.wait(60)
        finally:
            with lock:
                counts["running"] -= 1
        return {"ok": True}

    stuck_ids = [engine.start("stuck_call", {}).id for _ in range(5)]
    stop = threading.Event()
    worker = threading.Thread(
        target=engine.work, kwargs={"stop": stop, "concurrency": 2, "poll_interval": 0.02}
    )
    worker.start()
    try:
        assert until(lambda: counts["calls"] == 2)
        for _ in range(2):
            probe = engine.start("timed_task", {}).id
            clock.advance(120)
            assert until(lambda probe=probe: engine.get(probe).state == "work")
        most_while_hung = counts["most"]
        release.set()
        assert until(lambda: all(engine.get(i).status != "running" for i in stuck_ids))
        assert worker.is_alive()
    finally:
        stop.set()
        release.set()
        worker.join(30)
    assert most_while_hung == 2
    assert counts["most"] == 2
    assert counts["calls"] == 5
    states = sorted(engine.get(i).state for i in stuck_ids)
    assert states == ["finished"] * 3 + ["gave_up"] * 2
