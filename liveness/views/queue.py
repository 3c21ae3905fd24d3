"""The review queue of a grid, and the face verifications and notices waiting for a gateway."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from liveness.errors import LivenessError, NotFound
from models import FaceCallback, Notice, NoticeStatus, Person, ReviewTask, TaskKind, TaskStatus


class ViewInvalid(LivenessError):
    """A read asked with an argument that makes no sense; the message names it."""

    http_status = 422


def mask_id_number(id_number: str) -> str:
    """Return an identity number with all but its first 6 and last 4 characters hidden."""
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


@dataclass(frozen=True)
class QueueRow:
    """One task of a grid's queue, as a grid worker's phone shows it."""

    id: int
    person_ref: str
    name: str
    id_number_masked: str
    region_code: str
    grid_code: str
    kind: str
    status: str
    priority: float
    opened_on: dt.date
    due_on: dt.date
    claimed_by: str | None
    claim_expires_at: dt.datetime | None
    reasons: dict[str, Any]


def _status_condition(status: str, now: dt.datetime) -> ColumnElement[bool]:
    """Return the filter of a queue status; a lapsed claim counts as open again."""
    try:
        chosen = TaskStatus(status)
    except ValueError:
        raise ViewInvalid(
            f"status: {status!r} is not a task status; expected one of {', '.join(TaskStatus)}"
        ) from None
    if chosen == TaskStatus.OPEN:
        # Open, or claimed with a lapsed claim. Written as an IN on status first, so that the
        # grid index (grid_code, status, priority) bounds the scan to the two statuses.
        return and_(
            ReviewTask.status.in_([TaskStatus.OPEN, TaskStatus.CLAIMED]),
            or_(ReviewTask.status == TaskStatus.OPEN, ReviewTask.claim_expires_at <= now),
        )
    if chosen == TaskStatus.CLAIMED:
        return and_(ReviewTask.status == TaskStatus.CLAIMED, ReviewTask.claim_expires_at > now)
    return ReviewTask.status == chosen


def grid_queue(
    session: Session, *, grid: str, status: str, now: dt.datetime, limit: int, offset: int
) -> tuple[list[QueueRow], int]:
    """Return a page of a grid's tasks, highest priority first, and how many there are.

    One statement: the total comes with the page as a window count (a grid holds tens to
    hundreds of tasks); only a page past the end, which has no row to carry it, counts apart.
    """
    condition = and_(ReviewTask.grid_code == grid, _status_condition(status, now))
    rows = session.execute(
        select(
            ReviewTask.id, Person.person_ref, Person.name, Person.id_number, Person.region_code,
            ReviewTask.grid_code, ReviewTask.kind, ReviewTask.status, ReviewTask.priority,
            ReviewTask.opened_on, ReviewTask.due_on, ReviewTask.claimed_by,
            ReviewTask.claim_expires_at, ReviewTask.reasons, func.count().over().label("total"),
        )
        .join(Person, Person.id == ReviewTask.person_id)
        .where(condition)
        .order_by(ReviewTask.priority.desc(), ReviewTask.id)
        .limit(limit)
        .offset(offset)
    ).all()  # fmt: skip
    page = [
        QueueRow(
            id=row.id,
            person_ref=row.person_ref,
            name=row.name,
            id_number_masked=mask_id_number(row.id_number),
            region_code=row.region_code,
            grid_code=row.grid_code,
            kind=str(row.kind),
            status=str(row.status),
            priority=row.priority,
            opened_on=row.opened_on,
            due_on=row.due_on,
            claimed_by=row.claimed_by,
            claim_expires_at=row.claim_expires_at,
            reasons=row.reasons,
        )
        for row in rows
    ]
    if rows:
        total = rows[0].total
    else:
        total = session.scalar(select(func.count()).select_from(ReviewTask).where(condition))
    return page, int(total or 0)


def task_grid(session: Session, *, task_id: int) -> str:
    """Return the grid of a task, or refuse an unknown one."""
    grid = session.scalar(select(ReviewTask.grid_code).where(ReviewTask.id == task_id))
    if grid is None:
        raise NotFound(f"no review task {task_id}")
    return grid


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
