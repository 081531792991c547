"""The application's transaction (`within=`): the engine's writes commit with the
application's or not at all, and are published only once they have committed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from databases import in_ci
from sqlalchemy.orm import Session

from engine import (
    DuplicateKey,
    Engine,
    EventRejected,
    HistoryEntry,
    HookContext,
    InstanceNotFound,
    InvalidInput,
    transaction,
)

DEFINITION = "app_order"
DEFINITIONS = Path(__file__).parent / "definitions"
DEFINITION_FILE = DEFINITIONS / "app_order.yaml"
tables = sa.MetaData()
orders = sa.Table(
    "shop_orders",
    tables,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workflow", sa.String(64)),
)
# Checked at COMMIT: a line of no order makes the application's commit itself fail.
lines = sa.Table(
    "shop_lines",
    tables,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "order_id",
        sa.ForeignKey("shop_orders.id", deferrable=True, initially="DEFERRED"),
    ),
)


@pytest.fixture
def app(store_url: str) -> Iterator[sa.Engine]:
    """The application's own SQLAlchemy engine on the engine's database, with a table."""
    application = sa.create_engine(store_url)
    if store_url.startswith("sqlite"):  # SQLite checks foreign keys when asked to
        sa.event.listen(application, "connect", foreign_keys_on)
    tables.create_all(application)
    try:
        yield application
    finally:
        application.dispose()


@pytest.fixture
def shop(engine: Engine, deploy: Callable[[str], Any]) -> Engine:
    deploy(DEFINITION)
    deploy("approvals")
    engine.task("payments.charge")(lambda data: {"charged": True})
    return engine


@pytest.fixture
def published(shop: Engine) -> list[tuple[str, str]]:
    """What the subscribers and the in-process hooks were told, in order."""
    told: list[tuple[str, str]] = []

    def subscriber(entry: HistoryEntry) -> None:
        told.append(("entry", f"{entry.kind}:{entry.to_state}"))

    shop.subscribe(subscriber)

    @shop.on_enter(DEFINITION, "paying")
    def entered(context: HookContext) -> None:
        told.append(("hook", context.instance.id))

    return told


def foreign_keys_on(dbapi_connection: Any, record: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


def row_counts(application: sa.Engine) -> dict[str, int]:
    """The number of rows of every table of the database (the engine's and the shop's)."""
    with application.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        assert "turnout_instances" in names and "turnout_changes" in names
        return {
            name: int(conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one())
            for name in names
        }


def test_a_start_in_a_rolled_back_session_leaves_no_row_in_any_table(
    shop: Engine, app: sa.Engine, published: list[tuple[str, str]]
) -> None:
    before = row_counts(app)
    with Session(app) as session:
        session.execute(orders.insert().values(id=1))
        started = shop.start(DEFINITION, {"order": 1}, key="order-1", within=session)
        assert started.state == "paying"
        session.rollback()
    assert row_counts(app) == before
    assert published == []
    with pytest.raises(InstanceNotFound):
        shop.get(started.id)
    assert shop.run_until_idle() == 0
    again = shop.start(DEFINITION, {"order": 1}, key="order-1")  # the key was never taken
    assert again.key == "order-1"


def test_a_start_in_a_committed_session_runs_and_is_unseen_before_the_commit(
    shop: Engine, app: sa.Engine, published: list[tuple[str, str]]
) -> None:
    with Session(app) as session:
        session.execute(orders.insert().values(id=2))
        started = shop.start(DEFINITION, {"order": 2}, within=session)
        session.execute(orders.update().values(workflow=started.id))
        with pytest.raises(InstanceNotFound):  # another connection sees nothing yet
            shop.get(started.id)
        assert published == []
        session.commit()
    assert published == [("entry", "start:paying"), ("hook", started.id)]
    assert shop.run_until_idle() == 1  # a worker claims and completes its task
    assert shop.get(started.id).state == "packing"
    with app.connect() as conn:
        assert conn.execute(sa.select(orders.c.workflow)).scalar_one() == started.id


def test_an_event_rolled_back_is_not_applied_and_its_idempotency_key_is_free(
    shop: Engine, app: sa.Engine, published: list[tuple[str, str]]
) -> None:
    inst = shop.start("approvals")
    history = shop.history(inst.id)
    before = row_counts(app)
    published.clear()
    with app.connect() as conn:
        moved = shop.send(inst.id, "legal_ok", idempotency_key="msg-1", within=conn)
        assert moved.revision == inst.revision + 1
        conn.rollback()
    assert row_counts(app) == before
    assert shop.get(inst.id).revision == inst.revision
    assert shop.history(inst.id) == history
    assert published == []
    applied = shop.send(inst.id, "legal_ok", idempotency_key="msg-1")
    assert applied.revision == inst.revision + 1
    assert shop.send(inst.id, "legal_ok", idempotency_key="msg-1").revision == applied.revision


@pytest.mark.parametrize("ending", ["rollback", "commit"])
def test_a_send_waiting_on_the_applications_transaction_sees_how_it_ended(
    shop: Engine, app: sa.Engine, ending: str
) -> None:
    inst = shop.start("approvals")
    outcome: list[Any] = []
    with app.connect() as conn:
        shop.send(inst.id, "legal_ok", idempotency_key="msg-3", within=conn)
        # Another sender of the same key waits for the instance's lock (PostgreSQL) or the
        # write lock (SQLite) until the application's transaction ends, however it ends.
        other = threading.Thread(
            target=lambda: outcome.append(shop.send(inst.id, "legal_ok", idempotency_key="msg-3"))
        )
        other.start()
        getattr(conn, ending)()
    other.join(timeout=30)
    assert [moved.revision for moved in outcome] == [inst.revision + 1]
    history = [entry.kind for entry in shop.history(inst.id)]
    assert history == ["start", "event"]  # applied once: by one or the other


def test_an_event_committed_on_a_connection_is_applied_once_and_then_published(
    shop: Engine, app: sa.Engine, published: list[tuple[str, str]]
) -> None:
    inst = shop.start("approvals")
    published.clear()
    with app.begin() as conn:
        shop.send(inst.id, "legal_ok", idempotency_key="msg-2", within=conn)
        again = shop.send(inst.id, "legal_ok", idempotency_key="msg-2", within=conn)
        assert again.revision == inst.revision + 1  # the duplicate is seen in the transaction
        assert published == []
    assert published == [("entry", "event:review.legal.approved")]
    assert shop.get(inst.id).revision == inst.revision + 1


def test_a_commit_that_fails_publishes_nothing_and_leaves_nothing(
    shop: Engine, app: sa.Engine, published: list[tuple[str, str]]
) -> None:
    before = row_counts(app)
    with app.connect() as conn:
        shop.start(DEFINITION, within=conn)
        conn.execute(lines.insert().values(id=1, order_id=404))
        with pytest.raises(sa.exc.IntegrityError):
            conn.commit()
    with Session(app) as session:
        shop.start(DEFINITION, within=session)
        session.execute(lines.insert().values(id=2, order_id=404))
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()
    assert published == []
    assert shop.instances() == []
    # SQLite keeps a transaction whose COMMIT failed open, on the pooled connection, until
    # it is rolled back: closing the application's connections does.
    app.dispose()
    assert row_counts(app) == before
    assert shop.run_until_idle() == 0


def test_a_failing_call_leaves_the_applications_transaction_usable(
    shop: Engine, app: sa.Engine
) -> None:
    shop.start(DEFINITION, key="taken")
    waiting = shop.start("approvals")
    with Session(app) as session:
        session.execute(orders.insert().values(id=3))
        with pytest.raises(DuplicateKey):
            shop.start(DEFINITION, key="taken", within=session)
        with pytest.raises(EventRejected):
            shop.send(waiting.id, "no_such_event", within=session)
        session.execute(orders.insert().values(id=4))
        session.commit()
    with app.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(orders)).scalar_one() == 2
    assert shop.get(waiting.id).revision == waiting.revision


def test_a_rolled_back_savepoint_takes_its_start_and_its_publication_with_it(
    shop: Engine, app: sa.Engine, published: list[tuple[str, str]]
) -> None:
    with Session(app) as session:
        kept = shop.start(DEFINITION, {"n": 1}, within=session)
        nested = session.begin_nested()
        dropped = shop.start(DEFINITION, {"n": 2}, within=session)
        nested.rollback()
        session.commit()
    assert published == [("entry", "start:paying"), ("hook", kept.id)]
    assert shop.get(kept.id).status == "running"
    with pytest.raises(InstanceNotFound):
        shop.get(dropped.id)


def test_a_savepoint_opened_before_the_first_call_is_followed_too(
    shop: Engine, app: sa.Engine, published: list[tuple[str, str]]
) -> None:
    with app.connect() as conn:
        conn.begin()
        outer = conn.begin_nested()
        inner = conn.begin_nested()
        dropped = shop.start(DEFINITION, within=conn)
        inner.rollback()
        kept = shop.start(DEFINITION, within=conn)
        outer.commit()
        conn.commit()
    assert published == [("entry", "start:paying"), ("hook", kept.id)]
    with pytest.raises(InstanceNotFound):
        shop.get(dropped.id)


def test_send_by_key_finds_an_instance_started_in_the_same_transaction(
    shop: Engine, app: sa.Engine
) -> None:
    with Session(app) as session:
        shop.start(DEFINITION, key="order-9", within=session)
        with pytest.raises(EventRejected):  # still paying: `ship` is not yet accepted
            shop.send_by_key(DEFINITION, "order-9", "ship", within=session)
        moved = shop.send_by_key(DEFINITION, "order-9", "cancel", within=session)
        assert moved.status == "failed"
        session.commit()
    assert shop.get_by_key(DEFINITION, "order-9").state == "dropped"


def test_start_many_and_send_many_commit_or_roll_back_with_the_application(
    shop: Engine, app: sa.Engine, published: list[tuple[str, str]]
) -> None:
    before = row_counts(app)
    with Session(app) as session:
        ids = shop.start_many("approvals", [{}, {}, {}], batch=2, within=session)
        outcomes = shop.send_many(
            [(ids[0], "legal_ok"), (ids[1], "nothing"), ("missing", "legal_ok")], within=session
        )
        assert [o.outcome for o in outcomes] == ["applied", "rejected", "not_found"]
        session.rollback()
    assert row_counts(app) == before
    assert published == []
    with Session(app) as session:
        ids = shop.start_many("approvals", [{}, {}], within=session)
        shop.send_many([(ids[0], "legal_ok", None, "k")], within=session)
        session.commit()
    assert [shop.get(i).revision for i in ids] == [2, 1]
    assert len(published) == 3


def test_a_write_the_database_refuses_in_send_many_fails_only_its_event(
    shop: Engine, app: sa.Engine, deploy: Callable[[str], Any], monkeypatch: Any
) -> None:
    remember = transaction.Transaction.remember_idempotency

    def refusing(tx: transaction.Transaction, instance_id: str, key: str, now: Any) -> None:
        remember(tx, instance_id, key, now)
        if key == "refused":  # the same key twice: the database refuses the second
            remember(tx, instance_id, key, now)

    deploy("counter")
    counter = shop.start("counter", {"count": 0}).id
    monkeypatch.setattr(transaction.Transaction, "remember_idempotency", refusing)
    with Session(app) as session:
        outcomes = shop.send_many(
            [
                (counter, "increment"),
                (counter, "increment", None, "refused"),
                (counter, "increment", None, "fine"),
            ],
            within=session,
        )
        assert [o.outcome for o in outcomes] == ["applied", "invalid", "applied"]
        session.execute(orders.insert().values(id=7))  # the transaction is still usable
        session.commit()
    assert shop.get(counter).context == {"count": 2}
    assert len(shop.history(counter)) == 3
    with app.connect() as conn:
        assert conn.execute(sa.select(orders.c.id)).scalar_one() == 7


def test_a_connection_to_another_database_is_refused(
    shop: Engine, tmp_path: Any, store_url: str
) -> None:
    if store_url.startswith("sqlite"):
        other = sa.create_engine(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    else:
        other = sa.create_engine(store_url.split("?")[0])  # the server's default schema
    try:
        with Session(other) as session, pytest.raises(InvalidInput, match="not on the engine"):
            shop.start(DEFINITION, within=session)
    finally:
        other.dispose()
    memory = sa.create_engine("sqlite://")
    try:
        with memory.connect() as conn, pytest.raises(InvalidInput, match="not on the engine"):
            shop.send(shop.start("approvals").id, "legal_ok", within=conn)
    finally:
        memory.dispose()
    with pytest.raises(InvalidInput, match="Connection or Session"):
        shop.start(DEFINITION, within="a transaction")
    assert [i.definition for i in shop.instances()] == ["approvals"]


def test_an_async_session_given_to_the_synchronous_engine_is_refused(
    shop: Engine, store_url: str
) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    application = create_async_engine(async_url(store_url))
    with pytest.raises(InvalidInput, match="AsyncEngine"):
        shop.start(DEFINITION, within=AsyncSession(application))
    asyncio.run(application.dispose())
    assert shop.instances() == []


@pytest.mark.postgres
def test_an_autocommit_connection_is_refused(postgres_url: str, clock: Any) -> None:
    with Engine(postgres_url, clock=clock) as eng:
        eng.deploy(DEFINITION_FILE)
        application = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        try:
            with application.connect() as conn, pytest.raises(InvalidInput, match="autocommit"):
                eng.start(DEFINITION, within=conn)
        finally:
            application.dispose()
        assert eng.instances() == []


# -- the asyncio forms: AsyncEngine given an AsyncSession or an AsyncConnection -----------------
def async_url(store_url: str) -> str:
    """The application's asyncio URL of the same database (aiosqlite for an SQLite file)."""
    if store_url.startswith("sqlite"):
        if not in_ci():  # a dev dependency: CI has it
            pytest.importorskip("aiosqlite")
        return store_url.replace("sqlite://", "sqlite+aiosqlite://", 1)
    return store_url  # psycopg serves asyncio as well


