"""The change feed relayed to a real NATS JetStream server, and events consumed from it:
every change arrives, each instance's in revision order, a batch sent again is dropped by
the server (same Nats-Msg-Id); an event delivered again after a consumer died between commit
and ack is not applied twice; messages that cannot be applied go to `<subject>.dead`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from broker_services import require_service
from relay_scenarios import (
    COUNTER,
    StartTurnout,
    check_delivered,
    event_body,
    interleaved_feed,
    relay_killed_and_restarted,
    relay_to_the_end,
)

from engine import Engine
from engine.brokers import Consumer, Message, open_publisher, open_source

SERVER = "nats://127.0.0.1:4222"


@pytest.fixture
def broker() -> Iterator[dict[str, str]]:
    """A stream and subject of its own on the local server, deleted after the test."""
    require_service("127.0.0.1", 4222, "NATS JetStream")
    tag = uuid.uuid4().hex[:12]
    names = {"stream": f"TEST_{tag}", "subject": f"test_{tag}.changes"}
    names["url"] = f"{SERVER}?stream={names['stream']}&subject={names['subject']}"
    yield names

    async def delete_stream() -> None:
        client = await nats.connect(SERVER)
        try:
            await client.jetstream().delete_stream(names["stream"])
        except nats.js.errors.NotFoundError:  # the test failed before making it
            pass
        finally:
            await client.close()

    asyncio.run(delete_stream())


@pytest.fixture
def feed_engine(store_url: str, clock: Any) -> Iterator[Engine]:
    engine = Engine(store_url, clock=clock)
    try:
        yield engine
    finally:
        engine.close()


def read_everything(url: str) -> list[tuple[str, bytes]]:
    """(message id, body) of every message on the subject, through a new durable consumer."""
    source = open_source(url, durable=f"reader_{uuid.uuid4().hex[:8]}")
    received = []
    try:
        while messages := source.receive(500, 1.0):
            for message in messages:
                received.append((message.id, message.body))
                message.ack()
    finally:
        source.close()
    return received


def publish_raw(broker: dict[str, str], messages: list[tuple[str, bytes]]) -> list[bool]:
    """Publish (Nats-Msg-Id, body) pairs with the bare client; whether each was a duplicate."""

    async def publish() -> list[bool]:
        client = await nats.connect(SERVER)
        try:
            jetstream = client.jetstream()
            acks = [
                await jetstream.publish(broker["subject"], body, headers={"Nats-Msg-Id": msg_id})
                for msg_id, body in messages
            ]
        finally:
            await client.close()
        return [bool(ack.duplicate) for ack in acks]

    return asyncio.run(publish())


def dead_letters(broker: dict[str, str]) -> list[tuple[dict[str, str], bytes]]:
    """(headers, body) of every message on `<subject>.dead`."""

    async def read() -> list[tuple[dict[str, str], bytes]]:
        client = await nats.connect(SERVER)
        try:
            subscription = await client.jetstream().pull_subscribe(
                f"{broker['subject']}.dead", stream=broker["stream"]
            )
            try:
                messages = await subscription.fetch(100, timeout=2)
            except nats.errors.TimeoutError:
                return []
            return [(dict(msg.headers or {}), msg.data) for msg in messages]
        finally:
            await client.close()

    return asyncio.run(read())


def test_relay_delivers_every_change_in_revision_order_and_the_server_drops_a_batch_sent_again(
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
        assert publisher.duplicates == len(batches[-1])
    finally:
        publisher.close()
    received = read_everything(broker["url"])
    assert check_delivered(changes, received) == []
    assert len(received) == len(changes)


@pytest.mark.slow
def test_a_relay_killed_mid_stream_and_restarted_loses_nothing_and_the_server_keeps_no_duplicate(
    feed_engine: Engine, store_url: str, broker: dict[str, str], turnout_process: StartTurnout
) -> None:
    changes = relay_killed_and_restarted(feed_engine, turnout_process, store_url, broker["url"])
    received = read_everything(broker["url"])
    assert check_delivered(changes, received) == []  # the batch sent again was dropped
    assert len(received) == len(changes)


def test_an_event_delivered_again_after_the_consumer_died_before_its_ack_is_applied_once(
    feed_engine: Engine, broker: dict[str, str]
) -> None:
    feed_engine.deploy(COUNTER)
    feed_engine.start("counter", {"count": 0}, key="k1")
    source = open_source(broker["url"], ack_wait=1.0)  # the stream is made here
    sent = [("evt-1", event_body("k1")), ("evt-1", event_body("k1")), ("evt-2", event_body("k1"))]
    assert publish_raw(broker, sent) == [False, True, False]  # the server knows evt-1 already
    messages = source.receive(10, 5.0)
    assert [message.id for message in messages] == ["evt-1", "evt-2"]
    first = messages[0]
    # Applied and committed, then the process died before acknowledging it.
    Consumer(feed_engine, source).handle(
        Message(first.id, first.body, ack=lambda: None, reject=first.reject)
    )
    source.close()
    assert feed_engine.get_by_key("counter", "k1").context["count"] == 1

    source = open_source(broker["url"], ack_wait=1.0)
    try:
        consumer = Consumer(feed_engine, source)
        for _ in range(5):  # both come again once their ack_wait has passed
            consumer.run_once(timeout=3.0)
            if consumer.outcome.applied == 2:
                break
        assert consumer.outcome.applied == 2
        assert source.receive(10, 1.5) == []  # acknowledged: never again
    finally:
        source.close()
    instance = feed_engine.get_by_key("counter", "k1")
    assert instance.context["count"] == 2
    assert instance.revision == 3


def test_a_message_left_unsettled_comes_again_with_the_next_receive(
    broker: dict[str, str],
) -> None:
    # What a consumer leaves when the database is away: the message neither acked nor
    # rejected. It must not wait for ack_wait (a minute here) to be tried again.
    source = open_source(broker["url"], ack_wait=60.0)
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
    source = open_source(broker["url"], ack_wait=1.0)
    publish_raw(broker, list(bodies.items()))
    try:
        consumer = Consumer(feed_engine, source)
        consumer.run_once(timeout=5.0)
        assert (consumer.outcome.applied, consumer.outcome.rejected) == (1, 3)
        assert source.receive(10, 1.5) == []  # set aside for good, not delivered again
    finally:
        source.close()
    dead = {
        headers["Turnout-Message-Id"]: (headers, body) for headers, body in dead_letters(broker)
    }
    assert set(dead) == {"bad-json", "bad-key", "bad-event"}
    assert {message_id: body for message_id, (_, body) in dead.items()} == {
        message_id: bodies[message_id] for message_id in dead
    }
    assert "not an event message" in dead["bad-json"][0]["Turnout-Reason"]
    assert "InstanceNotFound" in dead["bad-key"][0]["Turnout-Reason"]
    assert "EventRejected" in dead["bad-event"][0]["Turnout-Reason"]
    assert feed_engine.get_by_key("counter", "k1").context["count"] == 1


def test_an_unknown_option_in_the_url_is_a_usage_error() -> None:
    from statemachines.errors import UsageError

    with pytest.raises(UsageError, match="streem"):
        open_publisher(f"{SERVER}?streem=X")


def test_a_server_that_is_not_there_is_a_connection_error_naming_it_at_once() -> None:
    with pytest.raises(ConnectionError, match="NATS JetStream at 127.0.0.1:1"):
        open_source("nats://127.0.0.1:1?stream=NOWHERE")


def test_a_subject_another_stream_holds_is_a_connection_error_with_the_servers_reason(
    broker: dict[str, str],
) -> None:
    open_publisher(broker["url"]).close()  # the fixture's stream now holds the subject
    other = f"{SERVER}?stream=OTHER_{uuid.uuid4().hex[:12]}&subject={broker['subject']}"
    with pytest.raises(ConnectionError, match="overlap"):
        open_publisher(other)
