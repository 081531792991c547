"""PostgreSQL transactions are pipelined: results travel back in batches. A connection the
server cuts, or a result it sends earlier than usual (as it does when it shuts down), is
reported as DatabaseUnavailable, never as wrong rows or a driver error; it says whether the
COMMIT was in flight (the outcome unknown) or not (nothing changed, the transaction leaves
nothing behind)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from engine import DatabaseUnavailable, Engine

DEFINITIONS = Path(__file__).parent / "definitions"

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = Engine(postgres_url)
    try:
        engine.deploy(DEFINITIONS / "counter.yaml")
        yield engine
    finally:
        engine.close()


def cut(engine: Engine, backend_pid: int) -> None:
    """Have the server end one connection, as a restart does, and wait until it is gone."""
    url = make_url(engine.store.url).set(drivername="postgresql", query={})
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
        alive = "SELECT 1 FROM pg_stat_activity WHERE pid = %s"
        while admin.execute(alive, (backend_pid,)).fetchone():
            time.sleep(0.01)


def test_a_result_sent_early_does_not_stand_in_for_the_rows_read(pg_engine: Engine) -> None:
    started = pg_engine.start("counter", {"count": 4})
    with pg_engine.store.transaction() as transaction:
        connection = transaction.cursor.connection.pgconn
        connection.send_flush_request()  # the server answers BEGIN before the read is sent
        connection.flush()
        row = transaction.lock_instance(started.id)
    assert row is not None
    assert (row.id, row.context) == (started.id, {"count": 4})


def test_a_connection_cut_mid_transaction_is_unavailable_and_writes_nothing(
    pg_engine: Engine,
) -> None:
    started = pg_engine.start("counter", {"count": 0})
    with pytest.raises(DatabaseUnavailable, match="is unavailable"):
        with pg_engine.store.transaction() as transaction:
            row = transaction.lock_instance(started.id)
            assert row is not None
            transaction.remember_idempotency(started.id, "cut", pg_engine.clock())
            cut(pg_engine, transaction.cursor.connection.info.backend_pid)
    # nothing of the cut transaction stayed, and the next call gets a working connection
    after = pg_engine.send(started.id, "increment", idempotency_key="cut")
    assert (after.context, after.revision) == ({"count": 1}, 2)


def test_a_driver_error_on_a_cut_connection_is_unavailable(pg_engine: Engine) -> None:
    started = pg_engine.start("counter", {"count": 0})
    with pytest.raises(DatabaseUnavailable, match="the connection was lost"):
        with pg_engine.store.transaction() as transaction:
            cut(pg_engine, transaction.cursor.connection.info.backend_pid)
            # No result to fetch: the driver's own complaint.
            transaction.cursor.connection.cursor().fetchone()
    assert pg_engine.send(started.id, "increment").revision == 2


def install_cut(engine: Engine, table: str, when: str) -> None:
    """Have the server end the connection that writes a row of `table`: `when` is "commit"
    (a deferred trigger, run by the COMMIT) or "insert" (as the row is inserted)."""
    timing = "DEFERRABLE INITIALLY DEFERRED" if when == "commit" else "NOT DEFERRABLE"
    with engine.store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION cut_here() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); "
            "RETURN NULL; END $$"
        )
        conn.exec_driver_sql(
            f"CREATE CONSTRAINT TRIGGER cut_here AFTER INSERT ON {table} {timing} "
            "FOR EACH ROW EXECUTE FUNCTION cut_here()"
        )


def remove_cut(engine: Engine, table: str) -> None:
    with engine.store.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TRIGGER cut_here ON {table}")


def test_a_connection_lost_with_the_commit_in_flight_leaves_the_outcome_unknown(
    pg_engine: Engine,
) -> None:
    """The event's writes travel with its COMMIT; the server is gone before it answers, so
    the caller is told the change may have committed, and the retry with the same
    idempotency key applies the event at most once."""
    started = pg_engine.start("counter", {"count": 0})
    install_cut(pg_engine, "turnout_idempotency", "commit")
    with pytest.raises(DatabaseUnavailable) as lost:
        pg_engine.send(started.id, "increment", idempotency_key="once")
    assert lost.value.outcome_unknown is True
    assert "the outcome is unknown: the change may have committed" in str(lost.value)
    remove_cut(pg_engine, "turnout_idempotency")
    retried = pg_engine.send(started.id, "increment", idempotency_key="once")
    again = pg_engine.send(started.id, "increment", idempotency_key="once")
    assert (retried.context, again.context, again.revision) == ({"count": 1}, {"count": 1}, 2)


def test_a_connection_lost_before_the_commit_was_sent_changed_nothing_and_says_so(
    pg_engine: Engine,
) -> None:
    """A start with a business key learns whether the key is taken before it commits; the
    connection lost at that point is known to have changed nothing."""
    install_cut(pg_engine, "turnout_instances", "insert")
    with pytest.raises(DatabaseUnavailable) as lost:
        pg_engine.start("counter", {"count": 0}, key="order-1")
    assert lost.value.outcome_unknown is False
    assert str(lost.value).endswith("(nothing was changed)")
    remove_cut(pg_engine, "turnout_instances")
    assert pg_engine.instances() == []
    assert pg_engine.start("counter", {"count": 0}, key="order-1").key == "order-1"
