"""`send` on PostgreSQL in one round trip (engine/one_trip.py): the step is computed from the
row this engine's last send committed, and written only if the row is still at that
revision. Whatever moved the instance in between (another engine, another process), what a
caller, a subscriber or the history sees is what the locking read would have given."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import DatabaseUnavailable, Engine, EventRejected, HistoryEntry
from engine.one_trip import KeptRows

DEFINITIONS = Path(__file__).parent / "definitions"


@pytest.fixture
def engines(postgres_url: str, clock: Any) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one PostgreSQL schema, each keeping the rows its own sends wrote."""
    first, second = Engine(postgres_url, clock=clock), Engine(postgres_url, clock=clock)
    first.deploy(DEFINITIONS / "counter.yaml")
    first.deploy(DEFINITIONS / "round_trip.yaml")
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _seqs(engine: Engine, instance_id: str) -> list[int]:
    return [entry.seq for entry in engine.history(instance_id)]


def test_an_instance_another_engine_moved_is_sent_to_as_it_is_now(
    engines: tuple[Engine, Engine],
) -> None:
    first, second = engines
    counter = first.start("counter", {"count": 0}).id
    first.send(counter, "increment")  # the first engine keeps the row at count 1
    second.send(counter, "add", {"amount": 10})
    second.send(counter, "increment")
    seen: list[HistoryEntry] = []
    first.subscribe(seen.append)

    sent = first.send(counter, "increment")

    assert sent.context == {"count": 13}
    assert sent.revision == 5
    assert sent == first.get(counter)
    assert _seqs(first, counter) == [1, 2, 3, 4, 5]
    assert [(entry.seq, entry.event) for entry in seen] == [(5, "increment")]


def test_an_event_the_instance_no_longer_takes_is_rejected_and_changes_nothing(
    engines: tuple[Engine, Engine],
) -> None:
    first, second = engines
    counter = first.start("counter", {"count": 0}).id
    first.send(counter, "increment")  # kept while the counter still counts
    second.send(counter, "stop")
    before = first.get(counter)

    with pytest.raises(EventRejected):
        first.send(counter, "increment")

    assert first.get(counter) == before
    assert _seqs(first, counter) == [1, 2, 3]


def test_a_rejected_event_changes_nothing_and_the_next_one_applies(
    engines: tuple[Engine, Engine],
) -> None:
    first, _ = engines
    counter = first.start("counter", {"count": 0}).id
    first.send(counter, "increment")
    with pytest.raises(EventRejected):
        first.send(counter, "add", {"amount": -1})  # its guard refuses it
    assert first.get(counter).revision == 2

    assert first.send(counter, "increment").context == {"count": 2}
    assert _seqs(first, counter) == [1, 2, 3]


def test_an_idempotency_key_is_honoured_whoever_accepted_it(
    engines: tuple[Engine, Engine],
) -> None:
    first, second = engines
    counter = first.start("counter", {"count": 0}).id
    first.send(counter, "increment", idempotency_key="one")
    again = first.send(counter, "increment", idempotency_key="one")
    assert again.context == {"count": 1}
    assert again.revision == 2

    second.send(counter, "increment", idempotency_key="two")  # the first engine's row is stale
    duplicate = first.send(counter, "increment", idempotency_key="two")
    assert duplicate.context == {"count": 2}
    assert duplicate == first.get(counter)

    accepted = first.send(counter, "increment", idempotency_key="three")
    assert accepted.context == {"count": 3}
    assert _seqs(first, counter) == [1, 2, 3, 4]


def test_work_a_step_makes_and_drops_is_written_once(
    engines: tuple[Engine, Engine], clock: Any
) -> None:
    first, second = engines
    instance = first.start("round_trip").id
    first.send(instance, "bump")
    second.send(instance, "bump")  # the first engine's row is stale: its `go` is computed again

    assert first.send(instance, "go").state == "working"
    claimed = first.claim_tasks(["round.work"], limit=10)
    assert [task.instance_id for task in claimed] == [instance]
    assert first.next_due() == clock() + timedelta(hours=1)

    stopped = first.send(instance, "stop")
    assert (stopped.state, stopped.context) == ("idle", {"n": 2})
    assert first.next_due() is None
    first.send(instance, "go")
    again = first.claim_tasks(["round.work"], limit=10)
    assert len(again) == 1 and again[0].id != claimed[0].id  # the first one was dropped
    assert _seqs(first, instance) == [1, 2, 3, 4, 5, 6]


