"""Web sessions known to the server: opened at sign-in, checked on every page, ended at sign-out."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from liveness.access.service import Principal, Unauthenticated, hash_token, principal_by_id
from models import WebSessionRecord


def open_web_session(session: Session, *, client_id: int, now: dt.datetime, minutes: int) -> str:
    """Record a new web session of a client and return its key (only its hash is stored)."""
    key = secrets.token_urlsafe(32)
    session.add(
        WebSessionRecord(
            key_hash=hash_token(key), client_id=client_id, created_at=now,
            expires_at=now + dt.timedelta(minutes=minutes),
        )
    )  # fmt: skip
    session.flush()
    return key


def web_session_principal(
    session: Session, *, key: str, client_id: int, now: dt.datetime
) -> Principal:
    """Return the client of a live web session; refuse one unknown, ended, expired or revoked."""
    record = session.scalars(
        select(WebSessionRecord).where(WebSessionRecord.key_hash == hash_token(key))
    ).first()
    if record is None or record.client_id != client_id:
        raise Unauthenticated("the web session is not known")
    if record.ended_at is not None:
        raise Unauthenticated("the web session was ended")
    if record.expires_at <= now:
        raise Unauthenticated("the web session has expired")
    return principal_by_id(session, client_id=client_id, now=now)


def end_web_session(session: Session, *, key: str, now: dt.datetime) -> bool:
    """End a web session now; return whether a live one was ended."""
    ended = session.execute(
        update(WebSessionRecord)
        .where(WebSessionRecord.key_hash == hash_token(key), WebSessionRecord.ended_at.is_(None))
        .values(ended_at=now)
    )
    return bool(ended.rowcount)  # type: ignore[attr-defined]
