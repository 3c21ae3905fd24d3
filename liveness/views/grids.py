"""The drill-down a supervisor steers by: a region's grids, a grid's people, its workers' load.

Levels are those of the latest published run; reviews are the live ones (open or claimed),
overdue when past their due date. Every list is paged and every count is one grouped query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from liveness.views.masking import mask_id_number
from models import (
    LIVE_TASK_STATUSES,
    ApiClient,
    Person,
    ReviewTask,
    Role,
    Run,
    RunStatus,
    TaskStatus,
    assessments_as_of,
    level_as_of,
)


@dataclass(frozen=True)
class GridSummary:
    """One grid: its region, people by level, open and overdue reviews."""

    grid_code: str
    region_code: str
    persons: int
    levels: dict[str, int] = field(default_factory=dict)
    open_reviews: int = 0
    overdue_reviews: int = 0


@dataclass(frozen=True)
class GridPerson:
    """One person of a grid as a supervisor lists them (identity number masked)."""

    person_ref: str
    name: str
    id_number_masked: str
    level: str | None
    task_id: int | None
    task_kind: str | None
    task_overdue: bool


@dataclass(frozen=True)
class Workload:
    """One grid worker's load: reviews open and overdue in their grids, claimed, visited."""

    worker: str
    grids: tuple[str, ...]
    open_reviews: int
    claimed: int
    overdue_reviews: int
    visits: int


def latest_run_id(session: Session) -> int | None:
    """Return the id of the latest published run, if any."""
    return session.scalar(
        select(Run.id).where(Run.status == RunStatus.PUBLISHED).order_by(Run.id.desc()).limit(1)
    )


def region_known(session: Session, *, region: str) -> bool:
    """Return whether anyone on the roll lives in a region (a code or a code's prefix)."""
    found = session.scalar(
        select(Person.id).where(Person.region_code.startswith(region, autoescape=True)).limit(1)
    )
    return found is not None


def _fill(
    session: Session, rows: Sequence[tuple[str, str, int]], *, run_id: int | None, today: dt.date
) -> list[GridSummary]:
    """Return summaries of (grid, region, persons) rows with their levels and reviews."""
    codes = [grid for grid, _, _ in rows]
    levels: dict[str, dict[str, int]] = {}
    if run_id is not None and codes:
        standing = assessments_as_of(run_id)
        for grid, level, count in session.execute(
            select(Person.grid_code, standing.level, func.count())
            .join(Person, Person.id == standing.person_id)
            .where(Person.grid_code.in_(codes))
            .group_by(Person.grid_code, standing.level)
        ):
            levels.setdefault(grid, {})[str(level)] = int(count)
    reviews: dict[str, tuple[int, int]] = {}
    if codes:
        overdue = func.sum(case((ReviewTask.due_on < today, 1), else_=0))
        for grid, count, late in session.execute(
            select(ReviewTask.grid_code, func.count(), overdue)
            .where(ReviewTask.status.in_(LIVE_TASK_STATUSES), ReviewTask.grid_code.in_(codes))
            .group_by(ReviewTask.grid_code)
        ):
            reviews[grid] = (int(count), int(late or 0))
    return [
        GridSummary(
            grid_code=grid, region_code=region, persons=int(persons),
            levels=levels.get(grid, {}), open_reviews=reviews.get(grid, (0, 0))[0],
            overdue_reviews=reviews.get(grid, (0, 0))[1],
        )
        for grid, region, persons in rows
    ]  # fmt: skip


def region_grids(
    session: Session,
    *,
    region: str,
    run_id: int | None,
    today: dt.date,
    limit: int | None,
    offset: int,
) -> tuple[list[GridSummary], int]:
    """Return a page of the grids of a region (code or prefix), by code, and how many there are."""
    grouped = (
        select(Person.grid_code, func.min(Person.region_code), func.count())
        .where(Person.region_code.startswith(region, autoescape=True))
        .group_by(Person.grid_code)
    )
    total = session.scalar(select(func.count()).select_from(grouped.subquery())) or 0
    rows = session.execute(grouped.order_by(Person.grid_code).limit(limit).offset(offset)).all()
    found = [(str(grid), str(region), int(n)) for grid, region, n in rows]
    return _fill(session, found, run_id=run_id, today=today), int(total)


def grid_summary(
    session: Session, *, grid: str, run_id: int | None, today: dt.date
) -> GridSummary | None:
    """Return one grid's summary, or None when nobody on the roll lives in it."""
    row = session.execute(
        select(Person.grid_code, func.min(Person.region_code), func.count())
        .where(Person.grid_code == grid)
        .group_by(Person.grid_code)
    ).first()
    if row is None:
        return None
    found = [(str(row[0]), str(row[1]), int(row[2]))]
    return _fill(session, found, run_id=run_id, today=today)[0]


