"""What the broker tests share: a feed of interleaved changes of several instances, a relay
run to the end of it, the checks on what a reader of the broker received, the event messages
a consumer applies, and the skip (a failure when CI=true) when a broker is not running."""

from __future__ import annotations

import json
import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from databases import in_ci

from engine import Engine
from engine.brokers import Publisher, Relay
from engine.changes import Change

COUNTER = Path(__file__).parent.parent / "engine" / "definitions" / "counter.yaml"


def require_server(host: str, port: int, name: str) -> None:
    """Skip the test when nothing listens on host:port; fail it when CI=true."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        message = f"{name} is not running on {host}:{port}: {exc}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def interleaved_feed(engine: Engine, instances: int, events: int) -> list[Change]:
    """Start `instances` counters and send each `events` increments, one instance after the
    other round and round, so the feed interleaves them; the whole feed."""
    engine.deploy(COUNTER)
    for number in range(instances):
        engine.start("counter", {"count": 0}, key=f"k{number}")
    for _ in range(events):
        for number in range(instances):
            engine.send_by_key("counter", f"k{number}", "increment")
    expected = instances * (events + 1)
    # On PostgreSQL rows are placed by whichever reader holds the placer lock, which is one
    # for the whole database: a test in another schema may hold it, and this read come short.
    for _ in range(500):
        changes = engine.changes(0, 10_000)
        if len(changes) == expected:
            return changes
        time.sleep(0.01)
    raise AssertionError(f"the feed holds {len(changes)} changes, not {expected}")


def relay_to_the_end(engine: Engine, publisher: Publisher, batch: int) -> list[list[Change]]:
    """Run a relay until the feed is caught up; the batches it published, as the feed
    gives them again from the positions the relay's cursor passed."""
    relay = Relay(engine, publisher, "broker-test", batch=batch)
    batches = []
    while True:
        before = engine.change_cursor("broker-test") or 0
        sent = relay.run_once()
        if not sent:
            return batches
        batches.append(engine.changes(before, sent))


def check_delivered(changes: list[Change], received: list[tuple[str, bytes]]) -> list[str]:
    """Assert that `received` (message id, body) holds every change, that each message id is
    its change's id with its change's body, and that each instance's changes came in revision
    order; the ids received more than once."""
    by_id = {change.id: change for change in changes}
    seen: set[str] = set()
    again = []
    revisions: dict[str, list[int]] = defaultdict(list)
    for message_id, body in received:
        change = by_id[message_id]
        assert json.loads(body) == change.to_json()
        if message_id in seen:
            again.append(message_id)
            continue
        seen.add(message_id)
        revisions[change.instance_id].append(change.revision)
    assert seen == set(by_id), f"{len(set(by_id) - seen)} changes never arrived"
    for instance_id, order in revisions.items():
        assert order == sorted(order), f"{instance_id} out of revision order: {order}"
    return again


def event_body(key: str, event: str = "increment", **extra: Any) -> bytes:
    """An event message for the counter instance with `key`."""
    return json.dumps({"definition": "counter", "key": key, "event": event} | extra).encode()