def test_a_returned_instance_changed_by_its_caller_does_not_change_the_next_step(
    engines: tuple[Engine, Engine],
) -> None:
    first, _ = engines
    counter = first.start("counter", {"count": 0}).id
    sent = first.send(counter, "increment")
    sent.context["count"] = 100

    assert first.send(counter, "increment").context == {"count": 2}


@pytest.mark.parametrize("send_path", ["one_trip", "read"])
def test_either_send_path_gives_the_same_instances_entries_and_changes(
    postgres_url: str, clock: Any, send_path: str
) -> None:
    engine = Engine(postgres_url, clock=clock, send_path=send_path)
    try:
        engine.deploy(DEFINITIONS / "counter.yaml")
        seen: list[HistoryEntry] = []
        engine.subscribe(seen.append)
        counter = engine.start("counter", {"count": 0}).id
        results = [engine.send(counter, "add", {"amount": amount}) for amount in (1, 2, 3)]
        assert [(r.revision, r.context["count"]) for r in results] == [(2, 1), (3, 3), (4, 6)]
        assert [(e.seq, e.event, e.data) for e in seen[1:]] == [
            (2, "add", {"amount": 1}),
            (3, "add", {"amount": 2}),
            (4, "add", {"amount": 3}),
        ]
        assert [change.revision for change in engine.changes()] == [1, 2, 3, 4]
    finally:
        engine.close()


def test_four_senders_on_ten_hot_instances_lose_and_double_no_event(postgres_url: str) -> None:
    setup = Engine(postgres_url)
    setup.deploy(DEFINITIONS / "counter.yaml")
    counters = [setup.start("counter", {"count": 0}).id for _ in range(10)]
    senders = [Engine(postgres_url) for _ in range(4)]
    errors: list[BaseException] = []

    def send(engine: Engine, offset: int) -> None:
        try:
            for number in range(100):
                engine.send(counters[(number * 7 + offset) % 10], "increment")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(e, n)) for n, e in enumerate(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        counts = [setup.get(counter).context["count"] for counter in counters]
        assert sum(counts) == 400
        for counter, count in zip(counters, counts, strict=True):
            assert _seqs(setup, counter) == list(range(1, count + 2))
            assert setup.get(counter).revision == count + 1
    finally:
        for engine in [setup, *senders]:
            engine.close()


def test_an_unknown_send_path_is_refused(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="send_path"):
        Engine(sqlite_url, send_path="guess")


def test_sqlite_reads_first_whatever_the_send_path(sqlite_url: str) -> None:
    engine = Engine(sqlite_url)
    try:
        engine.deploy(DEFINITIONS / "counter.yaml")
        counter = engine.start("counter", {"count": 0}).id
        assert engine.send(counter, "increment").context == {"count": 1}
        assert engine.send(counter, "increment", idempotency_key="k").context == {"count": 2}
        assert engine.send(counter, "increment", idempotency_key="k").context == {"count": 2}
    finally:
        engine.close()


def test_the_kept_rows_are_bounded_and_the_newest_revision_stays() -> None:
    from datetime import UTC, datetime

    from engine.one_trip import Kept
    from engine.rows import InstanceRow

    now = datetime.now(UTC)

    def kept(instance_id: str, revision: int) -> Kept:
        row = InstanceRow(
            instance_id, None, "d", 1, "s", [], "running", {}, {}, revision, 1, now, now
        )
        return Kept.of(row, "[]", "{}", "{}")

    rows = KeptRows(size=2)
    rows.keep(kept("a", 2))
    rows.keep(kept("a", 1))  # an older commit ending later
    assert rows.get("a") is not None and rows.get("a").revision == 2  # type: ignore[union-attr]
    rows.keep(kept("b", 1))
    rows.get("a")  # used most recently: "b" goes first
    rows.keep(kept("c", 1))
    assert (rows.get("a") is None, rows.get("b") is None, rows.get("c") is None) == (
        False,
        True,
        False,
    )


def test_a_connection_lost_with_the_statement_in_flight_leaves_the_outcome_unknown(
    postgres_url: str,
) -> None:
    """The one statement is its own commit: the server gone before it answers, the caller is
    told the change may have committed, and the retry under the same key applies it once."""
    engine = Engine(postgres_url)
    try:
        engine.deploy(DEFINITIONS / "counter.yaml")
        counter = engine.start("counter", {"count": 0}).id
        engine.send(counter, "increment")  # kept: the next send is one statement
        with engine.store.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE FUNCTION cut_here() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); "
                "RETURN NULL; END $$"
            )
            conn.exec_driver_sql(
                "CREATE CONSTRAINT TRIGGER cut_here AFTER INSERT ON turnout_idempotency "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cut_here()"
            )
        with pytest.raises(DatabaseUnavailable) as lost:
            engine.send(counter, "increment", idempotency_key="once")
        assert lost.value.outcome_unknown is True
        with engine.store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER cut_here ON turnout_idempotency")
        retried = engine.send(counter, "increment", idempotency_key="once")
        again = engine.send(counter, "increment", idempotency_key="once")
        assert (retried.context, again.context, again.revision) == ({"count": 2},) * 2 + (3,)
    finally:
        engine.close()


