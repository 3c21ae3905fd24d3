"""The one error body, and the handlers that turn every failure into it (never a traceback)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import AuditIntent, record_refusal
from liveness.access import Forbidden
from liveness.errors import Hidden, LivenessError, NotFound

logger = logging.getLogger("liveness.api")


class ErrorRead(BaseModel):
    """Every error the API answers: a short code and a readable detail."""

    error: str
    detail: Any


def error_code(error: BaseException) -> str:
    """Return the snake_case name of an error's class: NotFound -> not_found.

    A hidden object answers as an absent one (not_found), so the code does not tell them apart.
    """
    kind = NotFound if isinstance(error, Hidden) else type(error)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()


# Renders an error under /web as a page (api.web.pages.error_response, set by the app).
PageErrors = Callable[[Request, int, str | None], Awaitable[Response]]


async def _body(
    request: Request, status: int, error: str, detail: Any,
    headers: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    """Answer an error: a page under /web, the JSON error body everywhere else."""
    pages: PageErrors | None = getattr(request.app.state, "page_errors", None)
    if pages is not None and (request.url.path + "/").startswith("/web/"):
        return await pages(request, status, detail if isinstance(detail, str) else None)
    return JSONResponse(
        status_code=status, content={"error": error, "detail": detail}, headers=headers
    )


async def _audit_refusal(request: Request, error: LivenessError) -> None:
    """Audit a refusal (forbidden, hidden as absent, four eyes) under what the request attempted."""
    intent: AuditIntent | None = getattr(request.state, "audit_intent", None)
    if intent is None:
        return
    reason = "out_of_scope" if isinstance(error, Hidden) else "forbidden"
    if error.audit_refusal:
        reason = str(error)
    await run_in_threadpool(
        record_refusal, request.app.state.services, intent, status=error.http_status,
        reason=reason,
    )  # fmt: skip


class RefuseNul:
    """Refuse a request whose address holds a NUL character, before anything reads it.

    No person, grid or filter is named with one, and PostgreSQL stores no text holding one:
    let through, it failed the audit entry of the very request (a 500, and no record of the
    attempt). A pure ASGI middleware: the requests that pass pay one scan of their address.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Answer 400 to an address with a NUL character; pass every other request on."""
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")
        ):
            detail = "the address holds a NUL character (%00), which names nothing here"
            response = await _body(Request(scope), 400, "bad_request", detail)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _field(location: tuple[Any, ...]) -> str:
    """Name a field from a validation error's location, without the 'body'/'query' prefix."""
    parts = [str(part) for part in location]
    return ".".join(parts[1:] if len(parts) > 1 else parts)


def install_error_handlers(app: FastAPI) -> None:
    """Map engine errors by their http_status, and everything else to the same body."""

    @app.exception_handler(LivenessError)
    async def _liveness(request: Request, error: LivenessError) -> Any:
        if isinstance(error, Forbidden | Hidden) or error.audit_refusal:
            await _audit_refusal(request, error)
        headers = {"WWW-Authenticate": "Bearer"} if error.http_status == 401 else None
        return await _body(request, error.http_status, error_code(error), str(error), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> Any:
        detail = [
            {"field": _field(tuple(item.get("loc", ()))), "message": str(item.get("msg", ""))}
            for item in error.errors()
        ]
        if request.url.path.startswith("/web/"):
            # A page's address that does not parse (/web/tasks/abc) names nothing there is.
            return await _body(request, 404, "not_found", None)
        return await _body(request, 422, "validation_error", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Any:
        return await _body(
            request,
            error.status_code,
            "http_error",
            str(error.detail),
            dict(error.headers or {}) or None,
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, error: IntegrityError) -> Any:
        # Two requests raced for the same unique thing (a key, a sequence number): retryable.
        logger.warning("integrity conflict on %s: %s", request.url.path, error.orig)
        return await _body(
            request, 409, "conflict", "a concurrent request changed the same data; retry"
        )

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, error: OperationalError) -> Any:
        if "locked" in str(error.orig) or "busy" in str(error.orig).lower():
            # SQLite lets one writer at a time: the caller may simply retry.
            return await _body(
                request, 503, "busy", "the database is busy; retry", {"Retry-After": "1"}
            )
        logger.exception("database error on %s", request.url.path)
        return await _body(
            request, 500, "internal_error", "a database error occurred; it was logged"
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Any:
        logger.exception("unexpected error on %s", request.url.path)
        return await _body(
            request, 500, "internal_error", f"an unexpected {type(error).__name__}; it was logged"
        )
