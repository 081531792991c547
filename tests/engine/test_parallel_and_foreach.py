"""Fan-out and fan-in: parallel regions (with sibling cancellation) and `foreach` items."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine import Engine, EventRejected


def test_parallel_state_enters_every_region(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("approvals")
    inst = engine.start("approvals", {})
    assert inst.state == "review"
    assert "review.legal.waiting" in inst.active
    assert "review.finance.waiting" in inst.active


def test_parallel_done_fires_when_every_region_has_finished(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("approvals")
    inst = engine.start("approvals", {})
    half = engine.send(inst.id, "legal_ok")
    assert half.state == "review"
    assert "review.legal.approved" in half.active
    assert "review.finance.waiting" in half.active
    done = engine.send(inst.id, "finance_ok")
    assert done.state == "accepted"
    assert done.status == "succeeded"


def test_event_is_taken_by_every_region_that_accepts_it(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("approvals")
    inst = engine.start("approvals", {})
    done = engine.send(inst.id, "approve_all")
    assert done.state == "accepted"


def test_allowed_inside_parallel_lists_region_and_outer_events(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("approvals")
    inst = engine.start("approvals", {})
    assert set(engine.allowed(inst.id)) == {
        "approve_all",
        "legal_ok",
        "finance_ok",
        "finance_no",
        "withdraw",
    }
    engine.send(inst.id, "legal_ok")
    allowed = set(engine.allowed(inst.id))
    assert "legal_ok" not in allowed
    assert {"finance_ok", "withdraw"} <= allowed


def test_failed_region_fails_the_parallel_state(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("approvals")
    inst = engine.start("approvals", {})
    failed = engine.send(inst.id, "finance_no")
    assert failed.state == "refused"
    assert failed.status == "failed"
    assert not any(path.startswith("review.") for path in failed.active)
    with pytest.raises(EventRejected):
        engine.send(inst.id, "legal_ok")


def test_outer_event_leaves_the_parallel_state_and_every_region(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("approvals")
    inst = engine.start("approvals", {})
    engine.send(inst.id, "legal_ok")
    gone = engine.send(inst.id, "withdraw")
    assert gone.state == "withdrawn"
    assert gone.active in ([], ["withdrawn"])


def test_parallel_tasks_fan_in_with_each_regions_last_result(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("shipping")
    engine.task("warehouse.pack")(lambda data: {"box": 3})
    engine.task("shipping.buy_label")(lambda data: "LBL-1")
    inst = engine.start("shipping", {})
    assert engine.run_until_idle() == 2
    done = engine.get(inst.id)
    assert done.state == "shipped"
    assert done.status == "succeeded"
    assert done.context["parcels"] == {"pack": {"box": 3}, "label": "LBL-1"}


def test_one_region_done_is_not_enough(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("shipping")
    engine.task("shipping.buy_label")(lambda data: "LBL-1")
    inst = engine.start("shipping", {})
    engine.run_until_idle()
    waiting = engine.get(inst.id)
    assert waiting.state == "ship"
    assert "ship.label.printed" in waiting.active


def test_failed_region_cancels_the_sibling_regions_pending_task(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("shipping")

    @engine.task("shipping.buy_label")
    def no_label(data: Any) -> Any:
        raise RuntimeError("carrier down")

    inst = engine.start("shipping", {})  # warehouse.pack has no handler: it stays pending
    engine.run_until_idle()
    failed = engine.get(inst.id)
    assert failed.state == "not_shipped"
    assert failed.status == "failed"
    assert engine.claim_tasks(["warehouse.pack"], "w1", 30) == []


def test_result_of_a_cancelled_sibling_task_is_stale(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("shipping")
    inst = engine.start("shipping", {})
    [pack] = engine.claim_tasks(["warehouse.pack"], "w1", 60)
    [label] = engine.claim_tasks(["shipping.buy_label"], "w2", 60)
    assert engine.fail_task(label.id, "w2", "carrier down") is True
    assert engine.get(inst.id).state == "not_shipped"
    assert engine.complete_task(pack.id, "w1", {"box": 1}) is False
    done = engine.get(inst.id)
    assert "box" not in done.context
    assert "stale" in [e.kind for e in engine.history(inst.id)]


def test_foreach_keeps_results_in_item_order_whatever_the_completion_order(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    recipients = ["a@x", "b@x", "c@x", "d@x", "e@x"]
    inst = engine.start("mailing", {"recipients": recipients})
    finished = 0
    while finished < len(recipients):
        claimed = engine.claim_tasks(["mail.send"], "w1", 60, limit=10)
        assert claimed
        for task in reversed(claimed):  # answer the later items first
            assert engine.complete_task(task.id, "w1", f"sent:{task.input['to']}") is True
            finished += 1
    done = engine.get(inst.id)
    assert done.state == "sent"
    assert done.context["receipts"] == [f"sent:{r}" for r in recipients]
    assert done.context["count"] == 5


def test_foreach_task_input_sees_item_and_index(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    seen: list[Any] = []

    @engine.task("mail.send")
    def send(data: Any) -> Any:
        seen.append(data)
        return data["position"]

    inst = engine.start("mailing", {"recipients": ["a", "b", "c"]})
    engine.run_until_idle()
    assert sorted(seen, key=lambda item: item["position"]) == [
        {"to": "a", "position": 0},
        {"to": "b", "position": 1},
        {"to": "c", "position": 2},
    ]
    assert engine.get(inst.id).context["receipts"] == [0, 1, 2]


def test_foreach_never_has_more_than_its_concurrency_claimable(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")  # concurrency: 2
    engine.start("mailing", {"recipients": [f"r{n}" for n in range(7)]})
    held: list[Any] = engine.claim_tasks(["mail.send"], "w1", 60, limit=10)
    assert len(held) == 2
    assert engine.claim_tasks(["mail.send"], "w2", 60, limit=10) == []
    seen_items = {t.input["position"] for t in held}
    while held:
        task = held.pop(0)
        engine.complete_task(task.id, "w1", "ok")
        more = engine.claim_tasks(["mail.send"], "w1", 60, limit=10)
        assert len(held) + len(more) <= 2
        held.extend(more)
        seen_items |= {t.input["position"] for t in more}
    assert seen_items == set(range(7))


def test_foreach_with_no_items_is_done_at_once(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    inst = engine.start("mailing", {"recipients": []})
    assert inst.state == "sent"
    assert inst.context["receipts"] == []
    assert inst.context["count"] == 0


def test_foreach_item_failure_fires_failed(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("mailing")

    @engine.task("mail.send")
    def send(data: Any) -> Any:
        if data["to"] == "bad":
            raise ValueError("mailbox does not exist")
        return "ok"

    inst = engine.start("mailing", {"recipients": ["a", "bad", "c"]})
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert done.state == "not_sent"
    assert done.status == "failed"


def test_foreach_concurrency_holds_under_a_threaded_worker(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    lock = threading.Lock()
    running = 0
    peak = 0

    @engine.task("mail.send")
    def send(data: Any) -> Any:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)  # long enough for a parallel worker thread to overlap
        with lock:
            running -= 1
        return data["to"]

    recipients = [f"r{n}" for n in range(6)]
    inst = engine.start("mailing", {"recipients": recipients})
    stop = threading.Event()
    worker = threading.Thread(target=engine.work, kwargs={"concurrency": 4, "stop": stop})
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while engine.get(inst.id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    done = engine.get(inst.id)
    assert done.state == "sent"
    assert done.context["receipts"] == recipients
    assert 1 <= peak <= 2


def test_event_goes_to_the_innermost_state_that_accepts_it_before_the_outer_one(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("nested_events")
    inst = engine.start("nested_events", {})
    poked = engine.send(inst.id, "poke")
    assert poked.state == "work"
    assert "work.left.poked" in poked.active
    interrupted = engine.send(inst.id, "poke")  # no region takes it now: the outer state does
    assert interrupted.state == "interrupted"
    assert interrupted.status == "failed"


def test_one_event_finishing_every_region_fires_done_on_the_parallel_state(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("nested_events")
    inst = engine.start("nested_events", {})
    engine.send(inst.id, "poke")
    done = engine.send(inst.id, "finish")
    assert done.state == "completed"
    assert done.status == "succeeded"


def test_foreach_without_concurrency_has_ten_items_claimable_at_a_time(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    """No `concurrency` written: ten items run at a time, the next one when one is done."""
    deploy("broadcast")
    inst = engine.start("broadcast", {"recipients": [f"r{n}" for n in range(25)]})
    held = engine.claim_tasks(["mail.send"], "w1", 60, limit=100)
    assert sorted(t.input for t in held) == sorted(f"r{n}" for n in range(10))
    engine.complete_task(held[0].id, "w1", "ok")
    assert [t.input for t in engine.claim_tasks(["mail.send"], "w1", 60, limit=100)] == ["r10"]
    assert engine.get(inst.id).state == "send"


def test_foreach_over_more_than_ten_thousand_items_fails_without_writing_a_task(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    """The items are counted before any task is written; the state's `failed` gets an
    ItemsError, recorded in the history like items that are not a list."""
    deploy("broadcast")
    inst = engine.start("broadcast", {"recipients": list(range(10_001))})
    assert (inst.state, inst.status) == ("not_sent", "failed")
    assert inst.context["reason"] == "foreach items has 10001 items, more than 10000"
    failed = engine.history(inst.id)[-1]
    step = (failed.kind, failed.event, failed.from_state, failed.to_state)
    assert step == ("task", "failed", "send", "not_sent")
    assert failed.data["error"]["type"] == "ItemsError"
    assert engine.claim_tasks(None, "w1", 60, limit=100) == []
