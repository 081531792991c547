"""`GET /metrics`: the engine's metrics in Prometheus's text format (see prometheus.py).

Behind the same guard as `/api`: with a token set, a scrape sends it
(`Authorization: Bearer <token>`, Prometheus's `authorization` setting).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .routes import engine_of

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """This process's counters and the database's queues, for Prometheus to scrape."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    registry = engine_of(request).metrics_registry()
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