def test_a_large_row_is_not_kept_and_its_instance_is_still_sent_to(postgres_url: str) -> None:
    engine = Engine(postgres_url)
    try:
        engine.deploy(DEFINITIONS / "counter.yaml")
        large = engine.start("counter", {"count": 0, "notes": "x" * 100_000}).id
        small = engine.start("counter", {"count": 0}).id
        for instance in (large, small):
            engine.send(instance, "increment")
        assert len(engine._kept or ()) == 1  # only the small one: memory stays bounded
        assert engine.send(large, "increment").context["count"] == 2
    finally:
        engine.close()


def test_an_instance_whose_guess_missed_reads_first_for_a_while_then_guesses_again(
    engines: tuple[Engine, Engine],
) -> None:
    from engine.one_trip import COOL_FIRST

    first, second = engines
    kept = first._kept
    assert kept is not None
    counter = first.start("counter", {"count": 0}).id
    other = first.start("counter", {"count": 0}).id
    first.send(counter, "increment")  # no row kept yet: read first, then kept
    first.send(counter, "increment")
    assert (kept.guesses, kept.missed, kept.cooling(counter)) == (1, 0, 0)

    second.send(counter, "increment")  # the kept row is stale now
    first.send(counter, "increment")  # a miss: the instance cools
    assert (kept.guesses, kept.missed, kept.cooling(counter)) == (2, 1, COOL_FIRST)

    first.send(other, "increment")
    first.send(other, "increment")  # another instance still guesses
    for _ in range(COOL_FIRST):
        first.send(counter, "increment")  # read first: no guess, no miss
    assert (kept.guesses, kept.missed, kept.cooled) == (3, 1, COOL_FIRST)

    second.send(counter, "increment")
    first.send(counter, "increment")  # the probe misses: twice as long a cooling
    assert (kept.guesses, kept.missed, kept.cooling(counter)) == (4, 2, 2 * COOL_FIRST)
    for _ in range(2 * COOL_FIRST):
        first.send(counter, "increment")
    first.send(counter, "increment")  # the probe holds (nobody else sent): cooling over
    first.send(counter, "increment")
    assert (kept.guesses, kept.missed, kept.cooling(counter)) == (6, 2, 0)
    assert kept.cooled == 3 * COOL_FIRST
    assert first.get(counter).context == {"count": 8 + 3 * COOL_FIRST}
    assert _seqs(first, counter) == list(range(1, 3 * COOL_FIRST + 10))


def test_the_cooling_doubles_up_to_its_cap_and_is_bounded() -> None:
    from engine.one_trip import COOL_FIRST, COOL_MOST

    rows = KeptRows(size=2)
    lengths = []
    for _ in range(10):
        rows.guessed("a", True)
        lengths.append(rows.cooling("a"))
    assert lengths == [min(COOL_FIRST * 2**n, COOL_MOST) for n in range(10)]
    assert lengths[-1] == COOL_MOST
    assert rows.get("a") is None and rows.cooling("a") == COOL_MOST - 1
    rows.guessed("a", False)
    assert rows.cooling("a") == 0
    for name in "bcd":
        rows.guessed(name, True)
    assert [rows.cooling(name) for name in "bcd"] == [0, COOL_FIRST, COOL_FIRST]
