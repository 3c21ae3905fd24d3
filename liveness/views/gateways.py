"""What waits for a gateway: face verifications for the verification service, notices to send."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from models import FaceCallback, Notice, NoticeStatus, Person, ReviewTask, TaskKind, TaskStatus


@dataclass(frozen=True)
class FaceRequestRow:
    """A face verification the engine asks the verification service to carry out."""

    request_id: int
    person_ref: str
    id_number: str
    name: str
    opened_on: dt.date
    due_on: dt.date


def pending_face_requests(
    session: Session, *, limit: int, offset: int
) -> tuple[list[FaceRequestRow], int]:
    """Return open face verifications with no result received yet, oldest first."""
    condition = and_(
        ReviewTask.kind == TaskKind.FACE_VERIFICATION,
        ReviewTask.status.in_([TaskStatus.OPEN, TaskStatus.CLAIMED]),
        ~select(FaceCallback.id).where(FaceCallback.task_id == ReviewTask.id).exists(),
    )
    total = session.scalar(select(func.count()).select_from(ReviewTask).where(condition)) or 0
    rows = session.execute(
        select(
            ReviewTask.id, Person.person_ref, Person.id_number, Person.name, ReviewTask.opened_on,
            ReviewTask.due_on,
        )
        .join(Person, Person.id == ReviewTask.person_id)
        .where(condition)
        .order_by(ReviewTask.id)
        .limit(limit)
        .offset(offset)
    ).all()  # fmt: skip
    return [FaceRequestRow(*row) for row in rows], int(total)


def pending_notices(session: Session, *, limit: int, offset: int) -> tuple[list[Any], int]:
    """Return notices waiting to be sent, oldest first, with the person's phone."""
    condition = Notice.status == NoticeStatus.PENDING
    total = session.scalar(select(func.count()).select_from(Notice).where(condition)) or 0
    rows = session.execute(
        select(
            Notice.id, Person.person_ref, Person.phone, Notice.channel, Notice.template,
            Notice.body, Notice.created_on, Notice.task_id,
        )
        .join(Person, Person.id == Notice.person_id)
        .where(condition)
        .order_by(Notice.id)
        .limit(limit)
        .offset(offset)
    ).all()  # fmt: skip
    return list(rows), int(total)
