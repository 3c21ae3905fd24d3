"""What waits for a gateway: face verifications for the verification service, notices to send."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from models import (
    LIVE_TASK_STATUSES,
    FaceCallback,
    Notice,
    NoticeStatus,
    Person,
    ReviewTask,
    TaskKind,
)


def _oldest_first(
    session: Session,
    entity: type[ReviewTask | Notice],
    columns: tuple[InstrumentedAttribute[Any] | ColumnElement[Any], ...],
    condition: ColumnElement[bool],
    *,
    limit: int,
    offset: int,
) -> tuple[list[Any], int]:
    """Return a page of `entity` rows matching `condition` with their person's `columns`.

    Oldest first (by id); also returns how many match in all.
    """
    total = session.scalar(select(func.count()).select_from(entity).where(condition)) or 0
    rows = session.execute(
        select(*columns)
        .join(Person, Person.id == entity.person_id)
        .where(condition)
        .order_by(entity.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def pending_face_requests(session: Session, *, limit: int, offset: int) -> tuple[list[Any], int]:
    """Return open face verifications with no result received yet, oldest first.

    The rows carry the fields of the API's `FaceRequestRead` by name.
    """
    condition = and_(
        ReviewTask.kind == TaskKind.FACE_VERIFICATION,
        ReviewTask.status.in_(LIVE_TASK_STATUSES),
        ~select(FaceCallback.id).where(FaceCallback.task_id == ReviewTask.id).exists(),
    )
    columns = (
        ReviewTask.id.label("request_id"), Person.person_ref, Person.id_number, Person.name,
        ReviewTask.opened_on, ReviewTask.due_on,
    )  # fmt: skip
    return _oldest_first(session, ReviewTask, columns, condition, limit=limit, offset=offset)


def pending_notices(session: Session, *, limit: int, offset: int) -> tuple[list[Any], int]:
    """Return notices waiting to be sent, oldest first, with the person's phone."""
    columns = (
        Notice.id, Person.person_ref, Person.phone, Notice.channel, Notice.template, Notice.body,
        Notice.created_on, Notice.task_id,
    )  # fmt: skip
    condition = Notice.status == NoticeStatus.PENDING
    return _oldest_first(session, Notice, columns, condition, limit=limit, offset=offset)
