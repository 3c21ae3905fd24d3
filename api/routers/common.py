"""What every router shares: error responses for the OpenAPI document, common parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Path, Query

from api.errors import ErrorRead

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorRead, "description": "Missing, unknown, expired or revoked token."},
    403: {"model": ErrorRead, "description": "Outside the client's role or grids."},
    404: {"model": ErrorRead, "description": "No such object."},
    409: {"model": ErrorRead, "description": "Conflicts with the current state."},
    422: {"model": ErrorRead, "description": "Invalid input; the detail names the field."},
}

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")]
# Ids are 32-bit integers on every backend: anything larger is refused as invalid input.
Id = Annotated[int, Path(ge=1, le=2**31 - 1, description="Object id.")]
# A change sent again with the same key and body gets the same answer (see Caller.idempotent).
IdempotencyHeader = Annotated[
    str | None,
    Header(
        max_length=128,
        description="Same key and body: the same answer; same key, other body: 409.",
    ),
]