def test_an_async_session_commits_or_rolls_back_the_start_with_the_application(
    store_url: str, clock: Any
) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from engine import AsyncEngine

    async def scenario() -> None:
        application = create_async_engine(async_url(store_url))
        told: list[str] = []
        async with AsyncEngine(store_url, clock) as aeng:
            await aeng.deploy(DEFINITION_FILE)
            aeng.task("payments.charge")(lambda data: {"charged": True})
            aeng.subscribe(lambda entry: told.append(f"{entry.kind}:{entry.to_state}"))
            async with application.begin() as conn:
                await conn.run_sync(tables.create_all)
            before = await asyncio_counts(application)
            async with AsyncSession(application) as session:
                await session.execute(orders.insert().values(id=1))
                dropped = await aeng.start(DEFINITION, key="o-1", within=session)
                await session.rollback()
            assert await asyncio_counts(application) == before
            assert told == []
            with pytest.raises(InstanceNotFound):
                await aeng.get(dropped.id)
            async with AsyncSession(application) as session:
                await session.execute(orders.insert().values(id=1))
                started = await aeng.start(DEFINITION, key="o-1", within=session)
                assert told == []
                await session.commit()
            assert told == ["start:paying"]
            assert await aeng.run_until_idle() == 1
            assert (await aeng.get(started.id)).state == "packing"
        await application.dispose()

    asyncio.run(scenario())


