"""The relay to Redis Streams on a real server: every change published at least once, with
its change id, in revision order per instance — across a `turnout relay` killed with
SIGKILL mid-stream and started again."""

from __future__ import annotations

import json
import random
import signal
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from broker_processes import Running, stream_messages
from waiting import until

from engine import Change, Engine
from engine.brokers import Relay, open_publisher

# Starts are written 1,000 per transaction, events one by one: most changes are starts, so
# the test stays quick on a busy PostgreSQL, and 200 instances have ten changes each.
STARTED = 8_000
TICKED_INSTANCES = 200
TICKS_EACH = 10
TOTAL = STARTED + TICKED_INSTANCES * TICKS_EACH


def every_change(engine: Engine) -> list[Change]:
    """The whole feed, page by page."""
    found: list[Change] = []
    while page := engine.changes(found[-1].position if found else 0, limit=5_000):
        found.extend(page)
    return found


def check_relayed(messages: list[tuple[str, dict[str, Any]]], feed: list[Change]) -> int:
    """Every change of the feed is in `messages` with its own body; a message seen twice is
    an exact repeat; each instance's changes come first in revision order. How many
    messages were repeats."""
    first: dict[str, dict[str, Any]] = {}
    order: dict[str, list[int]] = defaultdict(list)
    repeats = 0
    for message_id, body in messages:
        assert body["id"] == message_id
        if message_id in first:
            assert body == first[message_id], f"{message_id} sent twice with different bodies"
            repeats += 1
            continue
        first[message_id] = body
        order[body["instance_id"]].append(body["revision"])
    assert set(first) == {change.id for change in feed}, "a change was lost or invented"
    for change in feed:
        assert first[change.id] == json.loads(json.dumps(change.to_json()))
    for instance, revisions in order.items():
        assert revisions == sorted(revisions), f"{instance}'s changes out of order: {revisions}"
    return repeats


def test_a_killed_relay_loses_no_change_and_repeats_only_same_ids(
    broker_engine: Engine,
    store_url: str,
    redis_url: str,
    redis_client: Any,
    redis_stream: str,
    turnout_process: Callable[[Sequence[str], str], Running],
) -> None:
    engine = broker_engine
    url = f"{redis_url}?stream={redis_stream}"
    published = lambda: int(redis_client.xlen(redis_stream))  # noqa: E731
    engine.start_many("broker_counter", ({} for _ in range(STARTED)), batch=1_000)
    ticked = engine.instances(definition="broker_counter", limit=TICKED_INSTANCES)
    assert len(ticked) == TICKED_INSTANCES

    # First run, small batches: killed once some of the starts are out, not all.
    relay = turnout_process(["relay", url, "--batch", "50"], store_url)
    some_out = lambda: published() >= 1_000 or not relay.alive()  # noqa: E731
    assert until(some_out, 60, every=0.005), relay.output()
    relay.kill()
    assert 0 < published() < STARTED, "the relay was not killed mid-stream"

    # Second run, while events are sent: killed halfway through them.
    relay = turnout_process(["relay", url, "--batch", "100"], store_url)
    half = TICKS_EACH // 2
    for _ in range(half):
        for instance in ticked:
            engine.send(instance.id, "tick")
    assert until(lambda: published() >= STARTED + 500 or not relay.alive(), 60), relay.output()
    relay.kill()
    for _ in range(TICKS_EACH - half):
        for instance in ticked:
            engine.send(instance.id, "tick")
    assert published() < TOTAL

    # Third run: to the end, then stopped as a service is.
    relay = turnout_process(["relay", url], store_url)
    caught_up = lambda: engine.change_cursor("relay") == engine.latest_change()  # noqa: E731
    assert until(caught_up, 60), relay.output()
    assert relay.stop(signal.SIGTERM) == 0, relay.output()

    feed = every_change(engine)
    assert len(feed) == TOTAL
    messages = stream_messages(redis_client, redis_stream)
    repeats = check_relayed(messages, feed)
    assert len(messages) == TOTAL + repeats
    print(f"{TOTAL} changes relayed, {repeats} sent twice after the kills")


