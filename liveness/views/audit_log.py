"""The audit log as auditors read it: filtered, newest first, refusals told apart."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from models import AuditEntry

# A refused attempt is recorded as the action it attempted, with this ending.
REFUSED_SUFFIX = ".refused"


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to show: by actor, action, object (type and reference), local days."""

    actor: str = ""
    action: str = ""
    refused: bool = False  # only refused attempts
    target_type: str = ""
    target_ref: str = ""
    first_day: dt.date | None = None
    last_day: dt.date | None = None


@dataclass(frozen=True)
class AuditLine:
    """One audit entry, its time in the agency's zone, and whether it was a refusal."""

    id: int
    at: dt.datetime
    actor: str
    action: str
    refused: bool
    target_type: str
    target_ref: str | None
    detail: dict[str, Any]
    remote_addr: str | None


def _condition(chosen: AuditFilter, zone: ZoneInfo) -> ColumnElement[bool]:
    """Return the SQL condition of a filter; local days become the zone's midnights in UTC."""
    parts: list[ColumnElement[bool]] = []
    if chosen.actor:
        parts.append(AuditEntry.actor == chosen.actor)
    if chosen.action:
        # An action finds its refusals too: `tasks.read` lists `tasks.read.refused`.
        base = chosen.action.removesuffix(REFUSED_SUFFIX)
        parts.append(or_(AuditEntry.action == base, AuditEntry.action == base + REFUSED_SUFFIX))
    if chosen.refused:
        parts.append(AuditEntry.action.endswith(REFUSED_SUFFIX, autoescape=True))
    if chosen.target_type:
        parts.append(AuditEntry.target_type == chosen.target_type)
    if chosen.target_ref:
        parts.append(AuditEntry.target_ref == chosen.target_ref)
    if chosen.first_day is not None:
        start = dt.datetime.combine(chosen.first_day, dt.time(), tzinfo=zone)
        parts.append(AuditEntry.at >= start.astimezone(dt.UTC))
    if chosen.last_day is not None:
        end = dt.datetime.combine(chosen.last_day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
        parts.append(AuditEntry.at < end.astimezone(dt.UTC))
    return and_(True, *parts)


def audit_lines(
    session: Session, *, chosen: AuditFilter, timezone: str, limit: int | None, offset: int = 0
) -> tuple[list[AuditLine], int]:
    """Return a page of matching audit entries, newest first, and how many match in all."""
    zone = ZoneInfo(timezone)
    condition = _condition(chosen, zone)
    total = session.scalar(select(func.count(AuditEntry.id)).where(condition)) or 0
    query = select(AuditEntry).where(condition).order_by(AuditEntry.id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    lines = [
        AuditLine(
            id=entry.id,
            at=entry.at.astimezone(zone),
            actor=entry.actor,
            action=entry.action,
            refused=entry.action.endswith(REFUSED_SUFFIX),
            target_type=entry.target_type,
            target_ref=entry.target_ref,
            detail=dict(entry.detail or {}),
            remote_addr=entry.remote_addr,
        )
        for entry in session.scalars(query)
    ]
    return lines, int(total)
