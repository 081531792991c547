"""What a consumer makes of a message body, whatever the broker: an event is applied once
under its message id; anything else is set aside with the reason, never applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.brokers import Consumer, Message

COUNTER = Path(__file__).parents[1] / "engine" / "definitions" / "counter.yaml"


class Settled:
    """How the consumer settled each message, by id."""

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.rejected: dict[str, str] = {}

    def message(self, message_id: str, body: Any) -> Message:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Message(
            message_id,
            raw,
            lambda: self.acked.append(message_id),
            lambda why: self.rejected.__setitem__(message_id, why),
        )


@pytest.fixture
def counted(store_url: str) -> Any:
    with Engine(store_url) as engine:
        engine.deploy(COUNTER)
        engine.start("counter", {"count": 0}, key="c1")
        yield engine


def test_an_event_is_applied_once_under_its_message_id(counted: Engine) -> None:
    settled = Settled()
    consumer = Consumer(counted, source=None)  # handle() only: no source read
    event = {"definition": "counter", "key": "c1", "event": "increment"}
    consumer.handle(settled.message("m-1", event))
    consumer.handle(settled.message("m-1", event))  # delivered again
    consumer.handle(settled.message("m-2", event))
    assert counted.get_by_key("counter", "c1").context["count"] == 2
    assert settled.acked == ["m-1", "m-1", "m-2"] and settled.rejected == {}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not an event message"),
        ([1, 2], "not a JSON object"),
        ({"definition": "counter", "key": "c1"}, "not an event message"),
        ({"definition": "counter", "key": 7, "event": "increment"}, "must be text"),
        ({"definition": "counter", "key": "nobody", "event": "increment"}, "InstanceNotFound"),
        ({"definition": "counter", "key": "c1", "event": "fly"}, "EventRejected"),
        (
            {
                "definition": "counter",
                "key": "c1",
                "event": "increment",
                "revision": 2,
                "position": 9,
            },
            "a change of the feed",
        ),
    ],
)
def test_what_cannot_be_applied_is_set_aside_with_the_reason(
    counted: Engine, body: Any, why: str
) -> None:
    settled = Settled()
    Consumer(counted, source=None).handle(settled.message("bad", body))
    assert why in settled.rejected["bad"]
    assert settled.acked == []
    assert counted.get_by_key("counter", "c1").context["count"] == 0
