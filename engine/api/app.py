"""The FastAPI application: the JSON routes and the dashboard behind the guards, with every
error answered as JSON.

The top of the package: it imports the others, and none of them imports it.
"""

from __future__ import annotations

from fastapi import FastAPI

from ..engine import Engine
from .dashboard import router as dashboard_router
from .errors import EXCEPTION_HANDLERS
from .event_batches import router as event_batches_router
from .feed import router as feed_router
from .guards import GuardMiddleware, StreamedBodyLimit
from .instance_page import router as instance_page_router
from .list_pages import router as list_pages_router
from .metrics import router as metrics_router
from .migration_pages import router as migration_pages_router
from .migrations import router as migrations_router
from .pending import router as pending_router
from .repairs import router as repairs_router
from .routes import router as api_router
from .schedule_pages import router as schedule_pages_router
from .schedules import router as schedules_router
from .sessions import Sessions

# The names a loopback server answers to without a token (see `turnout serve`).
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]", "::1"]


def create_app(
    engine: Engine,
    token: str | None = None,
    hosts: list[str] | None = None,
    origins: list[str] | None = None,
) -> FastAPI:
    """The HTTP API and dashboard over `engine`; `token` protects every `/api` route.

    `hosts`, when given, are the only names the server answers to (the Host header);
    `origins` are names (a proxy's) whose pages may send changes besides the server's own.
    """
    app = FastAPI(
        title="turnout",
        version="0.1.0",
        description="State-machine workflows: definitions, instances, events, tasks.",
        # The interactive pages would load their scripts from a CDN; the dashboard must work
        # without a network, so only the machine-readable description is served.
        docs_url=None,
        redoc_url=None,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.engine = engine
    app.state.token = token
    app.state.sessions = Sessions()
    app.add_middleware(GuardMiddleware, token=token, hosts=hosts, origins=origins)
    app.add_middleware(StreamedBodyLimit)
    app.include_router(api_router)
    app.include_router(event_batches_router)
    app.include_router(migrations_router)
    app.include_router(repairs_router)
    app.include_router(feed_router)
    app.include_router(schedules_router)
    app.include_router(metrics_router)
    app.include_router(pending_router)
    app.include_router(dashboard_router)
    app.include_router(list_pages_router)
    app.include_router(instance_page_router)
    app.include_router(migration_pages_router)
    app.include_router(schedule_pages_router)
    return app
