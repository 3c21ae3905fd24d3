"""What a supervisor sees at a glance: levels by region, the trend, the backlog, the list."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from models import (
    LIVE_TASK_STATUSES,
    ListAction,
    ListEntry,
    ListEntryStatus,
    Person,
    ReviewTask,
    Run,
    RunStatus,
    assessments_as_of,
)

LEVEL_ORDER = ("strong", "medium", "weak", "deceased")


@dataclass(frozen=True)
class TrendPoint:
    """The levels one published run gave, from its report."""

    run_id: int
    as_of: dt.date
    levels: dict[str, int]


@dataclass(frozen=True)
class Backlog:
    """Open review tasks by kind, and how many of them are past their due date.

    The grids behind, with their oldest overdue review, are `views.overdue.grids_behind`.
    """

    open_by_kind: dict[str, int]
    overdue_by_kind: dict[str, int]

    @property
    def open_total(self) -> int:
        """Return the number of open tasks."""
        return sum(self.open_by_kind.values())

    @property
    def overdue_total(self) -> int:
        """Return the number of overdue tasks."""
        return sum(self.overdue_by_kind.values())


@dataclass(frozen=True)
class ListMovement:
    """Suspensions or reinstatements: how many, and the amounts to recover or pay back."""

    action: str
    entries: int
    amount: Decimal


@dataclass(frozen=True)
class ListLine:
    """One recent suspension or reinstatement, as the dashboard lists it."""

    seq: int
    person_ref: str
    action: str
    reason: str
    effective_on: dt.date
    amount: Decimal
    status: str


def levels_by_region(
    session: Session, *, run_id: int, region: str | None = None
) -> dict[str, dict[str, int]]:
    """Count the levels of one run per region code (optionally within a code prefix)."""
    standing = assessments_as_of(run_id)
    query = (
        select(Person.region_code, standing.level, func.count())
        .join(Person, Person.id == standing.person_id)
        .group_by(Person.region_code, standing.level)
    )
    if region:
        query = query.where(Person.region_code.startswith(region))
    counts: dict[str, dict[str, int]] = {}
    for code, level, count in session.execute(query).all():
        counts.setdefault(code, {})[str(level)] = int(count)
    return dict(sorted(counts.items()))


def level_trend(
    session: Session, *, limit: int = 12, region: str | None = None
) -> list[TrendPoint]:
    """Return the levels of the last `limit` published runs, oldest first.

    The whole roll's come from the runs' reports; a region's (a code prefix) are counted
    from the assessments that stood at each run for its people, a grouped query per run.
    """
    runs = session.execute(
        select(Run.id, Run.as_of, Run.report)
        .where(Run.status == RunStatus.PUBLISHED)
        .order_by(Run.id.desc())
        .limit(limit)
    ).all()
    counted: dict[int, dict[str, int]] = {}
    # A run stores only the assessments that changed: each run's count is of what stood then.
    for run_id, _, _ in runs if region else []:
        standing = assessments_as_of(run_id)
        for level, count in session.execute(
            select(standing.level, func.count())
            .join(Person, Person.id == standing.person_id)
            .where(Person.region_code.startswith(region, autoescape=True))
            .group_by(standing.level)
        ):
            counted.setdefault(run_id, {})[str(level)] = int(count)
    points = [
        TrendPoint(
            run_id=run_id,
            as_of=as_of,
            levels={
                level: counted.get(run_id, {}).get(level, 0)
                if region
                else int((report or {}).get("levels", {}).get(level, 0))
                for level in LEVEL_ORDER
            },
        )
        for run_id, as_of, report in runs
    ]
    return points[::-1]


def review_backlog(session: Session, *, today: dt.date, region: str | None = None) -> Backlog:
    """Count open review tasks by kind, and the overdue ones."""
    live = ReviewTask.status.in_(LIVE_TASK_STATUSES)
    overdue = case((ReviewTask.due_on < today, 1), else_=0)
    query = select(ReviewTask.kind, func.count(), func.sum(overdue)).where(live)
    if region:
        scope = select(Person.id).where(Person.region_code.startswith(region))
        query = query.where(ReviewTask.person_id.in_(scope))
    rows = session.execute(query.group_by(ReviewTask.kind)).all()
    return Backlog(
        open_by_kind={str(kind): int(count) for kind, count, _ in rows},
        overdue_by_kind={str(kind): int(late or 0) for kind, _, late in rows},
    )


def list_movements(
    session: Session, *, since: dt.date | None = None, region: str | None = None
) -> list[ListMovement]:
    """Sum published suspensions and reinstatements (entries and amounts), optionally since a day.

    A held entry counts once approved, through the published entry that carries it out: both
    counted, an approved back pay would count twice.
    """
    query = (
        select(ListEntry.action, func.count(), func.sum(ListEntry.amount))
        .where(ListEntry.status == ListEntryStatus.PUBLISHED)
        .group_by(ListEntry.action)
    )
    if since is not None:
        query = query.where(ListEntry.effective_on >= since)
    if region:
        scope = select(Person.id).where(Person.region_code.startswith(region))
        query = query.where(ListEntry.person_id.in_(scope))
    found = {
        str(action): (int(n), Decimal(total or 0)) for action, n, total in session.execute(query)
    }
    return [
        ListMovement(action=str(action), entries=found.get(str(action), (0, Decimal(0)))[0],
                     amount=found.get(str(action), (0, Decimal(0)))[1])
        for action in (ListAction.SUSPEND, ListAction.REINSTATE)
    ]  # fmt: skip


def recent_list_lines(
    session: Session, *, limit: int = 10, region: str | None = None
) -> list[ListLine]:
    """Return the latest list entries, newest first."""
    query = (
        select(
            ListEntry.seq, Person.person_ref, ListEntry.action, ListEntry.reason,
            ListEntry.effective_on, ListEntry.amount, ListEntry.status,
        )
        .join(Person, Person.id == ListEntry.person_id)
        .order_by(ListEntry.seq.desc())
        .limit(limit)
    )  # fmt: skip
    if region:
        query = query.where(Person.region_code.startswith(region))
    return [
        ListLine(
            seq=seq,
            person_ref=ref,
            action=str(action),
            reason=str(reason),
            effective_on=effective_on,
            amount=Decimal(amount),
            status=str(status),
        )
        for seq, ref, action, reason, effective_on, amount, status in session.execute(query)
    ]
