"""What the broker tests share: a feed of interleaved changes of several instances, a relay
run to the end of it, the checks on what a reader of the broker received, the event messages
a consumer applies, and `turnout relay` killed mid-stream and started again."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from broker_processes import Running
from waiting import until

from engine import Engine
from engine.brokers import Publisher, Relay
from engine.changes import Change

COUNTER = Path(__file__).parent.parent / "engine" / "definitions" / "counter.yaml"
KILLED_BATCH = 50
StartTurnout = Callable[[Sequence[str], str], Running]


def interleaved_feed(engine: Engine, instances: int, events: int, bulk: int = 0) -> list[Change]:
    """Start `instances` counters and send each `events` increments, one instance after the
    other round and round, so the feed interleaves them; then start `bulk` more, 500 to a
    transaction (one change each); the whole feed."""
    engine.deploy(COUNTER)
    for number in range(instances):
        engine.start("counter", {"count": 0}, key=f"k{number}")
    for _ in range(events):
        for number in range(instances):
            engine.send_by_key("counter", f"k{number}", "increment")
    if bulk:
        engine.start_many("counter", ({"count": 0} for _ in range(bulk)))
    expected = bulk + instances * (events + 1)
    changes = engine.changes(0, 10_000)  # every change committed before the read
    assert len(changes) == expected, f"the feed holds {len(changes)} changes, not {expected}"
    return changes


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


def relay_killed_and_restarted(
    engine: Engine, turnout_process: StartTurnout, database: str, broker: str
) -> list[Change]:
    """10,000 changes relayed by `turnout relay`, killed (SIGKILL) a tenth of the way through
    and started again until it has relayed the whole feed; the feed. (The first 2,000 are the
    steps of 20 instances, interleaved, so the kill falls among them; 8,000 starts follow.)"""
    changes = interleaved_feed(engine, instances=20, events=99, bulk=8000)
    last = changes[-1].position
    name = "killed-relay"
    command = ["relay", broker, "--name", name, "--batch", str(KILLED_BATCH)]

    def cursor() -> int:
        return engine.change_cursor(name) or 0

    first = turnout_process(command, database)
    try:
        reached = until(lambda: cursor() >= last // 10, 60, every=0.005)
    finally:
        first.kill()
    assert reached, first.output()
    assert cursor() < last, "the relay was done before it was killed"
    second = turnout_process(command, database)
    try:
        assert until(lambda: cursor() == last, 120), second.output()
    finally:
        second.kill()
    return changes
