"""`turnout webhooks list` and `turnout webhooks resend` as an operator runs them: a real
process, its output and exit status, against a receiver on 127.0.0.1. The deliveries are
made by a relay in the test's process."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from turnout_processes import DEFINITIONS, turnout_command, turnout_env
from webhook_receiver import Receiver

from engine import Engine
from engine.brokers import Relay
from engine.brokers.webhooks import open_publisher

SECRET = "s3cret-shared-with-the-receiver"


def webhooks(database: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `turnout webhooks ARGS...` on `database` with the extra environment `env`."""
    return subprocess.run(
        [turnout_command(), "webhooks", *args],
        env=turnout_env(database, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


@pytest.fixture
def refused(sqlite_db: str, receiver: Receiver) -> str:
    """Three changes relayed to the receiver, which refused the second (400); its id."""
    with Engine(sqlite_db) as engine:
        engine.deploy(DEFINITIONS / "counter.yaml")
        instance_id = engine.start("surface_counter").id
        engine.send(instance_id, "bump")
        engine.send(instance_id, "bump")
        second = f"{instance_id}.2"
        receiver.answer = lambda headers, body: (
            400 if headers["turnout-change-id"] == second else 200
        )
        relay = Relay(engine, open_publisher(receiver.url, secret=SECRET), "hooks")
        assert relay.run_once() == 3
        relay.publisher.close()
    return second


def test_list_shows_the_log_and_failed_only_with_failed(
    sqlite_db: str, receiver: Receiver, refused: str
) -> None:
    everything = webhooks(sqlite_db, "list", "--json")
    assert everything.returncode == 0, everything.stderr
    rows = json.loads(everything.stdout)
    assert [row["status"] for row in rows] == ["delivered", "failed", "delivered"]
    assert rows[1]["change_id"] == refused and rows[1]["last_status_code"] == 400
    failed = webhooks(sqlite_db, "list", "--failed", "--json")
    assert [row["change_id"] for row in json.loads(failed.stdout)] == [refused]
    table = webhooks(sqlite_db, "list", "--failed")
    assert table.returncode == 0 and refused in table.stdout and "400" in table.stdout


def test_resend_delivers_the_failed_ones_once_the_receiver_is_fixed(
    sqlite_db: str, receiver: Receiver, refused: str
) -> None:
    still = webhooks(sqlite_db, "resend", TURNOUT_WEBHOOK_SECRET=SECRET)
    assert still.returncode == 1
    assert "0 delivered, 1 still failed" in still.stderr
    receiver.answer = lambda headers, body: 200
    fixed = webhooks(sqlite_db, "resend", "--url", receiver.url, TURNOUT_WEBHOOK_SECRET=SECRET)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 delivered, 0 still failed" in fixed.stderr
    assert receiver.taken()[-1].change_id == refused
    assert json.loads(webhooks(sqlite_db, "list", "--failed", "--json").stdout) == []
    nothing = webhooks(sqlite_db, "resend", TURNOUT_WEBHOOK_SECRET=SECRET)
    assert (nothing.returncode, nothing.stderr.strip()) == (0, "no failed deliveries")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("resend",), {}, "TURNOUT_WEBHOOK_SECRET"),
        (("resend",), {"TURNOUT_WEBHOOK_SECRET": "short"}, "at least 16 characters"),
        (("list", "--status", "lost"), {}, "one of pending, delivered, failed"),
        (("list", "--failed", "--status", "delivered"), {}, "give one"),
    ],
)
def test_unusable_arguments_get_one_line_and_status_2(
    sqlite_db: str, refused: str, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    answered = webhooks(sqlite_db, *args, **env)
    assert answered.returncode == 2
    assert message in answered.stderr and "Traceback" not in answered.stderr
    assert len(answered.stderr.strip().splitlines()) == 1


def test_prune_deletes_old_delivered_rows_and_keeps_the_failed(
    sqlite_db: str, refused: str
) -> None:
    kept = webhooks(sqlite_db, "prune")
    assert (kept.returncode, kept.stderr.strip()) == (0, "0 deliveries pruned")
    pruned = webhooks(sqlite_db, "prune", "--days", "0")
    assert (pruned.returncode, pruned.stderr.strip()) == (0, "2 deliveries pruned")
    rows = json.loads(webhooks(sqlite_db, "list", "--json").stdout)
    assert [row["change_id"] for row in rows] == [refused]
