"""The audit log: who read or changed what, when, and from where."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import AuditEntry


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_ref: str | None,
    detail: dict[str, Any] | None = None,
    remote_addr: str | None = None,
) -> AuditEntry:
    """Add an audit entry in the caller's transaction: it stands or falls with the change."""
    entry = AuditEntry(
        actor=actor, action=action, target_type=target_type, target_ref=target_ref,
        detail=detail or {}, remote_addr=remote_addr,
    )  # fmt: skip
    session.add(entry)
    session.flush()
    return entry


def audit_page(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_ref: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    """Return a page of audit entries, newest first, and how many match in all."""
    query = select(AuditEntry)
    for column, value in (
        (AuditEntry.actor, actor),
        (AuditEntry.action, action),
        (AuditEntry.target_type, target_type),
        (AuditEntry.target_ref, target_ref),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit).offset(offset))
    return list(rows), int(total)
