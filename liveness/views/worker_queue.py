"""A grid worker's queue: the open tasks of their grids, in walking order; what they recorded."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Date, and_, func, literal, select
from sqlalchemy.orm import Session

from liveness.db import IN_CHUNK
from liveness.views.masking import mask_id_number
from liveness.views.queue import ViewInvalid, queue_week
from liveness.weeks import week_start
from models import (
    LIVE_TASK_STATUSES,
    Assessment,
    Person,
    ReviewTask,
    Run,
    RunStatus,
    TaskKind,
    TaskStatus,
    assessments_as_of,
)

QUEUE_SORTS = ("priority", "due", "address")
# The last digits of an identity number (its check character may be X), else part of a name.
_ID_TAIL = re.compile(r"[0-9]{2,17}[0-9Xx]?")


@dataclass(frozen=True)
class WorkerRow:
    """One open task as a grid worker's phone lists it: who, where, how to call, what to do."""

    id: int
    person_ref: str
    name: str
    id_number_masked: str
    birth_date: dt.date
    address: str | None
    phone: str | None
    region_code: str
    grid_code: str
    kind: str
    priority: float
    due_on: dt.date
    claimed_by: str | None  # None when unclaimed or the claim has lapsed
    reasons: dict[str, Any]  # as of the task's opening
    cause: str | None = None  # why the task was opened (views.overdue.CAUSES)
    current: dict[str, Any] | None = None  # the person's reasons as of the latest run
    planned_week: dt.date | None = None  # a home visit's planned week (its Monday)


