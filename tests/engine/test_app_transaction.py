"""The application's transaction (`within=`): the engine's writes commit with the
application's or not at all, and are published only once they have committed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engine import (
    DuplicateKey,
    Engine,
    EventRejected,
    HistoryEntry,
    HookContext,
    InstanceNotFound,
    InvalidInput,
)

DEFINITION = "app_order"
orders = sa.Table(
    "shop_orders",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workflow", sa.String(64)),
)


@pytest.fixture
def app(store_url: str) -> Iterator[sa.Engine]:
    """The application's own SQLAlchemy engine on the engine's database, with a table."""
    application = sa.create_engine(store_url)
    orders.metadata.create_all(application)
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
    with pytest.raises(InvalidInput, match="Connection or Session"):
        shop.start(DEFINITION, within="a transaction")


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


DEFINITION_FILE = __import__("pathlib").Path(__file__).parent / "definitions" / "app_order.yaml"
