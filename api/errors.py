"""The one error body, and the handlers that turn every failure into it (never a traceback)."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from liveness.errors import LivenessError

logger = logging.getLogger("liveness.api")


class ErrorRead(BaseModel):
    """Every error the API answers: a short code and a readable detail."""

    error: str
    detail: Any


def error_code(error: BaseException) -> str:
    """Return the snake_case name of an error's class: NotFound -> not_found."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def _body(status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse(
        status_code=status, content={"error": error, "detail": detail}, headers=headers
    )


def _field(location: tuple[Any, ...]) -> str:
    """Name a field from a validation error's location, without the 'body'/'query' prefix."""
    parts = [str(part) for part in location]
    return ".".join(parts[1:] if len(parts) > 1 else parts)


def install_error_handlers(app: FastAPI) -> None:
    """Map engine errors by their http_status, and everything else to the same body."""

    @app.exception_handler(LivenessError)
    async def _liveness(request: Request, error: LivenessError) -> Any:
        headers = {"WWW-Authenticate": "Bearer"} if error.http_status == 401 else None
        return _body(error.http_status, error_code(error), str(error), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> Any:
        detail = [
            {"field": _field(tuple(item.get("loc", ()))), "message": str(item.get("msg", ""))}
            for item in error.errors()
        ]
        return _body(422, "validation_error", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Any:
        return _body(
            error.status_code, "http_error", str(error.detail), dict(error.headers or {}) or None
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, error: IntegrityError) -> Any:
        # Two requests raced for the same unique thing (a key, a sequence number): retryable.
        logger.warning("integrity conflict on %s: %s", request.url.path, error.orig)
        return _body(409, "conflict", "a concurrent request changed the same data; retry")

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, error: OperationalError) -> Any:
        if "locked" in str(error.orig) or "busy" in str(error.orig).lower():
            # SQLite lets one writer at a time: the caller may simply retry.
            return _body(503, "busy", "the database is busy; retry", {"Retry-After": "1"})
        logger.exception("database error on %s", request.url.path)
        return _body(500, "internal_error", "a database error occurred; it was logged")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Any:
        logger.exception("unexpected error on %s", request.url.path)
        return _body(500, "internal_error", f"an unexpected {type(error).__name__}; it was logged")