def test_an_instances_changes_are_published_in_revision_order(
    broker_engine: Engine, redis_url: str, redis_client: Any, redis_stream: str
) -> None:
    engine = broker_engine
    ids = engine.start_many("broker_counter", ({} for _ in range(20)))
    sends = [instance for instance in ids for _ in range(30)]
    random.Random(16).shuffle(sends)
    for instance in sends:
        engine.send(instance, "tick")
    publisher = open_publisher(f"{redis_url}?stream={redis_stream}")
    relay = Relay(engine, publisher, "ordered", batch=37)
    try:
        while relay.run_once():
            pass
    finally:
        publisher.close()
    revisions: dict[str, list[int]] = defaultdict(list)
    for _, body in stream_messages(redis_client, redis_stream):
        revisions[body["instance_id"]].append(body["revision"])
    assert set(revisions) == set(ids)
    first = revisions[ids[0]][0]
    for instance in ids:
        assert revisions[instance] == list(range(first, first + 31)), instance


def test_relay_of_some_definitions_and_trimmed_stream(
    broker_engine: Engine, redis_url: str, redis_client: Any, redis_stream: str
) -> None:
    """--definition's filter reaches the feed; `maxlen` keeps the stream about that long."""
    engine = broker_engine
    engine.deploy(
        "name: broker_other\ninitial: open\nstates:\n  open: {on: {shut: done}}\n"
        "  done: {final: succeeded}\n"
    )
    engine.start_many("broker_other", ({} for _ in range(3)))
    engine.start_many("broker_counter", ({} for _ in range(2_000)))
    publisher = open_publisher(f"{redis_url}?stream={redis_stream}&maxlen=500")
    relay = Relay(engine, publisher, "counters", batch=200, definitions=["broker_counter"])
    try:
        while relay.run_once():
            pass
    finally:
        publisher.close()
    assert relay.sent == 2_000
    assert 500 <= redis_client.xlen(redis_stream) < 2_000
    bodies = [body for _, body in stream_messages(redis_client, redis_stream)]
    assert {body["definition"] for body in bodies} == {"broker_counter"}


def test_relay_command_runs_until_sigint_and_exits_0(
    broker_engine: Engine,
    store_url: str,
    redis_url: str,
    redis_client: Any,
    redis_stream: str,
    turnout_process: Callable[[Sequence[str], str], Running],
) -> None:
    broker_engine.start_many("broker_counter", ({} for _ in range(10)))
    relay: Running = turnout_process(
        [
            "relay",
            f"{redis_url}?stream={redis_stream}",
            "--name",
            "mine",
            "--definition",
            "broker_counter",
        ],
        store_url,
    )
    assert until(lambda: redis_client.xlen(redis_stream) == 10, 60), relay.output()
    assert relay.stop(signal.SIGINT) == 0, relay.output()
    assert broker_engine.change_cursor("mine") == broker_engine.latest_change()
    assert "Traceback" not in relay.output()
    assert "relay stopped: published 10 change(s)" in relay.output()


def test_a_publish_redis_refused_moves_no_cursor(
    broker_engine: Engine, redis_url: str, redis_client: Any, redis_stream: str
) -> None:
    import redis

    broker_engine.start_many("broker_counter", ({} for _ in range(5)))
    away = open_publisher(f"redis://127.0.0.1:1/0?stream={redis_stream}")
    try:
        with pytest.raises(redis.ConnectionError):
            Relay(broker_engine, away, "patient").run_once()
    finally:
        away.close()
    assert broker_engine.change_cursor("patient") is None
    publisher = open_publisher(f"{redis_url}?stream={redis_stream}")
    try:
        assert Relay(broker_engine, publisher, "patient").run_once() == 5
    finally:
        publisher.close()
    assert redis_client.xlen(redis_stream) == 5
