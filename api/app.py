"""The app factory: one FastAPI application over one set of services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.background import RunStarter
from api.errors import install_error_handlers
from api.routers import gateways, lists, oversight, persons, runs, tasks
from liveness.app import Services

PREFIX = "/api/v1"


def create_app(services: Services) -> FastAPI:
    """Create the API over `services`; every route lives under /api/v1."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
    install_error_handlers(app)
    for router in (runs.router, persons.router, tasks.router, gateways.router, lists.router,
                   oversight.router):  # fmt: skip
        app.include_router(router, prefix=PREFIX)
    return app
