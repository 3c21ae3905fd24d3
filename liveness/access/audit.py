"""The audit log: who read or changed what, when, and from where."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session

from models import AuditEntry, utcnow


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


# The table, not the class: a Core statement skips the ORM's bulk-insert machinery.
_AUDIT = cast(Table, AuditEntry.__table__)


class ReadAudit:
    """The audit entry of a read, written with one statement where the database allows.

    Use as a context manager around the read and fill `detail` inside it. PostgreSQL gets a
    single INSERT after the read, in the same transaction. SQLite gets the INSERT first (so
    that the transaction's first statement is a write and SQLite queues writers instead of
    failing one on a stale snapshot) and the detail after it.
    """

    def __init__(
        self, session: Session, *, actor: str, action: str, target_type: str,
        target_ref: str | None, remote_addr: str | None,
    ) -> None:  # fmt: skip
        self.session = session
        self.detail: dict[str, Any] = {}
        self._values = {
            "at": utcnow(), "actor": actor, "action": action, "target_type": target_type,
            "target_ref": target_ref, "remote_addr": remote_addr,
        }  # fmt: skip
        self._write_first = session.get_bind().dialect.name == "sqlite"
        self._id: int | None = None

    def __enter__(self) -> ReadAudit:
        if self._write_first:
            self._id = self.session.execute(
                insert(_AUDIT).values(**self._values, detail={}).returning(_AUDIT.c.id)
            ).scalar_one()
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if kind is not None:
            return  # the transaction rolls back, the entry with it: nothing was read
        if self._id is None:
            self.session.execute(insert(_AUDIT).values(**self._values, detail=self.detail))
        else:
            self.session.execute(
                update(_AUDIT).where(_AUDIT.c.id == self._id).values(detail=self.detail)
            )


def read_audit_cte(*, action: str, target_type: str, detail_sql: str) -> str:
    """Return a PostgreSQL CTE `audit` writing a read's entry in the read's own statement.

    For reads done in one statement (see api.deps.Caller.read_once): the entry is written only
    when the CTE `client` holds a row (the caller is still allowed), `detail_sql` is a json
    expression over the statement's other CTEs, and `action`/`target_type` are constants of
    the code, never input. Parameters: now, audit_actor, audit_ref, audit_addr.
    """
    return (
        f"audit AS (INSERT INTO {_AUDIT.name} "
        "(at, actor, action, target_type, target_ref, detail, remote_addr) "
        f"SELECT %(now)s, %(audit_actor)s::text, '{action}', '{target_type}', "
        f"%(audit_ref)s::text, {detail_sql}, %(audit_addr)s::text FROM client)"
    )


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
