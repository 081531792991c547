"""Webhooks against a real HTTP receiver on 127.0.0.1: each change POSTed once, signed so the
receiver can check it, retried with backoff while the receiver is away or busy, refused
changes kept in the delivery log and sent again; on SQLite and PostgreSQL.

Backoff waits go through an injected `sleep` that only records them: no test waits for one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from waiting import until
from webhook_receiver import Received, Receiver, free_port

from engine import Engine
from engine.brokers import Relay
from engine.brokers.signatures import verify_signature
from engine.brokers.webhooks import deliveries, open_publisher, prune_deliveries, resend_failed

SECRET = "s3cret-shared-with-the-receiver"


class Sleeps(list[float]):
    """An injected `sleep`: keeps the waits asked for, waits for none."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


@pytest.fixture
def counters(engine: Engine, deploy: Callable[[str], Any]) -> list[str]:
    """Three counters whose steps interleave: 3 + 2 * 3 changes in the feed."""
    deploy("counter")
    ids = [engine.start("counter", {"count": 0}, key=f"c{number}").id for number in range(3)]
    for _ in range(2):
        for instance_id in ids:
            engine.send(instance_id, "increment")
    assert engine.latest_change() == 9
    return ids


def relay_to(
    engine: Engine, url: str, sleeps: Sleeps, name: str = "hooks", batch: int = 500, **options: Any
) -> Relay:
    """A relay of the feed to `url`, its publisher made with `options` (signed by SECRET)."""
    options.setdefault("secret", SECRET)
    return Relay(engine, open_publisher(url, sleep=sleeps, **options), name, batch=batch)


def drain(relay: Relay) -> int:
    total = 0
    while sent := relay.run_once():
        total += sent
    return total


def check_signature(request: Received, secret: str = SECRET) -> int:
    """The request's timestamp, once its signature is checked here with hmac directly."""
    fields = dict(part.split("=", 1) for part in request.headers["turnout-signature"].split(","))
    assert fields["t"] == request.headers["turnout-timestamp"]
    signed = f"{fields['t']}.".encode() + request.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    return int(fields["t"])


def feed_ids(engine: Engine) -> list[str]:
    return [change.id for change in engine.changes(0, 1000)]


def test_each_change_is_posted_once_signed_and_logged_as_delivered(
    engine: Engine, counters: list[str], receiver: Receiver, clock: Any
) -> None:
    relay = relay_to(engine, receiver.url, Sleeps())
    assert drain(relay) == 9
    changes = engine.changes(0, 1000)
    taken = receiver.taken()
    assert [request.change_id for request in taken] == [change.id for change in changes]
    for request, change in zip(taken, changes, strict=True):
        assert json.loads(request.body) == change.to_json()
        assert request.path == "/hooks"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["turnout-attempt"] == "1"
        assert check_signature(request) == int(clock().timestamp())
    assert engine.change_cursor("hooks") == changes[-1].position
    log = deliveries(engine, url=receiver.url)
    assert [(row.change_id, row.status, row.attempts) for row in log] == [
        (change.id, "delivered", 1) for change in changes
    ]
    assert all(row.last_status_code == 200 and row.delivered_at == clock() for row in log)


def test_verify_signature_accepts_the_header_and_rejects_tampering_and_old_timestamps(
    engine: Engine, counters: list[str], receiver: Receiver
) -> None:
    drain(relay_to(engine, receiver.url, Sleeps()))
    request = receiver.taken()[0]
    header, body = request.headers["turnout-signature"], request.body
    sent_at = int(request.headers["turnout-timestamp"])
    assert verify_signature(body, header, SECRET, now=sent_at + 10)
    assert not verify_signature(body + b" ", header, SECRET, now=sent_at)
    assert not verify_signature(body, header, "another-secret-entirely", now=sent_at)
    assert not verify_signature(body, header, SECRET, now=sent_at + 301)
    assert not verify_signature(body, "v1=" + header.split("v1=")[1], SECRET, now=sent_at)


def test_each_instances_changes_arrive_in_revision_order(
    engine: Engine, counters: list[str], receiver: Receiver
) -> None:
    drain(relay_to(engine, receiver.url, Sleeps(), batch=4))
    revisions: dict[str, list[int]] = {}
    for request in receiver.taken():
        change = json.loads(request.body)
        revisions.setdefault(change["instance_id"], []).append(change["revision"])
    assert revisions == {instance_id: [1, 2, 3] for instance_id in counters}


def test_a_server_error_twice_is_retried_with_backoff_and_then_delivered(
    engine: Engine, counters: list[str], receiver: Receiver
) -> None:
    errors = [500, 500]
    receiver.answer = lambda headers, body: errors.pop() if errors else 200
    sleeps = Sleeps()
    drain(relay_to(engine, receiver.url, sleeps, backoff=0.5))
    first = feed_ids(engine)[0]
    tried = [request for request in receiver.requests if request.change_id == first]
    assert [request.status for request in tried] == [500, 500, 200]
    assert [request.headers["turnout-attempt"] for request in tried] == ["1", "2", "3"]
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # doubling, with jitter
    row = deliveries(engine, url=receiver.url)[0]
    assert (row.change_id, row.status, row.attempts, row.last_status_code) == (
        first,
        "delivered",
        3,
        200,
    )
    assert Counter(request.change_id for request in receiver.taken()) == Counter(feed_ids(engine))


