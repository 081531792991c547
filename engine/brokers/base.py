"""The relay and consumer loops, and what a broker module provides to them.

A relay reads the change feed after its named cursor, hands each batch to a `Publisher`
(which returns only once the broker has taken every message) and only then moves its cursor:
a relay stopped at any point sends again at most the batch it was in, with the same message
ids (`Change.id`). A consumer takes `Message`s from a `Source`, applies each as an event
with `send_by_key`, its message id as the idempotency key, and acknowledges it only after
that commit: a message delivered again after a crash finds its key used and changes nothing.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from statemachines.errors import DatabaseUnavailable, TurnoutError, UsageError

from ..changes import Change

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger("turnout.brokers")

# URL scheme -> (module of engine.brokers, the extra that installs its client library)
SCHEMES = {
    "redis": ("redis_streams", "redis"),
    "rediss": ("redis_streams", "redis"),
    "nats": ("nats_jetstream", "nats"),
    "amqp": ("rabbitmq", "rabbitmq"),
    "amqps": ("rabbitmq", "rabbitmq"),
    "http": ("webhooks", None),
    "https": ("webhooks", None),
}


class Publisher(Protocol):
    """Sends changes to a broker, at least once. A publisher that keeps records in the
    database or waits between attempts (webhooks) also has `attach(relay)`, which the relay
    calls with itself: its `engine`, its cursor's `name`, and `stopping`, set when it is to
    stop."""

    def publish(self, changes: list[Change]) -> None:
        """Send every change as one message whose id is `change.id` and whose body is
        `json.dumps(change.to_json())`, in the given order; return only once the broker has
        confirmed all of them; raise (any exception) if it has not."""
        ...

    def close(self) -> None: ...


@dataclass
class Message:
    """One message a source delivered: its id (the broker's message id, or the one its
    publisher gave), its body, and how to settle it with the broker."""

    id: str
    body: bytes
    ack: Callable[[], None]  # done with: never deliver it again
    reject: Callable[[str], None]  # cannot be applied, ever: set aside (dead letters), say why


class Source(Protocol):
    """Delivers messages from a stream or queue; unacknowledged ones come again."""

    def receive(self, limit: int, timeout: float) -> list[Message]:
        """At most `limit` messages, waiting at most `timeout` seconds for the first."""
        ...

    def close(self) -> None: ...


def _module(url: str) -> Any:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(sorted(SCHEMES))
        raise UsageError(f"no broker for the URL {url!r}: its scheme must be one of {known}")
    module, extra = SCHEMES[scheme]
    try:
        return importlib.import_module(f"{__package__}.{module}")
    except ModuleNotFoundError as exc:
        if extra is None or (exc.name or "").startswith(__package__ or "engine"):
            raise
        raise UsageError(
            f"the {scheme}:// broker needs its client library: pip install 'turnout[{extra}]'"
        ) from exc


def open_publisher(url: str, **options: Any) -> Publisher:
    """The publisher for a broker URL (redis://, nats://, amqp://, http(s):// ...)."""
    publisher: Publisher = _module(url).open_publisher(url, **options)
    return publisher


def open_source(url: str, **options: Any) -> Source:
    """The source of events for a broker URL."""
    source: Source = _module(url).open_source(url, **options)
    return source


class Relay:
    """Publishes the change feed from the cursor `name` on, batch by batch."""

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        name: str = "relay",
        *,
        batch: int = 500,
        definitions: list[str] | None = None,
        idle: float = 1.0,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.name = name
        self.batch = batch
        self.definitions = definitions
        self.idle = idle
        self.sent = 0
        self._after: int | None = None
        # Set when `run` is to stop: a publisher waiting between attempts gives up at once.
        self.stopping = threading.Event()
        # A publisher that keeps records of its own in the database (the webhooks' delivery
        # log) or waits between attempts says so with `attach`, and is handed this relay.
        attach = getattr(publisher, "attach", None)
        if callable(attach):
            attach(self)

    def run_once(self) -> int:
        """Publish the next batch of changes; how many (0: the feed is caught up)."""
        if self._after is None:
            self._after = self.engine.change_cursor(self.name) or 0
        changes = self.engine.changes(self._after, self.batch, definitions=self.definitions)
        if not changes:
            return 0
        self.publisher.publish(changes)
        self.engine.save_change_cursor(self.name, changes[-1].position)
        self._after = changes[-1].position
        self.sent += len(changes)
        return len(changes)

    def run(self, stop: threading.Event | None = None) -> None:
        """Relay until `stop` is set; wait for the feed (LISTEN/NOTIFY) when caught up, and
        for the broker or the database, backing off, when either is away."""
        stop = self.stopping = stop or self.stopping
        pause = 0.5
        while not stop.is_set():
            try:
                if self.run_once() == 0:
                    self.engine.wait_for_changes(self.idle)
                pause = 0.5
            except Exception as exc:  # a broker or database away: the batch is sent again
                if stop.is_set():  # a publish cut short by the stop: the next run sends it
                    break
                log.warning("relay %s: %s; retrying in %.1f s", self.name, exc, pause)
                self._after = None
                stop.wait(pause)
                pause = min(pause * 2, 10.0)


@dataclass
class Outcome:
    """What a consumer did with the messages it took."""

    applied: int = 0
    rejected: int = 0


class Consumer:
    """Applies events from a source: each message body is a JSON object with `definition`,
    `key`, `event` and optionally `data`; its message id is the event's idempotency key."""

    def __init__(self, engine: Engine, source: Source, *, batch: int = 100) -> None:
        self.engine = engine
        self.source = source
        self.batch = batch
        self.outcome = Outcome()

    def handle(self, message: Message) -> None:
        """Apply one message and settle it: acknowledged once the event has committed (or was
        applied before under the same id), rejected when it never can be, left unsettled (to
        come again) when the database is away."""
        try:
            body = json.loads(message.body)
            if not isinstance(body, dict):
                raise ValueError("the message is not a JSON object")
            if "position" in body and "revision" in body:  # read back from a relay's stream
                raise ValueError("it is a change of the feed, not an event")
            definition, key, event = body["definition"], body["key"], body["event"]
            if not all(isinstance(value, str) for value in (definition, key, event)):
                raise TypeError("definition, key and event must be text")
        except (ValueError, KeyError, TypeError) as exc:
            self._reject(message, f"not an event message: {exc}")
            return
        try:
            self.engine.send_by_key(
                definition, key, event, body.get("data"), idempotency_key=message.id
            )
        except DatabaseUnavailable:
            raise
        except TurnoutError as exc:
            self._reject(message, f"{type(exc).__name__}: {exc}")
            return
        message.ack()
        self.outcome.applied += 1

    def _reject(self, message: Message, why: str) -> None:
        log.warning("message %s set aside: %s", message.id, why)
        message.reject(why)
        self.outcome.rejected += 1

    def run_once(self, timeout: float = 1.0) -> int:
        messages = self.source.receive(self.batch, timeout)
        for message in messages:
            self.handle(message)
        return len(messages)

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        pause = 0.5
        while not stop.is_set():
            try:
                self.run_once()
                pause = 0.5
            except Exception as exc:  # the broker or the database away: unacked messages return
                log.warning("consumer: %s; retrying in %.1f s", exc, pause)
                stop.wait(pause)
                pause = min(pause * 2, 10.0)
