"""Idempotency keys: the same change asked twice under one key is answered once."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.errors import StateRefused
from models import IdempotencyKey


class IdempotencyConflict(StateRefused):
    """A key reused for a different request."""


def request_hash(*parts: Any) -> str:
    """Return a stable SHA-256 of a request's parts (JSON with sorted keys)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def recall(session: Session, *, client: str, key: str, digest: str) -> IdempotencyKey | None:
    """Return the stored answer to this key, or None; a key reused for another request fails."""
    stored = session.scalars(
        select(IdempotencyKey).where(IdempotencyKey.client == client, IdempotencyKey.key == key)
    ).first()
    if stored is not None and stored.request_hash != digest:
        raise IdempotencyConflict(
            f"Idempotency-Key: {key!r} was used for a different request; use a new key"
        )
    return stored


def remember(
    session: Session, *, client: str, key: str, digest: str, status_code: int,
    response: dict[str, Any],
) -> None:  # fmt: skip
    """Store the answer to a key in the change's own transaction."""
    session.add(
        IdempotencyKey(
            client=client, key=key, request_hash=digest, status_code=status_code,
            response=response,
        )
    )  # fmt: skip
    session.flush()
