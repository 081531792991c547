"""The change feed to NATS JetStream and events from it, with nats-py.

`nats://[user:password@]host:4222?stream=TURNOUT&subject=turnout.changes` names the server,
the stream (created when missing, holding `subject` and its dead letters `subject.dead`) and
the subject: `turnout.changes` for a publisher, `turnout.events` for a source unless named
(a consumer reading the relay's own changes as events would apply them again).

A publisher sends each change with the header `Nats-Msg-Id` = the change id and waits for
every acknowledgement: JetStream drops a message whose id it has stored within its
duplicate window (two minutes unless the stream says otherwise), so a batch sent again by a
relay restarted within it is stored once. A source reads through a durable pull consumer
(`durable`, explicit acks): a message not acknowledged within `ack_wait` seconds comes again.

nats-py speaks only asyncio, so each publisher and source runs its own loop in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError

from ..changes import Change
from .base import Message
from .loop_thread import LoopThread
from .settings import split_url

log = logging.getLogger("turnout.brokers")

MSG_ID = "Nats-Msg-Id"
REASON = "Turnout-Reason"  # on a dead letter: why it was set aside
ORIGINAL_ID = "Turnout-Message-Id"  # on a dead letter: the id of the message set aside

OPTIONS: dict[str, Any] = {
    "stream": "TURNOUT",  # created with `subject` and `subject.dead` when missing
    "subject": "",  # where changes are published (turnout.changes) or events read (.events)
    "durable": "turnout",  # the durable consumer a source reads through
    "dead_letters": None,  # the subject of rejected messages; `<subject>.dead` by default
    "ack_wait": 30.0,  # seconds before an unacknowledged message is delivered again
    "timeout": 10.0,  # seconds to wait for the server on any one call
}


async def _log_error(exc: Exception) -> None:
    """nats-py reports each failed (re)connection here: one line, not a traceback."""
    log.warning("NATS: %s", exc or type(exc).__name__)


class _Connection:
    """A connection and its JetStream context on a private loop, the stream made sure of."""

    def __init__(self, url: str, options: dict[str, Any], subject: str) -> None:
        server, self.options = split_url(url, OPTIONS, options)
        self.subject: str = self.options["subject"] or subject
        self.stream: str = self.options["stream"]
        self.dead_letters: str = self.options["dead_letters"] or f"{self.subject}.dead"
        self.timeout: float = self.options["timeout"]
        self.loop = LoopThread(f"turnout-nats-{self.stream}")
        self.client, self.jetstream = self.loop.connect(
            self._connect(server), self.timeout, "NATS JetStream", server, 4222
        )

    async def _connect(self, server: str) -> tuple[Client, JetStreamContext]:
        # nats-py retries a first connection as it would a lost one (forever, here): a
        # server that is not listening at all is told at once instead.
        where = urlsplit(server)
        _, writer = await asyncio.open_connection(where.hostname, where.port or 4222)
        writer.close()
        client = await nats.connect(
            servers=[server],
            connect_timeout=self.timeout,
            max_reconnect_attempts=-1,  # a relay or consumer outlives a server restart
            error_cb=_log_error,
        )
        try:
            return client, await self._stream(client)
        except BaseException:
            await client.close()
            raise

    async def _stream(self, client: Client) -> JetStreamContext:
        """The JetStream context, the stream created (or given the subjects it lacks)."""
        jetstream = client.jetstream(timeout=self.timeout)
        subjects = [self.subject, self.dead_letters]
        try:
            info = await jetstream.stream_info(self.stream)
        except NotFoundError:
            await jetstream.add_stream(StreamConfig(name=self.stream, subjects=subjects))
        else:
            have = list(info.config.subjects or [])
            missing = [subject for subject in subjects if subject not in have]
            if missing:
                info.config.subjects = have + missing
                await jetstream.update_stream(info.config)
        return jetstream

    def close(self) -> None:
        try:
            if not self.client.is_closed:
                self.loop.run(self.client.close(), self.timeout)
        finally:
            self.loop.close()


class NatsPublisher:
    """Publishes changes to the subject, waiting for JetStream to store (or recognise) each."""

    def __init__(self, url: str, **options: Any) -> None:
        self.connection = _Connection(url, options, subject="turnout.changes")
        self.duplicates = 0  # messages JetStream recognised as already stored

    def publish(self, changes: list[Change]) -> None:
        connection = self.connection
        self.duplicates += connection.loop.run(
            self._publish(changes), connection.timeout + len(changes) / 100
        )

    async def _publish(self, changes: list[Change]) -> int:
        connection = self.connection
        pending = []
        try:
            # Written in order on one connection, so stored in order; acknowledged together.
            for change in changes:
                pending.append(
                    await connection.jetstream.publish_async(
                        connection.subject,
                        json.dumps(change.to_json()).encode(),
                        stream=connection.stream,
                        headers={MSG_ID: change.id},
                    )
                )
            acks = await asyncio.wait_for(asyncio.gather(*pending), connection.timeout)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        return sum(1 for ack in acks if ack.duplicate)

    def close(self) -> None:
        self.connection.close()


class NatsSource:
    """Reads events through a durable pull consumer; a rejected message is published with
    its reason to the dead-letter subject, then terminated (never delivered again)."""

    def __init__(self, url: str, **options: Any) -> None:
        self.connection = _Connection(url, options, subject="turnout.events")
        self.unsettled: dict[str, Msg] = {}  # handed out by the last receive, not settled
        try:
            self.subscription = self.connection.loop.run(self._subscribe(), self.connection.timeout)
        except BaseException:
            self.connection.close()
            raise

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        connection = self.connection
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, ack_wait=connection.options["ack_wait"]
        )
        return await connection.jetstream.pull_subscribe(
            connection.subject,
            durable=connection.options["durable"],
            stream=connection.stream,
            config=config,
        )

    def receive(self, limit: int, timeout: float) -> list[Message]:
        """The next messages; those of the last call left unsettled (the consumer failed on
        them, the database away, say) are handed back first (nak), to come again at once
        rather than after `ack_wait`."""
        received = self.connection.loop.run(
            self._fetch(limit, timeout), timeout + self.connection.timeout
        )
        return [self._message(msg) for msg in received]

    async def _fetch(self, limit: int, timeout: float) -> list[Msg]:
        unsettled, self.unsettled = self.unsettled, {}
        for msg in unsettled.values():
            try:
                await msg.nak()
            except Exception as exc:  # the connection is gone: ack_wait brings it back
                log.debug("NATS nak: %s", exc)
        try:
            return await self.subscription.fetch(limit, max(timeout, 0.001))
        except TimeoutError:  # nothing came (nats-py raises its own and asyncio's)
            return []

    def _message(self, msg: Msg) -> Message:
        headers = msg.headers or {}
        message_id = headers.get(MSG_ID) or str(msg.metadata.sequence.stream)
        loop, timeout = self.connection.loop, self.connection.timeout

        self.unsettled[msg.reply] = msg  # the reply subject names this one delivery

        def ack() -> None:
            loop.run(msg.ack(), timeout)
            self.unsettled.pop(msg.reply, None)

        def reject(reason: str) -> None:
            loop.run(self._set_aside(msg, message_id, reason), timeout * 2)
            self.unsettled.pop(msg.reply, None)

        return Message(id=message_id, body=msg.data, ack=ack, reject=reject)

    async def _set_aside(self, msg: Msg, message_id: str, reason: str) -> None:
        connection = self.connection
        headers = {
            MSG_ID: f"{message_id}.dead",
            ORIGINAL_ID: message_id,
            REASON: " ".join(reason.split()),  # a header is one line
        }
        await connection.jetstream.publish(connection.dead_letters, msg.data, headers=headers)
        await msg.term()

    def close(self) -> None:
        """Leave the durable consumer in place: what was delivered and not acknowledged
        comes again to whoever reads through it next."""
        try:
            self.connection.loop.run(self.subscription.unsubscribe(), self.connection.timeout)
        except Exception:  # the connection already gone: nothing to unsubscribe from
            pass
        self.connection.close()


def open_publisher(url: str, **options: Any) -> NatsPublisher:
    return NatsPublisher(url, **options)


def open_source(url: str, **options: Any) -> NatsSource:
    return NatsSource(url, **options)