def current_reasons(session: Session, *, person_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Return the reasons the latest published run gave each of these persons (a page's).

    Each names its level, even where the stored reasons do not.
    """
    latest = session.scalar(select(func.max(Run.id)).where(Run.status == RunStatus.PUBLISHED))
    if latest is None or not person_ids:
        return {}
    standing = assessments_as_of(latest, Assessment.person_id.in_(list(person_ids)))
    rows = session.execute(select(standing.person_id, standing.level, standing.reasons)).all()
    return {row.person_id: {"level": str(row.level), **row.reasons} for row in rows}


_NUMBER = re.compile(r"(\d+)")


def address_order(address: str | None) -> tuple[int, tuple[str | int, ...]]:
    """Return an address's place in walking order: its numbers compared as numbers.

    "G1·2号楼301室" comes before "G1·10号楼101室": community and street as text, then the
    building, floor and room by their numbers. No address comes last.
    """
    if address is None or not address.strip():
        return (1, ())
    parts = _NUMBER.split(address.strip())
    return (0, tuple(int(part) if i % 2 else part for i, part in enumerate(parts)))


def age_on(birth_date: dt.date, today: dt.date) -> int:
    """Return a person's age in whole years on `today`."""
    before_birthday = (today.month, today.day) < (birth_date.month, birth_date.day)
    return today.year - birth_date.year - before_birthday


def worker_queue(
    session: Session,
    *,
    grids: Sequence[str] | None,
    now: dt.datetime,
    today: dt.date,
    kind: str | None = None,
    overdue: bool = False,
    search: str = "",
    sort: str = "priority",
    limit: int | None,
    offset: int,
) -> tuple[list[WorkerRow], int]:
    """Return a page of the open tasks of `grids` (None: every grid), filtered, and the total.

    `limit` None returns every matching task (an export, a grid's visit sheet).
    Claimed tasks stay listed, with their claimant. `search` matches the last digits of the
    identity number or part of the name; `sort` is priority (the planned week, then highest
    first: `_ranked_page`), due (earliest first) or address (walking order, grid by grid:
    `address_order`). Walking order is not a string order a database gives on both backends,
    so it is computed over the filtered open tasks' addresses only (a worker's grids hold
    hundreds) and the page read by its ids.
    """
    if sort not in QUEUE_SORTS:
        raise ViewInvalid(f"sort: {sort!r} is not one of {', '.join(QUEUE_SORTS)}")
    condition = _worker_condition(
        grids=grids, today=today, kind=kind, overdue=overdue, search=search
    )
    claim_live = and_(ReviewTask.status == TaskStatus.CLAIMED, ReviewTask.claim_expires_at > now)
    columns = (
        ReviewTask.id, Person.person_ref, Person.name, Person.id_number, Person.birth_date,
        Person.address, Person.phone, Person.region_code, ReviewTask.grid_code,
        ReviewTask.kind, ReviewTask.priority, ReviewTask.due_on, ReviewTask.claimed_by,
        claim_live.label("claim_live"), ReviewTask.reasons, ReviewTask.cause,
        ReviewTask.person_id, ReviewTask.planned_week,
    )  # fmt: skip
    rows: list[Any]
    total: int | None
    if sort == "address":
        rows, total = _walking_page(session, condition, columns, limit=limit, offset=offset)
    else:
        rows, total = _ranked_page(
            session, condition, columns, sort, today=today, limit=limit, offset=offset
        )
    current = current_reasons(session, person_ids=[row.person_id for row in rows]) if rows else {}
    page = [_worker_row(row, current.get(row.person_id)) for row in rows]
    if total is not None:
        return page, total
    counted = session.scalar(
        select(func.count())
        .select_from(ReviewTask)
        .join(Person, Person.id == ReviewTask.person_id)
        .where(condition)
    )
    return page, int(counted or 0)


def _worker_condition(
    *, grids: Sequence[str] | None, today: dt.date, kind: str | None, overdue: bool, search: str
) -> ColumnElement[bool]:
    """Return which open tasks a worker's queue lists: its grids, kind, overdue and search."""
    condition: ColumnElement[bool] = ReviewTask.status.in_(LIVE_TASK_STATUSES)
    if grids is not None:
        condition = and_(condition, ReviewTask.grid_code.in_(list(grids)))
    if kind:
        try:
            condition = and_(condition, ReviewTask.kind == TaskKind(kind))
        except ValueError:
            raise ViewInvalid(f"kind: {kind!r} is not a task kind") from None
    if overdue:
        condition = and_(condition, ReviewTask.due_on < today)
    search = search.strip()[:64]
    if _ID_TAIL.fullmatch(search):
        condition = and_(condition, Person.id_number.endswith(search.upper(), autoescape=True))
    elif search:
        condition = and_(condition, Person.name.contains(search, autoescape=True))
    return condition


def _worker_row(row: Any, current: dict[str, Any] | None) -> WorkerRow:
    """Return one queue row as the worker sees it: the identity number masked, a live claim."""
    return WorkerRow(
        id=row.id,
        person_ref=row.person_ref,
        name=row.name,
        id_number_masked=mask_id_number(row.id_number),
        birth_date=row.birth_date,
        address=row.address,
        phone=row.phone,
        region_code=row.region_code,
        grid_code=row.grid_code,
        kind=str(row.kind),
        priority=row.priority,
        due_on=row.due_on,
        claimed_by=row.claimed_by if row.claim_live else None,
        reasons=row.reasons,
        cause=row.cause,
        current=current,
        planned_week=row.planned_week,
    )


def _ranked_page(
    session: Session, condition: ColumnElement[bool], columns: tuple[Any, ...], sort: str,
    *, today: dt.date, limit: int | None, offset: int,
) -> tuple[list[Any], int | None]:  # fmt: skip
    """Return a page of the queue by priority or due date, and the total (None: past the end).

    By priority, home visits planned for a later week come after this week's tasks, week by
    week: a task without a planned week, or planned for this week or a past one, is this
    week's.
    """
    week = queue_week(literal(week_start(today), Date))
    order: tuple[Any, ...] = {
        "priority": (week, ReviewTask.priority.desc()),
        "due": (ReviewTask.due_on, ReviewTask.priority.desc()),
    }[sort]
    rows = list(
        session.execute(
            select(*columns, func.count().over().label("total"))
            .join(Person, Person.id == ReviewTask.person_id)
            .where(condition)
            .order_by(*order, ReviewTask.id)
            .limit(limit)
            .offset(offset)
        ).all()
    )
    return rows, int(rows[0].total) if rows else None


def _walking_page(
    session: Session, condition: ColumnElement[bool], columns: tuple[Any, ...],
    *, limit: int | None, offset: int,
) -> tuple[list[Any], int]:  # fmt: skip
    """Return a page of the queue in walking order (grid, then `address_order`), and the total."""
    keyed = session.execute(
        select(ReviewTask.id, ReviewTask.grid_code, Person.address)
        .join(Person, Person.id == ReviewTask.person_id)
        .where(condition)
    ).all()
    walk = sorted(keyed, key=lambda row: (row.grid_code, address_order(row.address), row.id))
    ids = [row.id for row in walk[offset : None if limit is None else offset + limit]]
    if not ids:
        return [], len(keyed)
    # In chunks: an export reads every task, more than a statement may bind at once.
    found = [
        row
        for start in range(0, len(ids), IN_CHUNK)
        for row in session.execute(
            select(*columns)
            .join(Person, Person.id == ReviewTask.person_id)
            .where(ReviewTask.id.in_(ids[start : start + IN_CHUNK]))
        ).all()
    ]
    place = {task_id: i for i, task_id in enumerate(ids)}
    return sorted(found, key=lambda row: place[row.id]), len(keyed)


@dataclass(frozen=True)
class VisitRow:
    """An outcome a person recorded, and whether a run has taken it up (no undo after that)."""

    task_id: int
    person_ref: str
    name: str
    address: str | None
    kind: str
    outcome: str
    visited_on: dt.date
    taken_up: bool


def recorded_visits(session: Session, *, actor: str, since: dt.date, limit: int) -> list[VisitRow]:
    """Return the outcomes `actor` recorded on or after `since`, latest first."""
    rows = session.execute(
        select(
            ReviewTask.id, Person.person_ref, Person.name, Person.address, ReviewTask.kind,
            ReviewTask.outcome, ReviewTask.closed_on, ReviewTask.closed_run_id,
        )
        .join(Person, Person.id == ReviewTask.person_id)
        .where(
            ReviewTask.status == TaskStatus.DONE,
            ReviewTask.closed_on >= since,
            ReviewTask.outcome_detail["by"].as_string() == actor,
        )
        .order_by(ReviewTask.closed_on.desc(), ReviewTask.id.desc())
        .limit(limit)
    ).all()  # fmt: skip
    return [
        VisitRow(
            task_id=row.id,
            person_ref=row.person_ref,
            name=row.name,
            address=row.address,
            kind=str(row.kind),
            outcome=str(row.outcome),
            visited_on=row.closed_on,
            taken_up=row.closed_run_id is not None,
        )
        for row in rows
    ]
