"""The app factory: one FastAPI application over one set of services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from api.background import RunStarter
from api.deps import PrincipalCache
from api.errors import install_error_handlers
from api.routers import gateways, integrity, lists, oversight, persons, runs, tasks
from liveness.app import Services
from liveness.db import make_engine
from liveness.settings import Settings

PREFIX = "/api/v1"
# Worker threads per process for blocking work (sync handlers, database calls); the
# connection pool is sized to match, so a thread never waits for a connection.
THREADS = 24


def api_services(settings: Settings) -> Services:
    """Return services whose connection pool matches the API's thread pool (PostgreSQL)."""
    services = Services(settings)
    if not settings.database_url.startswith("sqlite"):
        services.engine = make_engine(
            settings.database_url, pool_size=THREADS, max_overflow=THREADS // 2,
            pool_pre_ping=False,
        )  # fmt: skip
    return services


def create_app(services: Services) -> FastAPI:
    """Create the API over `services`; every route lives under /api/v1."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        yield
        # Let runs started from the API finish their transaction before the process ends.
        app.state.runs.join(timeout=60)

    app = FastAPI(
        title="liveness",
        version="1",
        summary="Non-intrusive survival certification (全息无感认证): queues, lists, callbacks.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.runs = RunStarter(services)
    # SQLite: no cache. Verifying a cached principal is a read, and a SQLite transaction
    # must begin with its write (see api.deps._lookup); the lookup stays in its own.
    if not services.settings.database_url.startswith("sqlite"):
        app.state.principals = PrincipalCache()
    install_error_handlers(app)
    for router in (runs.router, persons.router, tasks.router, gateways.router, lists.router,
                   oversight.router, integrity.router):  # fmt: skip
        app.include_router(router, prefix=PREFIX)
    return app
