"""Consuming events from Redis Streams on a real server: each event applied once, even by a
consumer killed between its commit and its acknowledgement; bad messages set aside in the
dead-letter stream with the reason."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from broker_processes import Running, run_turnout
from waiting import until

from engine import Engine, UsageError
from engine.brokers import Consumer, open_source

EVENTS = 3_000
INSTANCES = 50
GROUP = "turnout"


def event_body(key: str, event: str = "tick", **data: Any) -> str:
    return json.dumps({"definition": "broker_counter", "key": key, "event": event, "data": data})


def fill(client: Any, stream: str, entries: list[dict[str, str]]) -> None:
    pipeline = client.pipeline(transaction=False)
    for fields in entries:
        pipeline.xadd(stream, fields)
    pipeline.execute()


def applied_numbers(engine: Engine, ids: list[str]) -> Counter[int]:
    """How often each event number was applied, read from the instances' histories."""
    return Counter(
        entry.data["n"]
        for instance in ids
        for entry in engine.history(instance)
        if entry.event == "tick"
    )


def pending_count(client: Any, stream: str) -> int:
    """How many messages the group has delivered and not seen acknowledged (0 before the
    consumer made the group)."""
    import redis

    try:
        return int(client.xpending(stream, GROUP)["pending"])
    except redis.ResponseError:
        return 0


def pending_ids(client: Any, stream: str) -> set[str]:
    """The `id` fields of the messages delivered and not yet acknowledged."""
    found = set()
    for pending in client.xpending_range(stream, GROUP, "-", "+", 10_000):
        for _, fields in client.xrange(stream, pending["message_id"], pending["message_id"]):
            found.add(fields[b"id"].decode())
    return found


def kill_between_commit_and_ack(
    consumer: Running, engine: Engine, ids: list[str], client: Any, stream: str
) -> set[str]:
    """Hold every write to Redis (CLIENT PAUSE WRITE) while the consumer is in a batch: its
    next XACK waits, after the commit of that message. Kill it there; the messages it had
    committed and not acknowledged."""
    caught: set[str] = set()

    def held_after_commit() -> bool:
        applied = {f"ev-{number}" for number in applied_numbers(engine, ids)}
        caught.update(applied & pending_ids(client, stream))
        return bool(caught)

    for _ in range(10):
        assert until(lambda: pending_count(client, stream) > 0, 60), consumer.output()
        client.client_pause(20_000, all=False)
        try:
            if until(held_after_commit, 5, every=0.1):
                consumer.kill()
                return caught
        finally:
            client.client_unpause()
    pytest.fail("the consumer was never caught between a commit and its acknowledgement")


def test_b_consumer_killed_between_commit_and_ack_applies_no_event_twice(
    broker_engine: Engine,
    store_url: str,
    redis_url: str,
    redis_client: Any,
    redis_stream: str,
    turnout_process: Callable[[Sequence[str], str], Running],
) -> None:
    engine = broker_engine
    keys = [f"k{number}" for number in range(INSTANCES)]
    ids = engine.start_many("broker_counter", ({} for _ in keys), keys=keys)
    fill(
        redis_client,
        redis_stream,
        [
            {"id": f"ev-{number}", "body": event_body(keys[number % INSTANCES], n=number)}
            for number in range(EVENTS)
        ],
    )
    url = f"{redis_url}?stream={redis_stream}&claim_idle=0"
    first = turnout_process(["consume", f"{url}&consumer=first", "--batch", "500"], store_url)
    caught = kill_between_commit_and_ack(first, engine, ids, redis_client, redis_stream)
    # Killed: what it committed is still pending in the group, to be delivered again.
    assert caught <= pending_ids(redis_client, redis_stream)

    second = turnout_process(["consume", f"{url}&consumer=second"], store_url)
    # Each tick applied is one change in the feed, after the starts'.
    done = lambda: engine.latest_change() >= INSTANCES + EVENTS  # noqa: E731
    assert until(done, 120, every=0.2), second.output()
    assert until(lambda: pending_count(redis_client, redis_stream) == 0, 30)
    assert second.stop(signal.SIGTERM) == 0, second.output()

    applied = applied_numbers(engine, ids)
    assert set(applied) == set(range(EVENTS))
    assert [number for number, times in applied.items() if times != 1] == []
    group = redis_client.xinfo_groups(redis_stream)[0]
    assert group["pending"] == 0 and group["lag"] == 0
    assert "Traceback" not in second.output()