def test_retry_after_is_waited_for_up_to_the_longest_backoff(
    engine: Engine, counters: list[str], receiver: Receiver
) -> None:
    busy = [(429, {"Retry-After": "7"}), (503, {"Retry-After": "90"})]
    receiver.answer = lambda headers, body: busy.pop(0) if busy else 200
    sleeps = Sleeps()
    drain(relay_to(engine, receiver.url, sleeps, max_backoff=30))
    assert sleeps == [7.0, 30.0]


def test_a_refused_change_is_logged_failed_and_the_relay_goes_on(
    engine: Engine, counters: list[str], receiver: Receiver
) -> None:
    refused = feed_ids(engine)[4]
    receiver.answer = lambda headers, body: 400 if headers["turnout-change-id"] == refused else 200
    sleeps = Sleeps()
    assert drain(relay_to(engine, receiver.url, sleeps)) == 9
    assert sleeps == []  # a 400 is not retried
    assert [request.change_id for request in receiver.taken()] == [
        change_id for change_id in feed_ids(engine) if change_id != refused
    ]
    assert engine.change_cursor("hooks") == engine.latest_change()
    [failed] = deliveries(engine, status="failed")
    assert (failed.change_id, failed.attempts, failed.last_status_code) == (refused, 1, 400)
    assert failed.last_error is not None and "400" in failed.last_error
    assert failed.failed_at is not None


def test_resend_delivers_a_refused_change_once_the_receiver_is_fixed(
    engine: Engine, counters: list[str], receiver: Receiver, clock: Any
) -> None:
    refused = feed_ids(engine)[4]
    receiver.answer = lambda headers, body: 422 if headers["turnout-change-id"] == refused else 200
    drain(relay_to(engine, receiver.url, Sleeps()))
    [first_try] = [request for request in receiver.requests if request.change_id == refused]
    engine.prune_changes(0)  # the change itself may be gone from the feed by then
    [still] = resend_failed(engine, secret=SECRET, sleep=Sleeps())
    assert (still.delivered, still.failed) == (0, 1)

    receiver.answer = lambda headers, body: 200
    clock.advance(60)
    [outcome] = resend_failed(engine, secret=SECRET, sleep=Sleeps())
    assert (outcome.delivered, outcome.failed, outcome.errors) == (1, 0, [])
    resent = receiver.taken()[-1]
    assert resent.change_id == refused and resent.body == first_try.body
    assert resent.headers["turnout-attempt"] == "3"
    assert check_signature(resent) == int(clock().timestamp())
    assert deliveries(engine, status="failed") == []
    row = next(row for row in deliveries(engine) if row.change_id == refused)
    assert (row.status, row.attempts, row.delivered_at) == ("delivered", 3, clock())
    assert resend_failed(engine, secret=SECRET) == []


@pytest.mark.parametrize("status", [301, 400, 401, 404, 410])
def test_answers_that_refuse_a_change_are_not_retried(
    engine: Engine, counters: list[str], receiver: Receiver, status: int
) -> None:
    receiver.answer = lambda headers, body: status
    assert drain(relay_to(engine, receiver.url, Sleeps())) == 9
    assert len(receiver.requests) == 9
    assert len(deliveries(engine, status="failed")) == 9


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_answers_of_a_busy_or_broken_receiver_hold_the_feed(
    engine: Engine, counters: list[str], receiver: Receiver, status: int
) -> None:
    receiver.answer = lambda headers, body: status
    relay = relay_to(engine, receiver.url, Sleeps(), retries=3)
    with pytest.raises(ConnectionError, match=f"after 3 attempts: HTTP {status}"):
        relay.run_once()
    assert engine.change_cursor("hooks") is None
    [pending] = deliveries(engine)
    assert (pending.change_id, pending.status, pending.attempts) == (
        feed_ids(engine)[0],
        "pending",
        3,
    )


