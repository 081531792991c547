"""The change feed relayed to a real RabbitMQ server, and events consumed from it: every
change arrives, each instance's in revision order, and a batch sent again arrives again with
the same message ids (RabbitMQ does not de-duplicate); an event delivered twice, or again
after a consumer died between commit and ack, is applied once; messages that cannot be
applied go to `<queue>.dead` with the reason."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest
from broker_services import require_service
from relay_scenarios import (
    COUNTER,
    KILLED_BATCH,
    StartTurnout,
    check_delivered,
    event_body,
    interleaved_feed,
    relay_killed_and_restarted,
    relay_to_the_end,
)

from engine import Engine
from engine.brokers import Consumer, Message, open_publisher, open_source

SERVER = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture
def broker() -> Iterator[dict[str, str]]:
    """An exchange and a queue of their own on the local server, deleted after the test."""
    require_service("127.0.0.1", 5672, "RabbitMQ")
    tag = uuid.uuid4().hex[:12]
    names = {"exchange": f"test_{tag}.changes", "queue": f"test_{tag}.events"}
    names["url"] = f"{SERVER}?exchange={names['exchange']}&queue={names['queue']}"
    yield names

    async def delete() -> None:
        connection = await aio_pika.connect(SERVER)
        try:
            channel = await connection.channel()
            for queue in (names["queue"], f"{names['queue']}.dead"):
                await channel.queue_delete(queue)
            await channel.exchange_delete(names["exchange"])
        finally:
            await connection.close()

    asyncio.run(delete())


@pytest.fixture
def feed_engine(store_url: str, clock: Any) -> Iterator[Engine]:
    engine = Engine(store_url, clock=clock)
    try:
        yield engine
    finally:
        engine.close()


def read_everything(url: str) -> list[tuple[str, bytes]]:
    """(message id, body) of every message in the queue, each acknowledged."""
    source = open_source(url)
    received = []
    try:
        while messages := source.receive(500, 1.0):
            for message in messages:
                received.append((message.id, message.body))
                message.ack()
    finally:
        source.close()
    return received


def publish_raw(broker: dict[str, str], messages: list[tuple[str, bytes]]) -> None:
    """Publish (message_id, body) pairs straight to the queue with the bare client."""

    async def publish() -> None:
        connection = await aio_pika.connect(SERVER)
        try:
            channel = await connection.channel()
            for message_id, body in messages:
                message = aio_pika.Message(body, message_id=message_id)
                await channel.default_exchange.publish(message, broker["queue"])
        finally:
            await connection.close()

    asyncio.run(publish())


def dead_letters(broker: dict[str, str]) -> list[tuple[str, dict[str, Any], bytes]]:
    """(message id, headers, body) of every message in `<queue>.dead`."""

    async def read() -> list[tuple[str, dict[str, Any], bytes]]:
        connection = await aio_pika.connect(SERVER)
        try:
            channel = await connection.channel()
            queue = await channel.get_queue(f"{broker['queue']}.dead")
            found = []
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                found.append((str(message.message_id), dict(message.headers), message.body))
            return found
        finally:
            await connection.close()

    return asyncio.run(read())


def test_relay_delivers_every_change_in_revision_order_and_a_batch_sent_again_only_repeats_ids(
    feed_engine: Engine, broker: dict[str, str]
) -> None:
    changes = interleaved_feed(feed_engine, instances=6, events=50)
    publisher = open_publisher(broker["url"])
    try:
        batches = relay_to_the_end(feed_engine, publisher, batch=64)
        assert len(batches) == 5
        # The relay died after the broker took its last batch, before saving its cursor:
        # restarted, it publishes that batch again.
        publisher.publish(batches[-1])
    finally:
        publisher.close()
    received = read_everything(broker["url"])
    again = check_delivered(changes, received)
    assert sorted(again) == sorted(change.id for change in batches[-1])
    assert len(received) == len(changes) + len(batches[-1])


def test_a_change_no_queue_takes_fails_the_publish_instead_of_being_dropped(
    feed_engine: Engine, broker: dict[str, str]
) -> None:
    changes = interleaved_feed(feed_engine, instances=1, events=1)
    publisher = open_publisher(f"{SERVER}?exchange={broker['exchange']}")  # nothing bound
    try:
        with pytest.raises(aio_pika.exceptions.PublishError):
            publisher.publish(changes)
    finally:
        publisher.close()


@pytest.mark.slow
def test_a_relay_killed_mid_stream_and_restarted_loses_nothing_and_repeats_at_most_a_batch(
    feed_engine: Engine, store_url: str, broker: dict[str, str], turnout_process: StartTurnout
) -> None:
    changes = relay_killed_and_restarted(feed_engine, turnout_process, store_url, broker["url"])
    received = read_everything(broker["url"])
    again = check_delivered(changes, received)
    assert len(again) <= KILLED_BATCH  # the batch in flight when it was killed, same ids
    assert len(received) == len(changes) + len(again)


def test_an_event_delivered_twice_or_again_after_a_crash_before_its_ack_is_applied_once(
    feed_engine: Engine, broker: dict[str, str]
) -> None:
    feed_engine.deploy(COUNTER)
    feed_engine.start("counter", {"count": 0}, key="k1")
    source = open_source(broker["url"])  # the queue is declared here
    publish_raw(
        broker,
        [("evt-1", event_body("k1")), ("evt-1", event_body("k1")), ("evt-2", event_body("k1"))],
    )
    messages = source.receive(10, 5.0)
    assert [message.id for message in messages] == ["evt-1", "evt-1", "evt-2"]
    first = messages[0]
    # Applied and committed, then the process died before acknowledging it.
    Consumer(feed_engine, source).handle(
        Message(first.id, first.body, ack=lambda: None, reject=first.reject)
    )
    source.close()
    assert feed_engine.get_by_key("counter", "k1").context["count"] == 1

    source = open_source(broker["url"])
    try:
        consumer = Consumer(feed_engine, source)
        while consumer.run_once(timeout=1.0):
            pass
        assert consumer.outcome.applied == 3  # all three settled, one of them a change
        assert source.receive(10, 0.5) == []
    finally:
        source.close()
    instance = feed_engine.get_by_key("counter", "k1")
    assert instance.context["count"] == 2
    assert instance.revision == 3


def test_a_message_left_unsettled_comes_again_with_the_next_receive(
    broker: dict[str, str],
) -> None:
    # What a consumer leaves when the database is away: the message neither acked nor
    # rejected. RabbitMQ would keep it on this connection for as long as it lives.
    source = open_source(broker["url"])
    try:
        publish_raw(broker, [("evt-1", event_body("k1")), ("evt-2", event_body("k1"))])
        first = source.receive(10, 5.0)
        assert [message.id for message in first] == ["evt-1", "evt-2"]
        first[1].ack()
        again = source.receive(10, 5.0)
        assert [message.id for message in again] == ["evt-1"]
        again[0].ack()
        assert source.receive(10, 0.5) == []
    finally:
        source.close()


def test_messages_that_cannot_be_applied_go_to_the_dead_letters_with_the_reason(
    feed_engine: Engine, broker: dict[str, str]
) -> None:
    feed_engine.deploy(COUNTER)
    feed_engine.start("counter", {"count": 0}, key="k1")
    bodies = {
        "bad-json": b"{not json",
        "bad-key": event_body("nobody"),
        "bad-event": event_body("k1", event="nope"),
        "good": event_body("k1"),
    }
    source = open_source(broker["url"])
    publish_raw(broker, list(bodies.items()))
    try:
        consumer = Consumer(feed_engine, source)
        while consumer.run_once(timeout=1.0):
            pass
        assert (consumer.outcome.applied, consumer.outcome.rejected) == (1, 3)
    finally:
        source.close()
    dead = {message_id: (headers, body) for message_id, headers, body in dead_letters(broker)}
    assert set(dead) == {"bad-json", "bad-key", "bad-event"}
    assert {message_id: body for message_id, (_, body) in dead.items()} == {
        message_id: bodies[message_id] for message_id in dead
    }
    assert "not an event message" in dead["bad-json"][0]["x-turnout-reason"]
    assert "InstanceNotFound" in dead["bad-key"][0]["x-turnout-reason"]
    assert "EventRejected" in dead["bad-event"][0]["x-turnout-reason"]
    assert read_everything(broker["url"]) == []  # acknowledged: not in the queue any more
    assert feed_engine.get_by_key("counter", "k1").context["count"] == 1


def test_an_option_of_the_wrong_type_is_a_usage_error() -> None:
    from statemachines.errors import UsageError

    with pytest.raises(UsageError, match="prefetch"):
        open_source(f"{SERVER}?prefetch=lots")
    with pytest.raises(UsageError, match="exchange_type must be one of"):
        open_publisher(f"{SERVER}?exchange_type=round-robin")


def test_a_server_that_is_not_there_is_a_connection_error_naming_it() -> None:
    with pytest.raises(ConnectionError, match="RabbitMQ at 127.0.0.1:1"):
        open_publisher("amqp://guest:guest@127.0.0.1:1/%2F")