def test_d_bad_messages_go_to_the_dead_letter_stream_with_the_reason(
    broker_engine: Engine, redis_url: str, redis_client: Any, redis_stream: str
) -> None:
    engine = broker_engine
    ids = engine.start_many("broker_counter", [{}, {}], keys=["k0", "k1"])
    fill(
        redis_client,
        redis_stream,
        [
            {"id": "not-json", "body": "{not json"},
            {"id": "a-list", "body": "[1, 2]"},
            {"id": "no-body"},
            {"id": "event-list", "body": json.dumps({"definition": "d", "key": "k", "event": [1]})},
            {"id": "nobody", "body": event_body("nobody")},
            {"id": "close-k0", "body": event_body("k0", "close")},
            {"id": "after-close", "body": event_body("k0", n=1)},
            {"id": "tick-k1", "body": event_body("k1", n=2)},
        ],
    )
    source = open_source(redis_url, stream=redis_stream, consumer="only")
    consumer = Consumer(engine, source, batch=3)
    try:
        while consumer.run_once(timeout=0):
            pass
    finally:
        source.close()
    assert (consumer.outcome.applied, consumer.outcome.rejected) == (2, 6)
    assert engine.get(ids[0]).state == "closed"
    assert [entry.data for entry in engine.history(ids[1]) if entry.event] == [{"n": 2}]
    dead = {
        fields[b"id"].decode(): fields for _, fields in redis_client.xrange(f"{redis_stream}.dead")
    }
    assert sorted(dead) == ["a-list", "after-close", "event-list", "no-body", "nobody", "not-json"]
    reasons = {name: fields[b"reason"].decode() for name, fields in dead.items()}
    assert reasons["not-json"].startswith("not an event message")
    assert reasons["a-list"] == "not an event message: the message is not a JSON object"
    assert reasons["event-list"] == "not an event message: definition, key and event must be text"
    assert reasons["nobody"].startswith("InstanceNotFound")
    assert reasons["after-close"].startswith("EventRejected")
    assert dead["not-json"][b"body"] == b"{not json"
    assert dead["nobody"][b"stream"].decode() == redis_stream
    assert pending_count(redis_client, redis_stream) == 0


def test_a_message_repeated_under_its_id_is_applied_once(
    broker_engine: Engine, redis_url: str, redis_client: Any, redis_stream: str
) -> None:
    engine = broker_engine
    [instance] = engine.start_many("broker_counter", [{}], keys=["k0"])
    body = event_body("k0", n=1)
    fill(redis_client, redis_stream, [{"id": "same", "body": body}] * 3 + [{"body": body}])
    source = open_source(f"{redis_url}?stream={redis_stream}")
    consumer = Consumer(engine, source)
    try:
        assert consumer.run_once(timeout=0) == 4
    finally:
        source.close()
    # Three under one id, one without an id (its entry id names it): two applied.
    assert len([entry for entry in engine.history(instance) if entry.event == "tick"]) == 2
    assert pending_count(redis_client, redis_stream) == 0


def test_unsettled_messages_come_again_and_are_claimed_from_a_dead_consumer(
    redis_url: str, redis_client: Any, redis_stream: str
) -> None:
    fill(redis_client, redis_stream, [{"body": "1"}, {"id": "given", "body": "2"}])
    url = f"{redis_url}?stream={redis_stream}"
    first = open_source(url, consumer="first", claim_idle=60)
    later = open_source(url, consumer="later", claim_idle=0)
    try:
        taken = first.receive(10, 0)
        assert [message.body for message in taken] == [b"1", b"2"]
        assert taken[0].id.startswith(f"{redis_stream}:") and taken[1].id == "given"
        # Not settled: the same consumer is given them again first.
        assert [message.id for message in first.receive(10, 0)] == [m.id for m in taken]
        # Another consumer takes over what has been idle longer than its claim_idle.
        claimed = later.receive(10, 0)
        assert [message.id for message in claimed] == [m.id for m in taken]
        for message in claimed:
            message.ack()
        assert first.receive(10, 0) == []
    finally:
        first.close()
        later.close()
    assert pending_count(redis_client, redis_stream) == 0
    # Both left the group's list of consumers on close, nothing being left with them.
    assert redis_client.xinfo_consumers(redis_stream, GROUP) == []


def test_redis_url_options_are_checked(redis_url: str) -> None:
    with pytest.raises(UsageError, match="unknown option 'strem'"):
        open_source(f"{redis_url}?strem=x")
    with pytest.raises(UsageError, match="claim_idle must be a number"):
        open_source(f"{redis_url}?claim_idle=soon")
    with pytest.raises(UsageError, match="unknown Redis option"):
        open_source(redis_url, color="blue")


def test_consume_command_answers_bad_urls_with_one_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/turnout.db"
    for url, said in [
        ("ftp://127.0.0.1/x", "no broker for the URL"),
        ("redis://127.0.0.1:6379/0?strem=x", "unknown option 'strem'"),
    ]:
        done = run_turnout("consume", url, "--db", database)
        assert done.returncode == 2, done.stderr
        assert said in done.stderr and "Traceback" not in done.stderr


def test_consume_command_applies_events_until_sigterm(
    broker_engine: Engine,
    store_url: str,
    redis_url: str,
    redis_client: Any,
    redis_stream: str,
    turnout_process: Callable[[Sequence[str], str], Running],
) -> None:
    [instance] = broker_engine.start_many("broker_counter", [{}], keys=["k0"])
    fill(
        redis_client,
        redis_stream,
        [{"id": f"e{n}", "body": event_body("k0", n=n)} for n in range(5)],
    )
    consumer = turnout_process(["consume", f"{redis_url}?stream={redis_stream}"], store_url)
    assert until(lambda: broker_engine.get(instance).revision >= 6, 60), consumer.output()
    assert consumer.stop(signal.SIGTERM) == 0, consumer.output()
    assert "consumer stopped: applied 5 event(s), set aside 0" in consumer.output()


def test_a_pending_message_trimmed_from_the_stream_is_let_go(
    redis_url: str, redis_client: Any, redis_stream: str
) -> None:
    fill(redis_client, redis_stream, [{"body": "1"}, {"body": "2"}])
    source = open_source(f"{redis_url}?stream={redis_stream}", consumer="only")
    try:
        taken = source.receive(10, 0)
        redis_client.xdel(redis_stream, taken[0].id.rpartition(":")[2])
        assert [message.body for message in source.receive(10, 0)] == [b"2"]
        assert pending_count(redis_client, redis_stream) == 1
    finally:
        source.close()