def test_a_receiver_that_is_down_loses_nothing(
    engine: Engine, counters: list[str], clock: Any
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks"
    relay = relay_to(engine, url, Sleeps(), retries=2)
    for _ in range(2):
        with pytest.raises(ConnectionError, match="ConnectError"):
            relay.run_once()
    assert engine.change_cursor("hooks") is None
    [pending] = deliveries(engine, status="pending")
    assert pending.attempts == 4 and pending.next_attempt_at is None
    with Receiver(port) as receiver:
        assert drain(relay) == 9
        assert [request.change_id for request in receiver.requests] == feed_ids(engine)
    assert deliveries(engine)[0].attempts == 5
    assert {row.status for row in deliveries(engine)} == {"delivered"}


def test_a_relay_restarted_after_the_receiver_went_away_mid_batch_sends_nothing_twice(
    engine: Engine, counters: list[str], receiver: Receiver
) -> None:
    away = threading.Event()
    answered: list[int] = []

    def answer(headers: dict[str, str], body: bytes) -> int:
        if len(answered) >= 4:
            away.set()
        status = 503 if away.is_set() else 200
        answered.append(status)
        return status

    receiver.answer = answer
    with pytest.raises(ConnectionError):
        relay_to(engine, receiver.url, Sleeps(), retries=2).run_once()
    assert len(receiver.taken()) == 4
    receiver.answer = lambda headers, body: 200
    assert drain(relay_to(engine, receiver.url, Sleeps())) == 9  # a new relay, as after a crash
    assert [request.change_id for request in receiver.taken()] == feed_ids(engine)


def test_a_receiver_too_slow_to_answer_is_timed_out_and_tried_again(
    engine: Engine, counters: list[str], receiver: Receiver
) -> None:
    stuck = threading.Event()
    calls: list[int] = []

    def answer(headers: dict[str, str], body: bytes) -> int:
        calls.append(1)
        if len(calls) == 1:
            stuck.wait(20)
        return 200

    receiver.answer = answer
    sleeps = Sleeps()
    try:
        drain(relay_to(engine, receiver.url, sleeps, timeout=0.3))
    finally:
        stuck.set()
    assert len(sleeps) == 1
    first = deliveries(engine)[0]
    assert (first.status, first.attempts) == ("delivered", 2)


def test_max_attempts_gives_up_on_a_change_and_goes_on(
    engine: Engine, counters: list[str], receiver: Receiver
) -> None:
    poisoned = feed_ids(engine)[2]
    receiver.answer = lambda headers, body: 500 if headers["turnout-change-id"] == poisoned else 200
    assert drain(relay_to(engine, receiver.url, Sleeps(), max_attempts=3)) == 9
    [failed] = deliveries(engine, status="failed")
    assert (failed.change_id, failed.attempts, failed.last_status_code) == (poisoned, 3, 500)
    assert len(receiver.taken()) == 8


def test_two_urls_are_two_relays_with_their_own_cursors_and_log(
    engine: Engine, counters: list[str], receiver: Receiver
) -> None:
    with Receiver() as other:
        other.answer = lambda headers, body: 404
        drain(relay_to(engine, receiver.url, Sleeps(), name="hooks-a"))
        drain(relay_to(engine, other.url, Sleeps(), name="hooks-b", secret="b-secret-of-its-own"))
        check_signature(other.requests[0], "b-secret-of-its-own")
    assert len(receiver.taken()) == 9 and len(other.requests) == 9
    assert engine.change_cursor("hooks-a") == engine.change_cursor("hooks-b")
    assert len(deliveries(engine, url=receiver.url, status="delivered")) == 9
    assert len(deliveries(engine, url=other.url, status="failed")) == 9


def test_a_running_relay_posts_changes_as_they_commit(
    engine: Engine, deploy: Callable[[str], Any], receiver: Receiver
) -> None:
    deploy("counter")
    relay = relay_to(engine, receiver.url, Sleeps())
    relay.idle = 0.2
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        instance_id = engine.start("counter", {"count": 0}).id
        engine.send(instance_id, "increment")
        assert until(lambda: len(receiver.taken()) == 2, 20)
    finally:
        stop.set()
        thread.join(20)
    assert [request.change_id for request in receiver.taken()] == feed_ids(engine)


def test_pruning_the_log_keeps_failed_deliveries(
    engine: Engine, counters: list[str], receiver: Receiver, clock: Any
) -> None:
    refused = feed_ids(engine)[0]
    receiver.answer = lambda headers, body: 400 if headers["turnout-change-id"] == refused else 200
    drain(relay_to(engine, receiver.url, Sleeps()))
    assert prune_deliveries(engine, 3600) == 0
    clock.advance(7200)
    assert prune_deliveries(engine, 3600, batch=3) == 8
    assert [row.change_id for row in deliveries(engine)] == [refused]


def test_a_stopping_relay_does_not_wait_out_its_backoff(
    engine: Engine, counters: list[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks"
    relay = Relay(engine, open_publisher(url, secret=SECRET, backoff=600, retries=10), "hooks")
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    assert until(lambda: bool(deliveries(engine, status="pending")), 20)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    [pending] = deliveries(engine, status="pending")
    assert pending.attempts == 1 and pending.next_attempt_at is not None
    assert engine.change_cursor("hooks") is None


def test_resend_to_a_receiver_still_away_stops_and_leaves_every_one_failed(
    engine: Engine, counters: list[str], receiver: Receiver
) -> None:
    receiver.answer = lambda headers, body: 404
    drain(relay_to(engine, receiver.url, Sleeps()))
    receiver.answer = lambda headers, body: 503
    [outcome] = resend_failed(engine, secret=SECRET, sleep=Sleeps(), retries=2)
    assert (outcome.delivered, outcome.failed) == (0, 9)
    assert len(outcome.errors) == 1 and "HTTP 503" in outcome.errors[0]
    assert len(receiver.requests) == 9 + 2  # the first one tried twice, then it stopped
    failed = deliveries(engine, status="failed")
    assert [row.attempts for row in failed] == [3] + [1] * 8
