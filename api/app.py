"""The app factory: one FastAPI application over one set of services."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.background import RunStarter
from api.deps import PrincipalCache, ReadPool
from api.errors import RefuseNul, install_error_handlers
from api.routers import deaths, gateways, integrity, lists, oversight, persons, runs, tasks
from api.web import approvals, orders, pages, sign_in, supervision
from api.web import oversight as web_oversight
from api.web import whatif as web_whatif
from api.web.session import SessionSigner
from liveness.db import make_engine
from liveness.services import Services
from liveness.settings import Settings
from models import utcnow

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
        # The startup heap (modules, routes, schemas: some 300,000 objects) is not garbage;
        # left in the collector's care, every full collection walked it for ~200 ms, the worst
        # of the tail. Frozen, a collection walks only what was allocated since. (No collect
        # first: it would cost as much, and what garbage there is now is bounded.)
        gc.freeze()
        yield
        # Let runs started from the API finish their transaction before the process ends.
        app.state.runs.join(timeout=60)
        if app.state.reads is not None:
            app.state.reads.close()
        gc.unfreeze()  # an app created again in this process (tests) freezes afresh

    app = FastAPI(
        title="liveness",
        version="1",
        summary="Non-intrusive survival certification (全息无感认证): queues, lists, callbacks.",
        lifespan=lifespan,
        # Off unless enabled (settings.api_docs): no map of the routes for strangers.
        docs_url="/docs" if services.settings.api_docs else None,
        redoc_url="/redoc" if services.settings.api_docs else None,
        openapi_url="/openapi.json" if services.settings.api_docs else None,
    )
    app.state.services = services
    app.state.runs = RunStarter(services)
    # SQLite: no cache. Verifying a cached principal is a read, and a SQLite transaction
    # must begin with its write (see api.deps._lookup); the lookup stays in its own.
    if not services.settings.database_url.startswith("sqlite"):
        app.state.principals = PrincipalCache()
    # PostgreSQL: the grid queue and the list feed read, audit and commit in one statement
    # awaited on the event loop (api.deps.ReadPool); SQLite keeps the session path.
    app.state.reads = (
        None
        if services.settings.database_url.startswith("sqlite")
        else ReadPool(services.settings.database_url)
    )
    install_error_handlers(app)
    app.add_middleware(RefuseNul)
    for router in (runs.router, persons.router, tasks.router, gateways.router, lists.router,
                   oversight.router, integrity.router, deaths.router):  # fmt: skip
        app.include_router(router, prefix=PREFIX)
    _install_pages(app, services)
    return app


def _install_pages(app: FastAPI, services: Services) -> None:
    """Serve the web pages and their stylesheet under /web (the root sends browsers there)."""
    settings = services.settings
    secret = None if settings.web_secret is None else settings.web_secret.get_secret_value()
    app.state.web_signer = SessionSigner(secret, max_age_s=settings.web_session_minutes * 60)
    # Errors under /web answer as pages (api.errors._body), a missing session as sign-in.
    app.state.page_errors = pages.error_response

    @app.exception_handler(pages.SignInRequired)
    async def sign_in_required(request: Request, error: pages.SignInRequired) -> Response:
        return await pages.sign_in_again(request)

    # The pages' clock (sign-in lock-outs, code windows): tests move it instead of sleeping.
    app.state.clock = utcnow
    app.mount("/web/static", StaticFiles(directory=pages.HERE / "static"), name="web-static")
    app.include_router(pages.router)
    app.include_router(sign_in.router)
    app.include_router(orders.router)
    app.include_router(approvals.router)
    app.include_router(web_oversight.router)
    app.include_router(supervision.router)
    app.include_router(web_whatif.router)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/web/", 307)
