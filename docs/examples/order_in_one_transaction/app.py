"""A FastAPI + SQLModel shop whose order row and order workflow share one transaction.

`POST /orders` inserts the order row and starts its `checkout` workflow in the same SQLModel
session: one commit makes both visible, and a failure anywhere before it (the order number
already taken, say) leaves neither. `POST /orders/{number}/payment` records the payment on
the row and sends the workflow its `paid` event in one transaction too, the payment id as
idempotency key, so a payment posted twice is applied once.
"""

# No `from __future__ import annotations`: FastAPI reads the route parameters' annotations,
# and `Db` is local to create_app.
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from pydantic import Field as Checked
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, create_engine, select

from engine import Engine, EventRejected

DEFINITION = Path(__file__).with_name("checkout.yaml")


class Order(SQLModel, table=True):
    """The application's own table: turnout's tables sit beside it in the same database."""

    __tablename__ = "shop_order"

    number: str = Field(primary_key=True, max_length=40)
    item: str
    quantity: int
    payment_id: str | None = None
    workflow_id: str = Field(max_length=40)


class NewOrder(BaseModel):
    number: str = Checked(min_length=1, max_length=40)
    item: str = Checked(min_length=1)
    quantity: int = Checked(gt=0)


class Payment(BaseModel):
    payment_id: str = Checked(min_length=1, max_length=200)


def create_app(database: str, *, worker: bool = False) -> FastAPI:
    """The shop on `database` (any SQLAlchemy URL turnout accepts); with `worker`, a
    worker thread runs the workflows' tasks and timers while the app serves."""
    workflows = Engine(database)
    workflows.deploy(DEFINITION)
    shop_db = create_engine(database)  # the application's engine: the same database
    SQLModel.metadata.create_all(shop_db)  # the shop's tables; turnout keeps its own apart

    @workflows.task("warehouse.reserve")
    def reserve(order: dict[str, Any]) -> dict[str, Any]:
        return {"reserved": order["quantity"]}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=workflows.work, kwargs={"stop": stop}, daemon=True)
        if worker:
            thread.start()
        yield
        stop.set()
        if worker:
            thread.join()
        workflows.close()
        shop_db.dispose()

    def session() -> Iterator[Session]:
        with Session(shop_db) as opened:
            yield opened

    Db = Annotated[Session, Depends(session)]
    app = FastAPI(title="shop", lifespan=lifespan)
    app.state.workflows = workflows

    @app.post("/orders", status_code=201)
    def take_order(new: NewOrder, db: Db) -> dict[str, Any]:
        # The workflow is started in the session's transaction: nothing of it exists
        # for anyone else until the commit below, and nothing at all if it fails.
        started = workflows.start("checkout", new.model_dump(), within=db)
        db.add(Order(**new.model_dump(), workflow_id=started.id))
        try:
            db.commit()
        except IntegrityError:
            db.rollback()  # the order row and the workflow go together
            raise HTTPException(409, f"order {new.number} exists already") from None
        return {"number": new.number, "workflow": started.id, "state": started.state}

    @app.post("/orders/{number}/payment")
    def pay(number: str, payment: Payment, db: Db) -> dict[str, Any]:
        order = db.get(Order, number, with_for_update=True)
        if order is None:
            raise HTTPException(404, f"no order {number}")
        try:
            moved = workflows.send(
                order.workflow_id,
                "paid",
                payment.model_dump(),
                idempotency_key=payment.payment_id,
                within=db,
            )
        except EventRejected as exc:
            raise HTTPException(409, str(exc)) from None
        order.payment_id = payment.payment_id
        db.add(order)
        db.commit()
        return {"number": number, "state": moved.state, "revision": moved.revision}

    @app.get("/orders/{number}")
    def show(number: str, db: Db) -> dict[str, Any]:
        order = db.exec(select(Order).where(Order.number == number)).first()
        if order is None:
            raise HTTPException(404, f"no order {number}")
        flow = workflows.get(order.workflow_id)
        return {**order.model_dump(), "state": flow.state, "status": flow.status}

    return app
