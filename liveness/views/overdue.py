"""Overdue reviews: the agency's own delay, which suspends nobody and escalates to supervisors.

An open review (a home visit, a death review; a face verification only until the next run
settles it) whose due date has passed is listed per grid, oldest first, for the supervisors
who can move staff, and summarised in the run report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from liveness.db import unindexed
from liveness.views.masking import mask_id_number
from liveness.views.schemas import OverdueGridRead, OverdueTaskRead
from models import LIVE_TASK_STATUSES, Person, ReviewTask

# Why a review was opened (ReviewTask.cause), in the order the pages name them.
CAUSES = ("renewal", "face_failed", "visit_asked", "after_visit", "death_record", "risk")


@dataclass(frozen=True)
class OverdueReviews:
    """A page of overdue reviews grouped by grid, and how many there are in the scope."""

    as_of: dt.date
    total: int
    grids_behind: int
    grids: list[OverdueGridRead]


def _overdue(
    today: dt.date, *, grids: Sequence[str] | None, regions: Sequence[str] | None
) -> ColumnElement[bool]:
    """Return the condition of a live review past its due date, within grids and regions."""
    condition = and_(ReviewTask.status.in_(LIVE_TASK_STATUSES), ReviewTask.due_on < today)
    if grids is not None:
        condition = and_(condition, ReviewTask.grid_code.in_(list(grids)))
    if regions is not None:
        # A task's region is its person's: prefixes such as 3301 cover their counties.
        condition = and_(
            condition, or_(*(Person.region_code.startswith(prefix) for prefix in regions))
        )
    return condition


def _task(row: Any, today: dt.date) -> OverdueTaskRead:
    """Return an overdue task from a row of the queries below."""
    return OverdueTaskRead(
        id=row.id, kind=str(row.kind), status=str(row.status), person_ref=row.person_ref,
        id_number_masked=mask_id_number(row.id_number), due_on=row.due_on,
        days_overdue=(today - row.due_on).days, cause=row.cause, claimed_by=row.claimed_by,
    )  # fmt: skip


def _grid(row: Any, today: dt.date, *, tasks: list[OverdueTaskRead]) -> OverdueGridRead:
    """Return a grid behind from a row of the ranked tasks, with the tasks given."""
    return OverdueGridRead(
        grid_code=row.grid_code, overdue=int(row.grid_overdue), oldest_due_on=row.grid_oldest,
        days_behind=(today - row.grid_oldest).days, tasks=tasks,
    )  # fmt: skip


def _ranked(condition: ColumnElement[bool]) -> Any:
    """Return the overdue tasks with their grid's count, oldest due date and rank, as a subquery."""
    grid = ReviewTask.grid_code
    return (
        select(
            ReviewTask.id, ReviewTask.kind, ReviewTask.status, ReviewTask.grid_code,
            ReviewTask.due_on, ReviewTask.cause, ReviewTask.claimed_by, Person.person_ref,
            Person.id_number,
            func.count().over(partition_by=grid).label("grid_overdue"),
            func.min(ReviewTask.due_on).over(partition_by=grid).label("grid_oldest"),
            func.row_number()
            .over(partition_by=grid, order_by=(ReviewTask.due_on, ReviewTask.id))
            .label("grid_rank"),
        )
        .join(Person, Person.id == ReviewTask.person_id)
        .where(condition)
        .subquery()
    )  # fmt: skip


def _grid_order(ranked: Any) -> tuple[Any, ...]:
    """Return the order of grids: the longest behind first, then the most overdue."""
    return (ranked.c.grid_oldest, ranked.c.grid_overdue.desc(), ranked.c.grid_code)


def overdue_reviews(
    session: Session,
    *,
    today: dt.date,
    grids: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
    limit: int,
    offset: int,
) -> OverdueReviews:
    """Return a page of overdue reviews per grid, grids and tasks oldest first.

    The page runs over tasks in one fixed order (grid by grid, the grid behind longest
    first; within a grid by due date), so that paging neither skips nor repeats one; each
    grid of the page carries its whole count and oldest due date, and its tasks of the page.
    `grids` and `regions` (code prefixes) narrow the scope; None means every one.
    """
    condition = _overdue(today, grids=grids, regions=regions)
    total, grids_behind = session.execute(
        select(func.count(), func.count(ReviewTask.grid_code.distinct()))
        .select_from(ReviewTask)
        .join(Person, Person.id == ReviewTask.person_id)
        .where(condition)
    ).one()
    ranked = _ranked(condition)
    rows = session.execute(
        select(ranked)
        .order_by(*_grid_order(ranked), ranked.c.due_on, ranked.c.id)
        .limit(limit)
        .offset(offset)
    ).all()
    page: list[OverdueGridRead] = []
    for row in rows:
        if not page or page[-1].grid_code != row.grid_code:
            page.append(_grid(row, today, tasks=[]))
        page[-1].tasks.append(_task(row, today))
    return OverdueReviews(as_of=today, total=int(total), grids_behind=int(grids_behind), grids=page)


def grids_behind(
    session: Session,
    *,
    today: dt.date,
    regions: Sequence[str] | None = None,
    limit: int = 10,
) -> tuple[list[OverdueGridRead], int]:
    """Return the grids longest behind, each with its oldest overdue review, and how many are.

    One statement ranks every overdue task within its grid and keeps each grid's first.
    """
    condition = _overdue(today, grids=None, regions=regions)
    ranked = _ranked(condition)
    rows = session.execute(
        select(ranked, func.count().over().label("grids"))
        .where(ranked.c.grid_rank == 1)
        .order_by(*_grid_order(ranked))
        .limit(limit)
    ).all()
    found = [_grid(row, today, tasks=[_task(row, today)]) for row in rows]
    return found, int(rows[0].grids) if rows else 0


def overdue_summary(session: Session, *, as_of: dt.date) -> dict[str, Any]:
    """Summarise the reviews overdue as of a run's date per grid, oldest first, as JSON values.

    {"total": tasks, "grids_behind": grids, "grids": [{"grid_code", "overdue",
    "oldest_due_on"}, ...]}: every grid behind, the longest behind first.
    """
    oldest = func.min(ReviewTask.due_on)
    grid = unindexed(ReviewTask.grid_code)  # every live task is read: a scan, not the index
    rows = session.execute(
        select(grid, func.count(), oldest)
        .where(_overdue(as_of, grids=None, regions=None))
        .group_by(grid)
        .order_by(oldest, func.count().desc(), grid)
    ).all()
    return {
        "total": sum(int(count) for _, count, _ in rows),
        "grids_behind": len(rows),
        "grids": [
            {"grid_code": grid, "overdue": int(count), "oldest_due_on": due.isoformat()}
            for grid, count, due in rows
        ],
    }