def test_an_async_connection_carries_events_and_their_idempotency_keys(
    store_url: str, clock: Any
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from engine import AsyncEngine

    async def scenario() -> None:
        application = create_async_engine(async_url(store_url))
        async with AsyncEngine(store_url, clock) as aeng:
            await aeng.deploy(DEFINITIONS / "approvals.yaml")
            inst = await aeng.start("approvals")
            told: list[str] = []
            aeng.subscribe(lambda entry: told.append(f"{entry.kind}:{entry.event}"))
            async with application.connect() as conn:
                await aeng.send(inst.id, "legal_ok", idempotency_key="m", within=conn)
                outcomes = await aeng.send_many([(inst.id, "finance_ok")], within=conn)
                assert [o.outcome for o in outcomes] == ["applied"]
                await conn.rollback()
            assert (await aeng.get(inst.id)).revision == inst.revision
            assert told == []
            async with application.begin() as conn:
                moved = await aeng.send(inst.id, "legal_ok", idempotency_key="m", within=conn)
                ids = await aeng.start_many("approvals", [{}], within=conn)
            assert moved.revision == inst.revision + 1
            assert told == ["event:legal_ok", "start:None"]
            assert (await aeng.get(ids[0])).state == "review"
        await application.dispose()

    asyncio.run(scenario())


async def asyncio_counts(application: Any) -> dict[str, int]:
    async with application.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        return {
            name: int((await conn.execute(sa.text(f'SELECT count(*) FROM "{name}"'))).scalar_one())
            for name in names
        }


def test_a_scheduled_or_debounced_start_commits_or_rolls_back_with_the_application(
    shop: Engine, app: sa.Engine, clock: Any
) -> None:
    before = row_counts(app)
    with Session(app) as session:
        session.execute(orders.insert().values(id=5))
        shop.start(DEFINITION, {"order": 5}, key="order-5", delay=60, within=session)
        shop.start(DEFINITION, {"order": 6}, key="order-6", debounce=30, within=session)
        session.rollback()
    assert row_counts(app) == before  # no instance, no timer
    with Session(app) as session:
        later = shop.start(DEFINITION, {"order": 5}, key="order-5", delay=60, within=session)
        first = shop.start(DEFINITION, {"n": 1}, key="order-6", debounce=30, within=session)
        again = shop.start(DEFINITION, {"order": 6}, key="order-6", debounce=30, within=session)
        assert first.id == again.id and again.context == {"order": 6}
        with pytest.raises(InstanceNotFound):  # unseen before the commit
            shop.get(later.id)
        session.commit()
    assert {shop.get(i).status for i in (later.id, again.id)} == {"scheduled"}
    clock.advance(60)
    shop.run_until_idle()
    assert shop.get(later.id).state == "packing" and shop.get(again.id).state == "packing"
