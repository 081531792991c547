"""Redis Streams: a publisher that appends the change feed to a stream, and a source that
reads events from a stream through a consumer group (redis-py, the `turnout[redis]` extra).

URL: `redis://[user:password@]host[:port][/db]?stream=NAME&...` (`rediss://` for TLS). The
query options turnout reads (the rest go to redis-py, e.g. `socket_timeout`):

- `stream`: the stream (publisher: default `turnout.changes`; source: `turnout.events`);
- `maxlen`: publisher only, trim the stream to about this many entries (default: never trim);
- `group`: the source's consumer group (default `turnout`), created at the stream's start
  (`0`: events already in the stream are read) when it does not exist;
- `consumer`: this source's name in the group (default `<hostname>-<pid>`);
- `claim_idle`: seconds after which a message delivered to another consumer of the group and
  still not acknowledged is taken over (that consumer died) (default 30);
- `dead`: the dead-letter stream for messages set aside (default `<stream>.dead`).

Each change is one entry with the fields `id` (`Change.id`) and `body` (its JSON). An event
is an entry with a `body` field (the JSON the consumer reads) and optionally an `id` field
naming it; without one, its message id is `<stream>:<entry id>`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.connection import URL_QUERY_ARGUMENT_PARSERS

from statemachines.errors import UsageError

from ..changes import Change
from .base import Message

PUBLISHED_STREAM = "turnout.changes"
EVENT_STREAM = "turnout.events"
GROUP = "turnout"
CLAIM_IDLE_SECONDS = 30.0
PUBLISHER_OPTIONS = {"stream", "maxlen"}
SOURCE_OPTIONS = {"stream", "group", "consumer", "claim_idle", "dead"}
# The longest a source blocks in one read, so a stop request is seen soon after.
LONGEST_BLOCK_SECONDS = 5.0


def _split(url: str, known: set[str], options: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The URL for redis-py (turnout's options taken out) and turnout's options: those of the
    query, overridden by the keyword `options`. UsageError for an option nobody knows."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in known:
            ours[name] = value
        elif name in URL_QUERY_ARGUMENT_PARSERS or name.startswith("ssl_"):
            theirs.append((name, value))
        else:
            allowed = ", ".join(sorted(known))
            raise UsageError(f"unknown option {name!r} in the Redis URL (turnout reads {allowed})")
    for name, value in options.items():
        if name not in known:
            raise UsageError(f"unknown Redis option {name!r}")
        if value is not None:
            ours[name] = str(value)
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


def _number(options: dict[str, str], name: str, default: float | None) -> float | None:
    if name not in options or options[name] == "":
        return default
    try:
        value = float(options[name])
    except ValueError:
        raise UsageError(
            f"the Redis option {name} must be a number, not {options[name]!r}"
        ) from None
    if value < 0:
        raise UsageError(f"the Redis option {name} must not be negative")
    return value


def _client(url: str) -> redis.Redis:
    try:
        return redis.Redis.from_url(url)
    except ValueError as exc:  # redis-py's word for a URL it cannot read
        raise UsageError(f"the Redis URL is not usable: {exc}") from None


class StreamPublisher:
    """Appends changes to one stream, a batch per pipeline (one round trip)."""

    def __init__(self, client: redis.Redis, stream: str, maxlen: int | None = None) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen

    def publish(self, changes: list[Change]) -> None:
        """XADD every change in one pipeline; Redis answers each with its entry id once
        appended, and `execute` raises if any of them failed."""
        if not changes:
            return
        pipeline = self.client.pipeline(transaction=False)
        for change in changes:
            fields = {"id": change.id, "body": json.dumps(change.to_json())}
            pipeline.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        pipeline.execute()

    def close(self) -> None:
        self.client.close()


def open_publisher(url: str, **options: Any) -> StreamPublisher:
    """The publisher for `redis://...?stream=...&maxlen=...` (keyword options override)."""
    client_url, ours = _split(url, PUBLISHER_OPTIONS, options)
    maxlen = _number(ours, "maxlen", None)
    stream = ours.get("stream") or PUBLISHED_STREAM
    return StreamPublisher(_client(client_url), stream, None if maxlen is None else int(maxlen))


class StreamSource:
    """Reads a stream through a consumer group: its own unacknowledged messages first (they
    come again after a failure), then those other consumers left unacknowledged for
    `claim_idle` seconds (XAUTOCLAIM), then new ones (XREADGROUP)."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        claim_idle: float,
        dead: str,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.claim_idle = claim_idle
        self.dead = dead
        self._group_made = False
        self._next_claim = 0.0
        self._claim_from = "0-0"  # XAUTOCLAIM's cursor through the group's pending list

    def _ensure_group(self) -> None:
        if self._group_made:
            return
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_made = True

    def receive(self, limit: int, timeout: float) -> list[Message]:
        """At most `limit` messages, waiting at most `timeout` seconds for new ones."""
        self._ensure_group()
        try:
            return self._receive(limit, timeout)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_made = False  # the stream or the group was deleted: make it again
            return []

    def _receive(self, limit: int, timeout: float) -> list[Message]:
        entries = self._read("0", limit, None)  # delivered to this consumer, not settled
        if not entries and time.monotonic() >= self._next_claim:
            entries = self._claim(limit)
        if not entries:
            block = min(timeout, LONGEST_BLOCK_SECONDS)
            entries = self._read(">", limit, int(block * 1000) if block > 0 else None)
        return [self._message(entry_id, fields) for entry_id, fields in entries]

    def _read(self, start: str, limit: int, block: int | None) -> list[tuple[Any, Any]]:
        # RESP2 answers [[stream, entries]] (redis-py's types also allow RESP3's mapping).
        answer: Any = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=limit, block=block
        )
        if not answer:
            return []
        entries = next(iter(answer.values())) if isinstance(answer, dict) else answer[0][1]
        if entries and isinstance(entries[0], list):
            entries = entries[0]  # RESP3 wraps a stream's entries once more
        # Pending entries trimmed from the stream meanwhile come back with no fields: there is
        # nothing left to apply, so they are acknowledged.
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:
            self.client.xack(self.stream, self.group, *gone)
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    def _claim(self, limit: int) -> list[tuple[Any, Any]]:
        """Take over messages left unacknowledged by any consumer for `claim_idle` seconds."""
        self._next_claim = time.monotonic() + min(self.claim_idle, LONGEST_BLOCK_SECONDS)
        answer: Any = self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=int(self.claim_idle * 1000),
            start_id=self._claim_from,
            count=limit,
        )
        self._claim_from = _text(answer[0])
        return [(entry_id, fields) for entry_id, fields in answer[1] if fields]

    def _message(self, entry_id: Any, fields: dict[Any, Any]) -> Message:
        entry = _text(entry_id)
        given = fields.get(b"id")
        message_id = _text(given) if given else f"{self.stream}:{entry}"
        body = fields.get(b"body", b"")
        return Message(
            message_id,
            bytes(body),
            ack=self._acker(entry),
            reject=self._rejecter(entry, message_id, body),
        )

    def _acker(self, entry: str) -> Callable[[], None]:
        def ack() -> None:
            self.client.xack(self.stream, self.group, entry)

        return ack

    def _rejecter(self, entry: str, message_id: str, body: bytes) -> Callable[[str], None]:
        def reject(reason: str) -> None:
            """Copy the message to the dead-letter stream with the reason, and acknowledge it,
            in one MULTI/EXEC: set aside once, or (a failure) delivered again."""
            pipeline = self.client.pipeline(transaction=True)
            pipeline.xadd(
                self.dead,
                {
                    "id": message_id,
                    "body": body,
                    "reason": reason,
                    "stream": self.stream,
                    "entry": entry,
                    "group": self.group,
                    "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                },
            )
            pipeline.xack(self.stream, self.group, entry)
            pipeline.execute()

        return reject

    def close(self) -> None:
        """Leave the group's list of consumers if nothing delivered here is left unsettled
        (a restarted process has a new default name: its old one would stay listed)."""
        try:
            pending = self.client.xpending_range(
                self.stream, self.group, "-", "+", 1, consumername=self.consumer
            )
            if not pending:
                self.client.xgroup_delconsumer(self.stream, self.group, self.consumer)
        except redis.RedisError:
            pass  # leaving the list is a courtesy; the server may be away
        finally:
            self.client.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_source(url: str, **options: Any) -> StreamSource:
    """The source for `redis://...?stream=...&group=...&consumer=...&claim_idle=...&dead=...`
    (keyword options override the URL's)."""
    client_url, ours = _split(url, SOURCE_OPTIONS, options)
    stream = ours.get("stream") or EVENT_STREAM
    claim_idle = _number(ours, "claim_idle", CLAIM_IDLE_SECONDS)
    return StreamSource(
        _client(client_url),
        stream,
        ours.get("group") or GROUP,
        ours.get("consumer") or f"{socket.gethostname()}-{os.getpid()}",
        CLAIM_IDLE_SECONDS if claim_idle is None else claim_idle,
        ours.get("dead") or f"{stream}.dead",
    )
