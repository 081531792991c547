"""An example application embedding turnout: a FastAPI order service that takes orders over
HTTP, applies payment events from a Redis stream, runs the order workflow (`order.yaml`) with
`async def` handlers on its own event loop, and publishes every state change to another
Redis stream. Run it with `python -m docs.examples.order_service` (or `make example`); the
README beside this file walks through it with curl."""

from .app import create_app
from .shop import Order, Settings

__all__ = ["Order", "Settings", "create_app"]