def grid_people(
    session: Session,
    *,
    grid: str,
    run_id: int | None,
    today: dt.date,
    limit: int | None,
    offset: int,
) -> tuple[list[GridPerson], int]:
    """Return a page of a grid's people by name, each with their level and open review."""
    total = session.scalar(select(func.count()).where(Person.grid_code == grid)) or 0
    query = select(Person.id, Person.person_ref, Person.name, Person.id_number)
    if run_id is not None:
        # The level that stood at the run, looked up for the page's people only.
        query = query.add_columns(level_as_of(run_id, Person.id).label("level"))
    rows = session.execute(
        query.where(Person.grid_code == grid)
        .order_by(Person.name, Person.person_ref)
        .limit(limit)
        .offset(offset)
    ).all()
    ids = [row.id for row in rows]
    # A person's most urgent live review: the one due first.
    tasks: dict[int, tuple[int, str, dt.date]] = {}
    if ids:
        for person_id, task_id, kind, due_on in session.execute(
            select(ReviewTask.person_id, ReviewTask.id, ReviewTask.kind, ReviewTask.due_on)
            .where(ReviewTask.person_id.in_(ids), ReviewTask.status.in_(LIVE_TASK_STATUSES))
            .order_by(ReviewTask.due_on.desc(), ReviewTask.id.desc())
        ):
            tasks[person_id] = (task_id, str(kind), due_on)
    people = []
    for row in rows:
        task = tasks.get(row.id)
        people.append(
            GridPerson(
                person_ref=row.person_ref, name=row.name,
                id_number_masked=mask_id_number(row.id_number),
                level=None if run_id is None or row.level is None else str(row.level),
                task_id=None if task is None else task[0],
                task_kind=None if task is None else task[1],
                task_overdue=task is not None and task[2] < today,
            )
        )  # fmt: skip
    return people, int(total)


# Long by design: a few grouped queries folded into each worker's load.
def grid_workload(
    session: Session, *, grid: str, today: dt.date, now: dt.datetime, since: dt.date
) -> list[Workload]:
    """Return the load of each grid worker serving a grid, by name.

    Open and overdue count the live reviews of all the worker's grids; claimed, the claims
    the worker holds now; visits, the outcomes they recorded on or after `since`. Clients
    are few (one per worker), so their grids are matched here rather than in JSON SQL.
    """
    clients = session.execute(
        select(ApiClient.name, ApiClient.grids).where(
            ApiClient.role == Role.GRID_WORKER, ApiClient.revoked_at.is_(None)
        )
    ).all()
    workers = {
        name: tuple(str(g) for g in grids or ()) for name, grids in clients if grid in (grids or ())
    }
    if not workers:
        return []
    served = sorted({g for grids in workers.values() for g in grids})
    overdue = func.sum(case((ReviewTask.due_on < today, 1), else_=0))
    by_grid = {
        code: (int(count), int(late or 0))
        for code, count, late in session.execute(
            select(ReviewTask.grid_code, func.count(), overdue)
            .where(ReviewTask.status.in_(LIVE_TASK_STATUSES), ReviewTask.grid_code.in_(served))
            .group_by(ReviewTask.grid_code)
        )
    }
    claimed = {
        str(name): int(count)
        for name, count in session.execute(
            select(ReviewTask.claimed_by, func.count())
            .where(
                ReviewTask.status == TaskStatus.CLAIMED,
                ReviewTask.claim_expires_at > now,
                ReviewTask.claimed_by.in_(list(workers)),
            )
            .group_by(ReviewTask.claimed_by)
        )
    }
    by = ReviewTask.outcome_detail["by"].as_string()
    visits = {
        str(name): int(count)
        for name, count in session.execute(
            select(by, func.count())
            .where(
                ReviewTask.status == TaskStatus.DONE,
                ReviewTask.closed_on >= since,
                by.in_(list(workers)),
            )
            .group_by(by)
        )
    }
    return [
        Workload(
            worker=name, grids=grids,
            open_reviews=sum(by_grid.get(g, (0, 0))[0] for g in grids),
            claimed=int(claimed.get(name, 0)),
            overdue_reviews=sum(by_grid.get(g, (0, 0))[1] for g in grids),
            visits=int(visits.get(name, 0)),
        )
        for name, grids in sorted(workers.items())
    ]  # fmt: skip
