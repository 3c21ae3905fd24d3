"""The review queue of a grid as the API serves it: on a session, or as one PostgreSQL statement."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from liveness.access.audit import read_audit_cte
from liveness.errors import InputInvalid, NotFound
from liveness.views.masking import masked_id_number
from liveness.views.pg_json import ALLOWED, Fields, json_array, json_objects_sql, postgresql_text
from liveness.weeks import week_start
from models import (
    Person,
    ReviewTask,
    TaskStatus,
)


class ViewInvalid(InputInvalid):
    """A read asked with an argument that makes no sense; the message names it."""


def _status_condition(status: str, now: ColumnElement[dt.datetime]) -> ColumnElement[bool]:
    """Return the filter of a queue status; a lapsed claim counts as open again."""
    try:
        chosen = TaskStatus(status)
    except ValueError:
        raise ViewInvalid(
            f"status: {status!r} is not a task status; expected one of {', '.join(TaskStatus)}"
        ) from None
    opened, claimed = TaskStatus.OPEN, TaskStatus.CLAIMED
    if chosen == TaskStatus.OPEN:
        # Open, or claimed with a lapsed claim. Written as an IN on status first, so that the
        # grid index (grid_code, status, priority) bounds the scan to the two statuses.
        return and_(
            ReviewTask.status.in_([opened, claimed]),
            or_(ReviewTask.status == opened, ReviewTask.claim_expires_at <= now),
        )
    if chosen == TaskStatus.CLAIMED:
        return and_(ReviewTask.status == claimed, ReviewTask.claim_expires_at > now)
    return ReviewTask.status == chosen


# The one-statement path's parameters: the select binds nothing else (grid_queue_sql).
QUEUE_PARAMS = frozenset({"grid", "now", "monday", "limit", "offset"})


def queue_week(monday: ColumnElement[Any]) -> ColumnElement[Any]:
    """Return the week a task belongs to in a queue whose current week begins on `monday`.

    A home visit planned for a later week is that week's; any other task (no plan, or planned
    for this week or a past one) is this week's, the week of `monday`.
    """
    return case((ReviewTask.planned_week > monday, ReviewTask.planned_week), else_=monday)


def _grid_queue_condition(status: str) -> ColumnElement[bool]:
    """Return which tasks a grid's queue holds, bound to the parameters grid and now."""
    return and_(
        ReviewTask.grid_code == bindparam("grid"),
        _status_condition(status, bindparam("now", type_=ReviewTask.claim_expires_at.type)),
    )


def grid_queue_select(status: str) -> Select[*tuple[Any, ...]]:
    """Return the grid queue's page as one select, its columns named as the API's `TaskRead`.

    Both ways of serving the queue run this select: `grid_queue` on a session and
    `grid_queue_sql` compiled for PostgreSQL. Week by week (home visits planned for a later
    week after this week's tasks, as the grid's page lists them), then highest priority
    first. Bound to the parameters grid, now, monday (this week's, in the agency's time zone),
    limit and offset (QUEUE_PARAMS); its constants are inlined when compiled
    (postgresql_text).
    """
    week = queue_week(bindparam("monday", type_=Date))
    return (
        select(
            ReviewTask.id, Person.person_ref, Person.name,
            masked_id_number(Person.id_number).label("id_number_masked"), Person.region_code,
            ReviewTask.grid_code, ReviewTask.kind, ReviewTask.status, ReviewTask.priority,
            ReviewTask.opened_on, ReviewTask.due_on, ReviewTask.planned_week,
            ReviewTask.claimed_by, ReviewTask.claim_expires_at, ReviewTask.reasons,
            func.count().over().label("total"),
        )
        .join(Person, Person.id == ReviewTask.person_id)
        .where(_grid_queue_condition(status))
        .order_by(week, ReviewTask.priority.desc(), ReviewTask.id)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )  # fmt: skip


def grid_queue(
    session: Session, *, grid: str, status: str, now: dt.datetime, today: dt.date, limit: int,
    offset: int,
) -> tuple[list[Row[Any]], int]:  # fmt: skip
    """Return a page of a grid's tasks, week by week and by priority, and how many there are.

    The rows carry the fields of the API's `TaskRead` by name (grid_queue_select). One
    statement: the total comes with the page as a window count (a grid holds tens to
    hundreds of tasks); only a page past the end, which has no row to carry it, counts apart.
    """
    params = {"grid": grid, "now": now, "monday": week_start(today), "limit": limit,
              "offset": offset}  # fmt: skip
    rows = list(session.execute(grid_queue_select(status), params).all())
    if rows:
        total = rows[0].total
    else:
        total = session.scalar(
            select(func.count()).select_from(ReviewTask).where(_grid_queue_condition(status)),
            params,
        )
    return rows, int(total or 0)


# The page's order over its rows (grid_queue_select's): GREATEST skips a NULL planned week.
_HITS_ORDER = "GREATEST(r.planned_week, %(monday)s::date), r.priority DESC, r.id"


@functools.lru_cache(maxsize=64)
def grid_queue_sql(status: str, client: str, fields: Fields) -> str:
    """Return the API's grid queue as one PostgreSQL statement that also writes its audit.

    `grid_queue_select` compiled for PostgreSQL, the page written as JSON by PostgreSQL with
    the response schema's `fields` as keys (liveness.views.pg_json), so that the API answers
    with one round trip and no row objects: the statement returns (allowed, items, total),
    items being the page's objects joined by commas. It expects a CTE `client` holding a row
    iff the caller is still allowed, given as `client` (see api.deps); nothing is read or
    written otherwise. Parameters: QUEUE_PARAMS, status and the audit's (read_audit_cte).
    The JSON parses to what the schema writes; only `reasons` keeps the spacing it was
    stored with.
    """
    allowed = text(ALLOWED)
    page = postgresql_text(grid_queue_select(status).where(allowed), QUEUE_PARAMS)
    counted = postgresql_text(
        select(func.count()).select_from(ReviewTask).where(allowed, _grid_queue_condition(status)),
        QUEUE_PARAMS,
    )
    audit = read_audit_cte(
        action="tasks.read", target_type="grid",
        detail_sql="json_build_object('status', %(status)s::text, 'limit', %(limit)s::int, "
        "'offset', %(offset)s::int, 'returned', (SELECT count(*) FROM hits))",
    )  # fmt: skip
    return f"""
WITH {client},
hits AS ({page}),
{audit}
SELECT
    {ALLOWED},
    {json_objects_sql("hits", fields, _HITS_ORDER)},
    coalesce((SELECT total FROM hits LIMIT 1), ({counted}))
"""


def grid_queue_body(row: tuple[Any, ...], *, limit: int, offset: int) -> bytes:
    """Return the JSON `TaskPage` of a `grid_queue_sql` result row (allowed, items, total)."""
    page = b',"total":%d,"limit":%d,"offset":%d}' % (row[2], limit, offset)
    return b'{"items":' + json_array(row[1]) + page


def task_grid(session: Session, *, task_id: int) -> str:
    """Return the grid of a task, or refuse an unknown one."""
    grid = session.scalar(select(ReviewTask.grid_code).where(ReviewTask.id == task_id))
    if grid is None:
        raise NotFound(f"no review task {task_id}")
    return grid
