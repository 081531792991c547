"""The change feed to RabbitMQ and events from it, with aio-pika.

`amqp://guest:guest@host:5672/%2F?exchange=turnout.changes&queue=turnout.events` names the
server and vhost, a durable topic exchange and a durable queue (both declared when missing;
the queue bound to the exchange with `binding`). A publisher's exchange is `turnout.changes`
unless named; a source reads `turnout.events` and binds it only to an exchange named in its
URL (a consumer reading the relay's own changes as events would apply them again).

A publisher sends each change as a persistent message whose `message_id` is the change id,
routed by the change's definition name, with `mandatory` set: a change no queue would take
is an error, not a message dropped. It returns once RabbitMQ has confirmed every message of
the batch (publisher confirms), the batch written at once and confirmed together. A source
consumes with manual acknowledgements and `prefetch` messages in flight; a rejected message
is published with its reason to the dead-letter queue (`<queue>.dead`), then acknowledged.
RabbitMQ does not de-duplicate: a message sent again arrives again with the same id.

aio-pika rather than pika's blocking connection: pika confirms one message per round trip
(about 1,300 a second here) where aio-pika writes a batch and awaits its confirms together
(about 5,700); it speaks asyncio, so it runs on a private loop in a thread as nats-py does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from statemachines.errors import UsageError

from ..changes import Change
from .base import Message
from .loop_thread import LoopThread
from .settings import split_url

log = logging.getLogger("turnout.brokers")

REASON = "x-turnout-reason"  # header of a dead letter: why it was set aside

OPTIONS: dict[str, Any] = {
    "exchange": None,  # a durable topic exchange; "" is the default exchange
    "exchange_type": "topic",  # as it is declared: topic, direct, fanout or headers
    "queue": "",  # declared (and bound to a named exchange) when given; a source reads it
    "binding": "#",  # the binding key of `queue` on `exchange`
    "routing_key": "",  # of every published message; the change's definition by default
    "dead_letters": "",  # the queue of rejected messages; `<queue>.dead` by default
    "prefetch": 100,  # messages a source holds unacknowledged at once
    "timeout": 10.0,  # seconds to wait for the server on any one call
}


class _Connection:
    """A robust connection (it reconnects) with one confirming channel, on a private loop,
    the exchange and queue declared."""

    def __init__(self, url: str, options: dict[str, Any], *, exchange: str, queue: str) -> None:
        server, self.options = split_url(url, OPTIONS, options)
        if self.options["exchange"] is None:
            self.options["exchange"] = exchange
        self.queue_name: str = self.options["queue"] or queue
        try:
            self.exchange_type = aio_pika.ExchangeType(self.options["exchange_type"])
        except ValueError:
            kinds = ", ".join(kind.value for kind in aio_pika.ExchangeType)
            raise UsageError(f"exchange_type must be one of {kinds}") from None
        self.timeout: float = self.options["timeout"]
        self.loop = LoopThread("turnout-rabbitmq")
        self.queue: AbstractQueue | None = None
        self.loop.connect(self._connect(server), self.timeout, "RabbitMQ", server, 5672)

    async def _connect(self, server: str) -> None:
        self.connection: AbstractRobustConnection = await aio_pika.connect_robust(
            server, timeout=self.timeout
        )
        try:
            await self._declare()
        except BaseException:
            await self.connection.close()
            raise

    async def _declare(self) -> None:
        """The confirming channel, the exchange and the queue (bound), declared."""
        self.channel: AbstractChannel = await self.connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        name = self.options["exchange"]
        if name:
            self.exchange: AbstractExchange = await self.channel.declare_exchange(
                name, self.exchange_type, durable=True
            )
        else:
            self.exchange = self.channel.default_exchange
        if self.queue_name:
            self.queue = await self.channel.declare_queue(self.queue_name, durable=True)
            if name:
                await self.queue.bind(self.exchange, self.options["binding"])

    def close(self) -> None:
        try:
            self.loop.run(self.connection.close(), self.timeout)
        except Exception as exc:  # already gone: nothing left to close
            log.debug("RabbitMQ close: %s", exc)
        finally:
            self.loop.close()


class RabbitPublisher:
    """Publishes changes to the exchange, returning once RabbitMQ confirmed every one."""

    def __init__(self, url: str, **options: Any) -> None:
        self.connection = _Connection(url, options, exchange="turnout.changes", queue="")

    def publish(self, changes: list[Change]) -> None:
        connection = self.connection
        connection.loop.run(self._publish(changes), connection.timeout + len(changes) / 100)

    def _routing_key(self, change: Change) -> str:
        options = self.connection.options
        if options["routing_key"]:
            return str(options["routing_key"])
        if not options["exchange"]:  # the default exchange routes by queue name
            return self.connection.queue_name
        return change.definition

    async def _publish(self, changes: list[Change]) -> None:
        exchange = self.connection.exchange
        # The channel writes publishes in the order they were started (its lock is fair), so
        # one instance's changes reach a queue in revision order; their confirms come together.
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        change_body(change),
                        message_id=change.id,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    self._routing_key(change),
                    mandatory=True,
                )
                for change in changes
            )
        )

    def close(self) -> None:
        self.connection.close()


def change_body(change: Change) -> bytes:
    return json.dumps(change.to_json()).encode()


class RabbitSource:
    """Consumes the queue with manual acknowledgements; a message without a `message_id`
    (no idempotency key to apply it by) is set aside as soon as it arrives."""

    def __init__(self, url: str, **options: Any) -> None:
        self.connection = _Connection(url, options, exchange="", queue="turnout.events")
        connection = self.connection
        self.dead_letters = connection.options["dead_letters"] or f"{connection.queue_name}.dead"
        try:
            connection.loop.run(self._consume(), connection.timeout)
        except BaseException:
            connection.close()
            raise

    async def _consume(self) -> None:
        connection = self.connection
        assert connection.queue is not None
        await connection.channel.declare_queue(self.dead_letters, durable=True)
        await connection.channel.set_qos(prefetch_count=connection.options["prefetch"])
        self.buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.handed_out: list[AbstractIncomingMessage] = []
        await connection.queue.consume(self.buffer.put, no_ack=False)

    def receive(self, limit: int, timeout: float) -> list[Message]:
        """The next messages; those of the last call left unsettled (the consumer failed on
        them, the database away, say) go back to the queue first, to come again: RabbitMQ
        itself would return them only when this connection closes."""
        connection = self.connection
        taken = connection.loop.run(self._take(limit, timeout), timeout + connection.timeout)
        self.handed_out = taken
        return [self._message(incoming) for incoming in taken]

    async def _take(self, limit: int, timeout: float) -> list[AbstractIncomingMessage]:
        for incoming in self.handed_out:
            if not incoming.processed:
                try:
                    await incoming.nack(requeue=True)
                except Exception as exc:  # its channel is gone: RabbitMQ requeued it then
                    log.debug("RabbitMQ nack of %s: %s", incoming.message_id, exc)
        self.handed_out = []
        taken: list[AbstractIncomingMessage] = []
        try:
            first = await asyncio.wait_for(self.buffer.get(), timeout)
        except TimeoutError:
            return taken
        arrived = [first]
        while len(arrived) < limit and not self.buffer.empty():
            arrived.append(self.buffer.get_nowait())
        for incoming in arrived:
            if incoming.message_id:
                taken.append(incoming)
            else:
                await self._set_aside(incoming, "the message has no message_id")
        return taken

    def _message(self, incoming: AbstractIncomingMessage) -> Message:
        loop, timeout = self.connection.loop, self.connection.timeout

        def ack() -> None:
            loop.run(incoming.ack(), timeout)

        def reject(reason: str) -> None:
            loop.run(self._set_aside(incoming, reason), timeout * 2)

        return Message(id=str(incoming.message_id), body=incoming.body, ack=ack, reject=reject)

    async def _set_aside(self, incoming: AbstractIncomingMessage, reason: str) -> None:
        """Publish the message to the dead letters with its reason (confirmed), then ack it."""
        headers = dict(incoming.headers or {})
        headers[REASON] = reason
        dead = aio_pika.Message(
            incoming.body,
            message_id=incoming.message_id,
            content_type=incoming.content_type,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self.connection.channel.default_exchange.publish(
            dead, self.dead_letters, mandatory=True
        )
        await incoming.ack()

    def close(self) -> None:
        """Close the connection: messages delivered and not acknowledged go back to the queue."""
        self.connection.close()


def open_publisher(url: str, **options: Any) -> RabbitPublisher:
    return RabbitPublisher(url, **options)


def open_source(url: str, **options: Any) -> RabbitSource:
    return RabbitSource(url, **options)
