"""The order service's HTTP side: its routes, and the lifespan that runs turnout inside it.

On start the lifespan deploys `order.yaml` and runs, until shutdown: the engine's worker on
the application's own event loop (`await engine.work()`: the `async def` handlers of
`shop.py` run there), the consumer that applies payment events from the payments stream,
and the relay that publishes every committed state change to the changes stream. The
consumer and the relay are synchronous loops, so each has a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from engine import (
    AsyncEngine,
    Conflict,
    DatabaseUnavailable,
    Instance,
    InvalidInput,
    NotFound,
    TurnoutError,
)
from engine.brokers import Consumer, Relay, open_publisher, open_source

from .shop import DEFINITION, Order, Settings, Shop, register_handlers

DEFINITION_NAME = "order"
STATUS = {NotFound: 404, Conflict: 409, InvalidInput: 422, DatabaseUnavailable: 503}


class Booking(BaseModel):
    """What the fake carrier is asked to ship."""

    order: str | None = Field(max_length=200)
    address: str = Field(min_length=1, max_length=500)


def order_view(instance: Instance) -> dict[str, Any]:
    """An order as the API shows it: its id is the instance's business key."""
    return {
        "id": instance.key,
        "state": instance.state,
        "status": instance.status,
        "revision": instance.revision,
        "context": instance.context,
        "error": instance.error,
        "instance": instance.id,
    }


def in_thread(
    name: str, loop: Callable[[threading.Event], None], stop: threading.Event
) -> threading.Thread:
    """Start a synchronous loop (`relay.run`, `consumer.run`) in a thread; until `stop`."""
    thread = threading.Thread(target=loop, args=(stop,), name=name, daemon=True)
    thread.start()
    return thread


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = AsyncEngine(settings.database)
    await engine.deploy(DEFINITION)
    if settings.carrier_url is None:  # this application's own carrier, called in process
        carrier = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop")
    else:
        carrier = httpx.AsyncClient(base_url=settings.carrier_url, timeout=10)
    shop = Shop(settings, carrier)
    register_handlers(engine, shop)
    # Opening may connect (NATS, RabbitMQ): done in a thread, as the engine's calls are.
    publisher = await asyncio.to_thread(open_publisher, settings.changes)
    source = await asyncio.to_thread(open_source, settings.payments)
    relay = Relay(engine.sync, publisher, settings.relay_name, definitions=[DEFINITION_NAME])
    consumer = Consumer(engine.sync, source)
    stop = threading.Event()
    threads = [
        in_thread("order-relay", relay.run, stop),
        in_thread("payments-consumer", consumer.run, stop),
    ]
    packing = asyncio.create_task(shop.packing_station())
    worker = asyncio.create_task(engine.work(concurrency=settings.concurrency))
    app.state.engine, app.state.shop = engine, shop
    app.state.relay, app.state.consumer = relay, consumer
    try:
        yield
    finally:
        worker.cancel()  # claims no more, finishes and answers the tasks in hand
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        packing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await packing
        publisher.close()
        source.close()
        await carrier.aclose()
        await engine.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The order service; `settings` say which database and streams it uses."""
    app = FastAPI(title="order service", lifespan=lifespan)
    app.state.settings = settings or Settings()

    @app.exception_handler(TurnoutError)
    async def turnout_error(request: Request, exc: TurnoutError) -> JSONResponse:
        status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
        return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status)

    def engine_of(request: Request) -> AsyncEngine:
        engine: AsyncEngine = request.app.state.engine
        return engine

    @app.post("/orders", status_code=201)
    async def take_order(order: Order, request: Request) -> dict[str, Any]:
        """Start an order; it waits for its payment event."""
        key = f"ord-{uuid.uuid4().hex[:12]}"
        started = await engine_of(request).start(DEFINITION_NAME, order.model_dump(), key=key)
        return order_view(started)

    @app.get("/orders/{order_id}")
    async def show_order(order_id: str, request: Request) -> dict[str, Any]:
        return order_view(await engine_of(request).get_by_key(DEFINITION_NAME, order_id))

    @app.post("/orders/{order_id}/cancel")
    async def cancel_order(order_id: str, request: Request) -> dict[str, Any]:
        """Cancel an order still waiting for its payment (409 once it is paid)."""
        engine = engine_of(request)
        return order_view(await engine.send_by_key(DEFINITION_NAME, order_id, "cancel"))

    @app.get("/stock")
    async def show_stock(request: Request) -> dict[str, int]:
        shop: Shop = request.app.state.shop
        return dict(shop.stock)

    @app.post("/carrier/shipments", status_code=201)
    async def book_shipment(
        booking: Booking, request: Request, idempotency_key: str = Header(max_length=200)
    ) -> dict[str, Any]:
        """The fake carrier: one tracking number per idempotency key, however often asked."""
        shop: Shop = request.app.state.shop
        known = shop.bookings.get(idempotency_key)
        if known is None:
            tracking = f"FPC{len(shop.bookings) + 1:08d}"
            known = {"tracking": tracking, "carrier": "Fake Parcel Co", "order": booking.order}
            shop.bookings[idempotency_key] = known
        return known

    return app
