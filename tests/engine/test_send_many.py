"""Batched event intake: `send_many` applies a list of events in one transaction per batch,
with an outcome per event in input order; no event's refusal or failure touches the others."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from engine import AsyncEngine, Engine, EventOutcome, InvalidInput, transaction
from engine.records import HistoryEntry


def _state(engine: Engine, instance_id: str) -> tuple[str, int, dict[str, Any]]:
    found = engine.get(instance_id)
    return found.state, found.revision, found.context


def test_a_mixed_batch_has_an_outcome_per_event_in_input_order(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    first = engine.start("signup", {"email": "ann@example.com"}, key="ann")
    second = engine.start("signup", {"email": "bob@example.com"})
    engine.send(second.id, "confirm", {"by": "mail"}, idempotency_key="mail-1")
    outcomes = engine.send_many(
        [
            (("signup", "ann"), "confirm", {"by": "support"}, "desk-7"),
            (second.id, "confirm", {"by": "mail"}, "mail-1"),  # applied before
            (second.id, "no_such_event"),
            ("0190c6a4-no-such-instance", "confirm"),
            (("signup", "nobody"), "confirm"),
            (first.id,),
            (first.id, "confirm", {"not": {1, 2}}),  # a set is no JSON value
        ]
    )
    assert [outcome.index for outcome in outcomes] == list(range(7))
    assert [outcome.outcome for outcome in outcomes] == [
        "applied",
        "duplicate",
        "rejected",
        "not_found",
        "not_found",
        "invalid",
        "invalid",
    ]
    applied, duplicate, rejected, unknown, no_key, short, unstorable = outcomes
    assert applied.instance is not None and applied.instance.state == "active"
    assert applied.instance.context["confirmed_by"] == "support"
    assert duplicate.instance == engine.get(second.id)
    assert rejected.allowed == engine.allowed(second.id)
    assert "no_such_event" in rejected.message
    assert "no-such-instance" in unknown.message and "signup/nobody" in no_key.message
    assert "(instance, event" in short.message and "set" in unstorable.message
    assert [outcome.ok for outcome in outcomes] == [True, True] + [False] * 5
    assert engine.get(first.id) == applied.instance
    assert applied.to_json()["instance"]["state"] == "active"
    assert rejected.to_json()["allowed"] == rejected.allowed


def test_events_to_one_instance_apply_in_order_each_on_what_the_last_left(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    counters = [engine.start("counter", {"count": 0}).id for _ in range(3)]
    events = [(counters[n % 3], "add", {"amount": n + 1}) for n in range(30)]
    events.insert(10, (counters[1], "stop"))
    events.append((counters[2], "increment", None, "once"))
    events.append((counters[2], "increment", None, "once"))
    outcomes = engine.send_many(events, batch=7)
    assert [outcome.index for outcome in outcomes] == list(range(len(events)))
    by_counter = {
        counter: [out for out, sent in zip(outcomes, events, strict=True) if sent[0] == counter]
        for counter in counters
    }
    # The second counter stopped at its fourth event: the ones after it are rejected.
    assert [o.outcome for o in by_counter[counters[1]]][:5] == ["applied"] * 3 + [
        "applied",
        "rejected",
    ]
    assert _state(engine, counters[0])[2] == {"count": sum(range(1, 31, 3))}
    assert _state(engine, counters[1])[0] == "stopped"
    assert _state(engine, counters[1])[2] == {"count": 2 + 5 + 8}
    assert _state(engine, counters[2])[2] == {"count": sum(range(3, 31, 3)) + 1}
    assert [o.outcome for o in outcomes[-2:]] == ["applied", "duplicate"]
    counts = [o.instance.context["count"] for o in by_counter[counters[0]]]
    assert counts == sorted(counts)  # each outcome shows the instance right after its event
    history = engine.history(counters[0])
    assert [entry.data for entry in history[1:]] == [{"amount": n} for n in range(1, 31, 3)]


def test_a_rejected_event_leaves_its_instance_unchanged_while_the_rest_apply(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    kept = engine.start("signup", {"email": "ann@example.com"})
    moved = engine.start("signup", {"email": "bob@example.com"})
    before, history = engine.get(kept.id), engine.history(kept.id)
    outcomes = engine.send_many([(kept.id, "suspend"), (moved.id, "confirm", {"by": "x"})])
    assert [o.outcome for o in outcomes] == ["rejected", "applied"]
    assert outcomes[0].instance == before
    assert engine.get(kept.id) == before and engine.history(kept.id) == history
    assert engine.get(moved.id).state == "active"


def test_an_event_whose_write_fails_is_rolled_back_alone(
    engine: Engine, deploy: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transaction, "MAX_CONTEXT_BYTES", 200)
    deploy("notes")
    notes = [engine.start("notes", {}).id for _ in range(2)]
    outcomes = engine.send_many(
        [
            (notes[0], "note", {"text": "first"}),
            (notes[0], "note", {"text": "x" * 300}, "too-big"),
            (notes[1], "note", {"text": "other"}),
            (notes[0], "note", {"text": "after"}),
            (notes[0], "note", {"text": "again"}, "too-big"),  # its first use failed
        ]
    )
    assert [o.outcome for o in outcomes] == ["applied", "invalid", "applied", "applied", "applied"]
    assert "over the limit of 200" in outcomes[1].message
    assert engine.get(notes[0]).context == {"last": "again"}
    assert [entry.data for entry in engine.history(notes[0])[1:]] == [
        {"text": "first"},
        {"text": "after"},
        {"text": "again"},
    ]
    assert engine.get(notes[1]).context == {"last": "other"}


@pytest.mark.postgres
def test_a_write_postgresql_refuses_fails_only_its_event(
    postgres_url: str, clock: Any, deploy_on: Callable[[Engine, str], Any], monkeypatch: Any
) -> None:
    """The refusal comes back only when the pipeline is read: the batch runs again with a
    savepoint per event, and only the refused one is rolled back."""
    remember = transaction.Transaction.remember_idempotency

    def refusing(tx: transaction.Transaction, instance_id: str, key: str, now: Any) -> None:
        remember(tx, instance_id, key, now)
        if key == "refused":  # a statement the server fails: division by zero
            tx.cursor.execute("SELECT 1 / (SELECT 0)")

    monkeypatch.setattr(transaction.Transaction, "remember_idempotency", refusing)
    with Engine(postgres_url, clock=clock) as engine:
        deploy_on(engine, "counter")
        counter = engine.start("counter", {"count": 0}).id
        outcomes = engine.send_many(
            [
                (counter, "increment"),
                (counter, "increment", None, "refused"),
                (counter, "increment", None, "fine"),
            ]
        )
        assert [o.outcome for o in outcomes] == ["applied", "invalid", "applied"]
        assert "division by zero" in outcomes[1].message
        assert engine.get(counter).context == {"count": 2}
        assert len(engine.history(counter)) == 3


def test_subscribers_see_each_applied_event_after_its_batch_commits(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    counters = [engine.start("counter", {"count": 0}).id for _ in range(2)]
    seen: list[tuple[str, int, int]] = []

    def subscriber(entry: HistoryEntry) -> None:  # what the database holds at that moment
        seen.append((entry.instance_id, entry.seq, engine.get(entry.instance_id).revision))

    engine.subscribe(subscriber)
    outcomes = engine.send_many(
        [(counters[0], "increment"), (counters[1], "nope"), (counters[0], "increment")]
    )
    assert [o.outcome for o in outcomes] == ["applied", "rejected", "applied"]
    final = engine.get(counters[0]).revision
    assert seen == [(counters[0], 2, final), (counters[0], 3, final)]


def test_batch_sizes_and_empty_lists(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("counter")
    counter = engine.start("counter", {"count": 0}).id
    assert engine.send_many([]) == []
    assert [o.outcome for o in engine.send_many([(counter, "increment")] * 5, batch=2)] == [
        EventOutcome.APPLIED
    ] * 5
    assert engine.get(counter).context == {"count": 5}
    for wrong in (0, -1, True, 1.5):
        with pytest.raises(InvalidInput, match="batch"):
            engine.send_many([(counter, "increment")], batch=wrong)  # type: ignore[arg-type]
    assert engine.get(counter).context == {"count": 5}


def test_batches_over_the_same_instances_in_opposite_orders_do_not_deadlock(
    store_url: str, deploy_on: Callable[[Engine, str], Any]
) -> None:
    with Engine(store_url) as engine:
        deploy_on(engine, "counter")
        counters = [engine.start("counter", {"count": 0}).id for _ in range(20)]
    failures: list[BaseException] = []

    def sender(order: list[str]) -> None:
        try:
            with Engine(store_url) as own:
                for _ in range(10):
                    outcomes = own.send_many([(counter, "increment") for counter in order])
                    assert all(outcome.outcome == "applied" for outcome in outcomes)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    threads = [
        threading.Thread(target=sender, args=(order,)) for order in (counters, counters[::-1])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with Engine(store_url) as engine:
        assert {engine.get(counter).context["count"] for counter in counters} == {20}


@pytest.mark.parametrize("locking", ["row", "optimistic"])
def test_a_batch_racing_single_events_on_the_same_instance_loses_none(
    store_url: str, deploy_on: Callable[[Engine, str], Any], locking: str
) -> None:
    with Engine(store_url) as engine:
        deploy_on(engine, "counter")
        counter = engine.start("counter", {"count": 0}).id
    failures: list[BaseException] = []

    def batches() -> None:
        with Engine(store_url, locking=locking) as own:
            for _ in range(20):
                outcomes = own.send_many([(counter, "increment")] * 10)
                assert all(outcome.outcome == "applied" for outcome in outcomes)

    def singles() -> None:
        with Engine(store_url, locking=locking) as own:
            for _ in range(100):
                own.send(counter, "increment")

    def guarded(run: Callable[[], None]) -> None:
        try:
            run()
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(run,)) for run in (batches, singles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with Engine(store_url) as engine:
        assert engine.get(counter).context == {"count": 300}
        assert [entry.seq for entry in engine.history(counter)] == list(range(1, 302))


def test_the_async_engine_sends_many_too(
    sqlite_url: str, deploy_on: Callable[[Engine, str], Any]
) -> None:
    async def scenario() -> None:
        async with AsyncEngine(sqlite_url) as engine:
            deploy_on(engine.sync, "counter")
            counter = (await engine.start("counter", {"count": 0})).id
            outcomes = await engine.send_many([(counter, "increment"), (counter, "increment")])
            assert [o.outcome for o in outcomes] == ["applied", "applied"]
            assert outcomes[-1].instance is not None
            assert outcomes[-1].instance.context == {"count": 2}

    asyncio.run(scenario())
