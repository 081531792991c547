"""History (append-only, gapless seq, clock times), listing with filters and paging, subscribe."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from engine import Engine, EventRejected, InvalidInput
from engine.engine import MAX_LIST_OFFSET

KINDS = {
    "start",
    "event",
    "task",
    "timer",
    "always",
    "retry",
    "stale",
    "compensate",
    "cancel",
    "error",
}


def test_history_starts_with_start_and_records_each_transition(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "a@x"})
    clock.advance(5)
    engine.send(inst.id, "confirm", {"by": "ops"})
    clock.advance(5)
    engine.send(inst.id, "close")
    history = engine.history(inst.id)
    assert history[0].kind == "start"
    assert history[0].to_state == "pending"
    moves = [(e.kind, e.event, e.from_state, e.to_state) for e in history[1:]]
    assert moves == [
        ("event", "confirm", "pending", "active"),
        ("event", "close", "active", "closed"),
    ]
    assert history[1].data == {"by": "ops"}
    assert [e.at for e in history] == [
        clock.now.replace(second=0),
        clock.now.replace(second=5),
        clock.now.replace(second=10),
    ]


def test_history_seq_counts_from_one_without_gaps_across_every_kind(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("retrying")
    deploy("saga")
    calls: list[int] = []

    @engine.task("remote.call")
    def flaky(data: Any) -> Any:
        calls.append(1)
        if len(calls) < 2:
            raise RuntimeError("once")
        return {"ok": True}

    engine.task("flights.book")(lambda data: {"pnr": 1})
    engine.task("flights.cancel")(lambda data: None)
    retrying = engine.start("retrying", {})
    saga = engine.start("saga", {})
    engine.run_until_idle()
    clock.advance(10)
    engine.run_until_idle()
    engine.cancel(saga.id, "changed plans")
    engine.run_until_idle()
    for instance_id in (retrying.id, saga.id):
        history = engine.history(instance_id)
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        assert {e.kind for e in history} <= KINDS
    assert "retry" in {e.kind for e in engine.history(retrying.id)}
    assert {"cancel", "compensate"} <= {e.kind for e in engine.history(saga.id)}


def test_history_is_append_only(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("counter")
    inst = engine.start("counter", {"count": 0})
    earlier = engine.history(inst.id)
    for _ in range(3):
        engine.send(inst.id, "increment")
        with pytest.raises(EventRejected):
            engine.send(inst.id, "nonsense")
        later = engine.history(inst.id)
        assert later[: len(earlier)] == earlier
        assert len(later) == len(earlier) + 1
        earlier = later


def test_history_of_rejected_event_gets_no_entry(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "a@x"})
    with pytest.raises(EventRejected):
        engine.send(inst.id, "close")
    assert [e.kind for e in engine.history(inst.id)] == ["start"]


def test_instances_filters_by_definition_state_status_and_key(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    deploy("counter")
    pending = engine.start("signup", {"email": "a@x"}, key="a")
    clock.advance(1)
    confirmed = engine.start("signup", {"email": "b@x"}, key="b")
    clock.advance(1)
    rejected = engine.start("signup", {"email": "c@x"}, key="c")
    clock.advance(1)
    counter = engine.start("counter", {"count": 0}, key="a")
    engine.send(confirmed.id, "confirm", {"by": "x"})
    engine.send(rejected.id, "reject")

    def ids(**filters: Any) -> list[str]:
        return [i.id for i in engine.instances(**filters)]

    assert ids() == [pending.id, confirmed.id, rejected.id, counter.id]
    assert ids(definition="signup") == [pending.id, confirmed.id, rejected.id]
    assert ids(definition="counter") == [counter.id]
    assert ids(state="pending") == [pending.id]
    assert ids(definition="signup", state="active") == [confirmed.id]
    assert ids(status="succeeded") == [rejected.id]
    assert ids(status="running") == [pending.id, confirmed.id, counter.id]
    assert ids(key="a") == [pending.id, counter.id]
    assert ids(definition="signup", key="a") == [pending.id]
    assert ids(definition="nothing") == []


def test_instances_are_listed_oldest_first_with_limit_and_offset(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    started = []
    for number in range(7):
        started.append(engine.start("counter", {"count": number}).id)
        clock.advance(1)
    assert [i.id for i in engine.instances(limit=3)] == started[:3]
    assert [i.id for i in engine.instances(limit=3, offset=3)] == started[3:6]
    assert [i.id for i in engine.instances(limit=3, offset=6)] == started[6:]
    assert engine.instances(limit=3, offset=7) == []
    # updating an old instance does not change its place
    engine.send(started[0], "increment")
    assert engine.instances(limit=1)[0].id == started[0]


def test_instances_started_in_the_same_instant_list_in_the_order_started(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")  # the fake clock stands still: every start has the same created_at
    started = [engine.start("counter", {"count": n}).id for n in range(20)]
    started += engine.start_many("counter", ({"count": n} for n in range(20)))
    assert [i.id for i in engine.instances(limit=40)] == started


def test_instances_default_limit_is_one_hundred(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    for number in range(105):
        engine.start("counter", {"count": number})
    assert len(engine.instances()) == 100
    assert len(engine.instances(offset=100)) == 5


def test_an_offset_past_ten_million_is_invalid_input_before_any_read(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    """Past MAX_LIST_OFFSET (and past what a database integer holds) an offset is refused by
    name, not handed to the database."""
    deploy("counter")
    engine.start("counter", {"count": 1})
    for offset in (MAX_LIST_OFFSET + 1, 2**63, 10**30):
        with pytest.raises(InvalidInput, match="offset"):
            engine.instances(offset=offset)
    assert engine.instances(offset=MAX_LIST_OFFSET) == []


def test_subscribers_get_each_entry_after_commit(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    received: list[tuple[Any, Any]] = []

    def on_entry(entry: Any) -> None:
        # the change is committed: reading it back shows the transition already applied
        received.append((entry, engine.get(entry.instance_id)))

    unsubscribe = engine.subscribe(on_entry)
    inst = engine.start("signup", {"email": "a@x"})
    engine.send(inst.id, "confirm", {"by": "ops"})
    entries = [entry for entry, _ in received]
    assert [e.seq for e in entries] == [e.seq for e in engine.history(inst.id)]
    assert all(e.instance_id == inst.id and e.definition == "signup" for e in entries)
    confirm_entry, seen_then = next((e, s) for e, s in received if e.event == "confirm")
    assert seen_then.state == "active"
    assert seen_then.revision == engine.get(inst.id).revision
    unsubscribe()
    engine.send(inst.id, "close")
    assert len(received) == len(entries)


def test_subscriber_that_raises_is_logged_and_the_call_succeeds(
    engine: Engine, deploy: Callable[[str], Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A failing subscriber does not fail the call (its change has committed), and its
    exception is logged by `turnout.engine` with the traceback, naming the entry."""
    deploy("signup")

    def broken(entry: Any) -> None:
        raise RuntimeError("subscriber bug")

    engine.subscribe(broken)
    with caplog.at_level(logging.ERROR, logger="turnout.engine"):
        inst = engine.start("signup", {"email": "a@x"})
    assert engine.get(inst.id).state == "pending"
    [record] = [r for r in caplog.records if r.name == "turnout.engine"]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert inst.id in record.getMessage()


def test_rejected_event_publishes_nothing(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "a@x"})
    received: list[Any] = []
    engine.subscribe(received.append)
    with pytest.raises(EventRejected):
        engine.send(inst.id, "close")
    assert received == []


def test_subscribers_see_task_and_timer_entries_from_run_until_idle(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    deploy("reminder")
    engine.task("jobs.work")(lambda data: {"ok": 1})
    received: list[Any] = []
    engine.subscribe(received.append)
    work = engine.start("one_task", {})
    remind = engine.start("reminder", {})
    clock.advance(600)
    engine.run_until_idle()
    kinds = {(e.instance_id, e.kind) for e in received}
    assert (work.id, "task") in kinds
    assert (remind.id, "timer") in kinds


def test_a_failing_subscriber_does_not_undo_the_change(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")

    def broken(entry: Any) -> None:
        raise RuntimeError("subscriber bug")

    engine.subscribe(broken)
    inst = engine.start("signup", {"email": "a@x"})
    try:
        engine.send(inst.id, "confirm", {"by": "x"})
    except RuntimeError:
        pass
    assert engine.get(inst.id).state == "active"
