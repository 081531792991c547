"""Changes relayed per second to NATS JetStream and to RabbitMQ through `Relay`, each beside
the bare client publishing the same messages with the same confirmation discipline.

The feed is 5,000 changes (instances started in bulk) on SQLite, and on PostgreSQL when a
URL is set. The relay reads it in batches of 500,
publishes each batch and waits for every acknowledgement before saving its cursor; the bare
client (nats-py, aio-pika on `asyncio.run`) publishes the same bodies with the same message
ids in batches of 500, awaiting every acknowledgement of a batch before the next, with no
database and no thread between it and its loop. Each repetition gets a fresh stream or
queue (JetStream would otherwise drop the second as duplicates), deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from uuid import uuid4

from engine import Engine
from engine.brokers import Publisher, Relay, open_publisher
from engine.changes import Change

HERE = Path(__file__).parent
BATCH = 500
NATS = os.environ.get("TURNOUT_BENCH_NATS_URL", "nats://127.0.0.1:4222")
AMQP = os.environ.get("TURNOUT_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@dataclass
class Measured:
    broker: str
    database: str
    relay: float  # changes/s through Relay
    bare: float  # the same messages/s by the bare client
    client: str


def reachable(url: str, port: int) -> bool:
    where = urlsplit(url)
    try:
        socket.create_connection((where.hostname or "127.0.0.1", where.port or port), 2).close()
    except OSError:
        return False
    return True


def feed(url: str, count: int) -> tuple[Engine, list[Change]]:
    """An engine on an empty database whose feed holds `count` changes, one start each."""
    engine = Engine(url)
    engine.deploy(HERE / "definitions" / "toggle.yaml")
    engine.start_many("bench_toggle", ({} for _ in range(count)), batch=1000)
    changes: list[Change] = []
    while len(changes) < count:
        changes += engine.changes(changes[-1].position if changes else 0, 10_000)
    return engine, changes


def relay_rate(engine: Engine, publisher: Publisher) -> float:
    """Changes/s of one relay (a new cursor) through the whole feed."""
    relay = Relay(engine, publisher, f"bench-{uuid4().hex}", batch=BATCH)
    began = time.perf_counter()
    while relay.run_once():
        pass
    return relay.sent / (time.perf_counter() - began)


def messages(changes: list[Change]) -> list[tuple[Change, bytes]]:
    return [(change, json.dumps(change.to_json()).encode()) for change in changes]


def batches(items: list[tuple[Change, bytes]]) -> list[list[tuple[Change, bytes]]]:
    return [items[start : start + BATCH] for start in range(0, len(items), BATCH)]


def nats_figures(engine: Engine, changes: list[Change], repeats: int, database: str) -> Measured:
    import nats

    bodies = messages(changes)

    async def bare(stream: str, subject: str) -> float:
        client = await nats.connect(NATS)
        jetstream = client.jetstream()
        await jetstream.add_stream(name=stream, subjects=[subject])
        try:
            began = time.perf_counter()
            for batch in batches(bodies):
                acks = [
                    await jetstream.publish_async(
                        subject, body, stream=stream, headers={"Nats-Msg-Id": change.id}
                    )
                    for change, body in batch
                ]
                await asyncio.gather(*acks)
            return len(bodies) / (time.perf_counter() - began)
        finally:
            await jetstream.delete_stream(stream)
            await client.close()

    async def delete(stream: str) -> None:
        client = await nats.connect(NATS)
        await client.jetstream().delete_stream(stream)
        await client.close()

    def relayed() -> float:
        stream, subject = f"BENCH_{uuid4().hex}", f"bench_{uuid4().hex}.changes"
        publisher = open_publisher(f"{NATS}?stream={stream}&subject={subject}")
        try:
            return relay_rate(engine, publisher)
        finally:
            publisher.close()
            asyncio.run(delete(stream))

    def bare_rate() -> float:
        return asyncio.run(bare(f"BENCH_{uuid4().hex}", f"bench_{uuid4().hex}.changes"))

    relay, bare_client = medians(relayed, bare_rate, repeats)
    return Measured("NATS JetStream", database, relay, bare_client, "nats-py")


def rabbitmq_figures(
    engine: Engine, changes: list[Change], repeats: int, database: str
) -> Measured:
    import aio_pika

    bodies = messages(changes)

    async def bare(exchange_name: str, queue_name: str) -> float:
        connection = await aio_pika.connect(AMQP)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.declare_exchange(
                exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(queue_name, durable=True)
            await queue.bind(exchange, "#")
            began = time.perf_counter()
            for batch in batches(bodies):
                await asyncio.gather(
                    *(
                        exchange.publish(
                            aio_pika.Message(
                                body,
                                message_id=change.id,
                                content_type="application/json",
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            ),
                            change.definition,
                            mandatory=True,
                        )
                        for change, body in batch
                    )
                )
            return len(bodies) / (time.perf_counter() - began)
        finally:
            await delete_on(connection, exchange_name, queue_name)

    async def delete_on(connection: aio_pika.abc.AbstractConnection, *names: str) -> None:
        exchange_name, queue_name = names
        channel = await connection.channel()
        await channel.queue_delete(queue_name)
        await channel.exchange_delete(exchange_name)
        await connection.close()

    async def delete(exchange_name: str, queue_name: str) -> None:
        await delete_on(await aio_pika.connect(AMQP), exchange_name, queue_name)

    def relayed() -> float:
        exchange, queue = f"bench_{uuid4().hex}", f"bench_{uuid4().hex}"
        publisher = open_publisher(f"{AMQP}?exchange={exchange}&queue={queue}")
        try:
            return relay_rate(engine, publisher)
        finally:
            publisher.close()
            asyncio.run(delete(exchange, queue))

    def bare_rate() -> float:
        return asyncio.run(bare(f"bench_{uuid4().hex}", f"bench_{uuid4().hex}"))

    relay, bare_client = medians(relayed, bare_rate, repeats)
    return Measured("RabbitMQ", database, relay, bare_client, "aio-pika")


def medians(
    relayed: Callable[[], float], bare: Callable[[], float], repeats: int
) -> tuple[float, float]:
    """Median relay and bare rates, the two alternating so drift on the machine hits both."""
    relays, bares = [], []
    for _ in range(repeats):
        relays.append(relayed())
        bares.append(bare())
    return statistics.median(relays), statistics.median(bares)


def measure(
    workdir: Path, repeats: int, postgres: str | None = None, count: int = 5000
) -> tuple[list[Measured], list[str]]:
    """The figures of each broker that is running, on SQLite and on PostgreSQL when given,
    and the names of the brokers that are not running."""
    brokers = []
    missing = []
    if reachable(NATS, 4222):
        brokers.append(nats_figures)
    else:
        missing.append(f"NATS JetStream ({NATS})")
    if reachable(AMQP, 5672):
        brokers.append(rabbitmq_figures)
    else:
        missing.append(f"RabbitMQ ({AMQP.split('@')[-1]})")
    measured = []
    engine, changes = feed(f"sqlite:///{workdir}/relay-{uuid4().hex}.db", count)
    try:
        measured += [figures(engine, changes, repeats, "SQLite") for figures in brokers]
    finally:
        engine.close()
    if postgres and brokers:
        from .contention import drop_schema, fresh_schema

        url, schema = fresh_schema(postgres)
        try:
            engine, changes = feed(url, count)
            try:
                measured += [figures(engine, changes, repeats, "PostgreSQL") for figures in brokers]
            finally:
                engine.close()
        finally:
            drop_schema(postgres, schema)
    return measured, missing
