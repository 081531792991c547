"""The shop the order workflow works for: its settings, its stock, its packing station and
its carrier client, and the `async def` task handlers that use them.

Everything here lives on the application's event loop: the stock is guarded by an
`asyncio.Lock`, the packing station takes jobs from an `asyncio.Queue` and answers each
through an `asyncio.Future`, the carrier is called with an `httpx.AsyncClient`. The handlers
can await them because `AsyncEngine.work` runs `async def` handlers on that same loop.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from engine import AsyncEngine, TaskContext

DEFINITION = Path(__file__).with_name("order.yaml")
REDIS = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Settings:
    """Where the service keeps its orders and which streams it reads and writes.

    `carrier_url` is where the carrier's booking endpoint is; None calls this application's
    own fake carrier in process (what the tests do), `python -m docs.examples.order_service`
    passes the address it serves on, so the call goes over the network."""

    database: str = "sqlite:///order_service.db"
    payments: str = f"{REDIS}?stream=payments&group=order-service"
    changes: str = f"{REDIS}?stream=order-changes"
    relay_name: str = "order-service"
    carrier_url: str | None = None
    stock: dict[str, int] = field(default_factory=lambda: {"widget": 10, "gadget": 3})
    concurrency: int = 8
    packing_seconds: float = 0.0  # how long packing takes, to watch an order in `packing`


class Order(BaseModel):
    """What a customer orders: the body of POST /orders, the workflow's start data, and the
    typed input of every task (the handlers get the order's context built into it)."""

    item: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=1000)
    amount: float = Field(ge=0)
    address: str = Field(min_length=1, max_length=500)


@dataclass
class PackingJob:
    order: str | None
    quantity: int
    parcel: asyncio.Future[dict[str, Any]]


@dataclass(frozen=True)
class Handled:
    """A handler call, as the shop saw it: which task, for which order, on which loop."""

    task: str
    order: str | None
    attempt: int
    loop: asyncio.AbstractEventLoop


class Shop:
    """The application's own state, made on its event loop (in the FastAPI lifespan)."""

    def __init__(self, settings: Settings, carrier: httpx.AsyncClient) -> None:
        self.loop = asyncio.get_running_loop()
        self.stock = dict(settings.stock)
        self.stock_lock = asyncio.Lock()
        self.reservations: dict[str, int] = {}  # idempotency key -> quantity taken
        self.packing: asyncio.Queue[PackingJob] = asyncio.Queue()
        self.packing_seconds = settings.packing_seconds
        self.parcels = itertools.count(1)
        self.carrier = carrier
        self.bookings: dict[str, dict[str, Any]] = {}  # the fake carrier's, by idempotency key
        self.handled: list[Handled] = []

    def saw(self, context: TaskContext) -> None:
        self.handled.append(
            Handled(context.task_name, context.key, context.attempt, asyncio.get_running_loop())
        )

    async def packing_station(self) -> None:
        """Pack orders one at a time, as long as the application runs."""
        while True:
            job = await self.packing.get()
            if self.packing_seconds:
                await asyncio.sleep(self.packing_seconds)
            if not job.parcel.done():  # its handler may have been cancelled meanwhile
                number = next(self.parcels)
                job.parcel.set_result({"id": f"PCL-{number:05d}", "items": job.quantity})
            self.packing.task_done()


def register_handlers(engine: AsyncEngine, shop: Shop) -> None:
    """The order workflow's tasks, each an `async def` awaiting something of the shop."""

    @engine.task("stock.reserve")
    async def reserve(order: Order, context: TaskContext) -> dict[str, Any]:
        shop.saw(context)
        async with shop.stock_lock:
            if context.idempotency_key in shop.reservations:  # taken by an earlier attempt
                return {"reserved": True}
            left = shop.stock.get(order.item, 0)
            if left < order.quantity:
                return {"reserved": False}
            shop.stock[order.item] = left - order.quantity
            shop.reservations[context.idempotency_key] = order.quantity
        return {"reserved": True}

    @engine.task("warehouse.pack")
    async def pack(order: Order, context: TaskContext) -> dict[str, Any]:
        shop.saw(context)
        parcel: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        await shop.packing.put(PackingJob(context.key, order.quantity, parcel))
        return await parcel

    @engine.task("carrier.book")
    async def book(order: Order, context: TaskContext) -> dict[str, Any]:
        shop.saw(context)
        answer = await shop.carrier.post(
            "/carrier/shipments",
            json={"order": context.key, "address": order.address},
            headers={"Idempotency-Key": context.idempotency_key},
        )
        answer.raise_for_status()  # an error fails the attempt; the retry policy books again
        booking: dict[str, Any] = answer.json()
        return booking
