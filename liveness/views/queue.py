"""The review queue of a grid, and the face verifications and notices waiting for a gateway."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    SQLColumnExpression,
    String,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from liveness.access.audit import read_audit_cte
from liveness.db import IN_CHUNK
from liveness.errors import LivenessError, NotFound
from liveness.views.pg_json import Fields, json_fields_sql, postgresql_text
from models import (
    Assessment,
    FaceCallback,
    Notice,
    NoticeStatus,
    Person,
    ReviewTask,
    Run,
    RunStatus,
    TaskKind,
    TaskStatus,
)


class ViewInvalid(LivenessError):
    """A read asked with an argument that makes no sense; the message names it."""

    http_status = 422


def mask_id_number(id_number: str) -> str:
    """Return an identity number with all but its first 6 and last 4 characters hidden."""
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


# Enough stars for the longest identity number a person can hold (persons.id_number: 32).
_STARS = "*" * 32


def masked_id_number(id_number: SQLColumnExpression[str]) -> ColumnElement[str]:
    """Return `mask_id_number` as SQL, the same on SQLite and PostgreSQL (the hot reads).

    One expression for both ways of serving a hot read: the session path selects it, and the
    one-statement path compiles the same select for PostgreSQL.
    """
    # Constants as literals: the compiled statement takes its parameters by name only.
    one, three, six, ten = (literal_column(str(n), Integer) for n in (1, 3, 6, 10))
    length = func.length(id_number)
    stars = literal_column(f"'{_STARS}'", String)
    return case(
        (length <= ten, func.substr(stars, one, length, type_=String)),
        else_=func.substr(id_number, one, six, type_=String)
        + func.substr(stars, one, length - ten, type_=String)
        + func.substr(id_number, length - three, type_=String),
    )


def mask_card_number(card: str) -> str:
    """Return a card number with all but its last 4 characters hidden."""
    if len(card) <= 4:
        return "*" * len(card)
    return "*" * (len(card) - 4) + card[-4:]


def _mask_value(key: str, value: Any) -> Any:
    """Mask one evidence value by what its key names: an identity or a card number."""
    if isinstance(value, str) and "id_number" in key:
        return mask_id_number(value)
    if isinstance(value, str) and ("card" in key or "account" in key):
        # A bank account is the number on a bank card: shown by its last digits only.
        return mask_card_number(value)
    return mask_evidence(value)


def mask_evidence(evidence: Any) -> Any:
    """Return evidence (JSON values) with every identity and card number masked, for display."""
    if isinstance(evidence, dict):
        return {key: _mask_value(str(key), value) for key, value in evidence.items()}
    if isinstance(evidence, list):
        return [mask_evidence(item) for item in evidence]
    return evidence


def _status_value(status: TaskStatus) -> ColumnElement[str]:
    """Return a task status as a SQL literal, not a parameter (see grid_queue_select)."""
    return literal_column(f"'{status}'")


def _status_condition(status: str, now: ColumnElement[dt.datetime]) -> ColumnElement[bool]:
    """Return the filter of a queue status; a lapsed claim counts as open again."""
    try:
        chosen = TaskStatus(status)
    except ValueError:
        raise ViewInvalid(
            f"status: {status!r} is not a task status; expected one of {', '.join(TaskStatus)}"
        ) from None
    opened, claimed = _status_value(TaskStatus.OPEN), _status_value(TaskStatus.CLAIMED)
    if chosen == TaskStatus.OPEN:
        # Open, or claimed with a lapsed claim. Written as an IN on status first, so that the
        # grid index (grid_code, status, priority) bounds the scan to the two statuses.
        return and_(
            ReviewTask.status.in_([opened, claimed]),
            or_(ReviewTask.status == opened, ReviewTask.claim_expires_at <= now),
        )
    if chosen == TaskStatus.CLAIMED:
        return and_(ReviewTask.status == claimed, ReviewTask.claim_expires_at > now)
    return ReviewTask.status == _status_value(chosen)


# The one-statement path's parameters: the select binds nothing else (grid_queue_sql).
QUEUE_PARAMS = frozenset({"grid", "now", "limit", "offset"})


def _grid_queue_condition(status: str) -> ColumnElement[bool]:
    """Return which tasks a grid's queue holds, bound to the parameters grid and now."""
    return and_(
        ReviewTask.grid_code == bindparam("grid"),
        _status_condition(status, bindparam("now", type_=ReviewTask.claim_expires_at.type)),
    )


def grid_queue_select(status: str) -> Select[*tuple[Any, ...]]:
    """Return the grid queue's page as one select, its columns named as the API's `TaskRead`.

    Both ways of serving the queue run this select: `grid_queue` on a session and
    `grid_queue_sql` compiled for PostgreSQL. Bound to the parameters grid, now, limit and
    offset (QUEUE_PARAMS); constants are written as literals so that the compiled statement
    needs nothing else.
    """
    return (
        select(
            ReviewTask.id, Person.person_ref, Person.name,
            masked_id_number(Person.id_number).label("id_number_masked"), Person.region_code,
            ReviewTask.grid_code, ReviewTask.kind, ReviewTask.status, ReviewTask.priority,
            ReviewTask.opened_on, ReviewTask.due_on, ReviewTask.claimed_by,
            ReviewTask.claim_expires_at, ReviewTask.reasons, func.count().over().label("total"),
        )
        .join(Person, Person.id == ReviewTask.person_id)
        .where(_grid_queue_condition(status))
        .order_by(ReviewTask.priority.desc(), ReviewTask.id)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )  # fmt: skip


def grid_queue(
    session: Session, *, grid: str, status: str, now: dt.datetime, limit: int, offset: int
) -> tuple[list[Row[Any]], int]:
    """Return a page of a grid's tasks, highest priority first, and how many there are.

    The rows carry the fields of the API's `TaskRead` by name (grid_queue_select). One
    statement: the total comes with the page as a window count (a grid holds tens to
    hundreds of tasks); only a page past the end, which has no row to carry it, counts apart.
    """
    params = {"grid": grid, "now": now, "limit": limit, "offset": offset}
    rows = list(session.execute(grid_queue_select(status), params).all())
    if rows:
        total = rows[0].total
    else:
        total = session.scalar(
            select(func.count()).select_from(ReviewTask).where(_grid_queue_condition(status)),
            params,
        )
    return rows, int(total or 0)


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


def current_reasons(session: Session, *, person_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Return the reasons the latest published run gave each of these persons (a page's).

    Each names its level, even where the stored reasons do not.
    """
    latest = select(func.max(Run.id)).where(Run.status == RunStatus.PUBLISHED).scalar_subquery()
    rows = session.execute(
        select(Assessment.person_id, Assessment.level, Assessment.reasons).where(
            Assessment.run_id == latest, Assessment.person_id.in_(list(person_ids))
        )
    ).all()
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
    identity number or part of the name; `sort` is priority (highest first), due (earliest
    first) or address (walking order, grid by grid: `address_order`). Walking order is not a
    string order a database gives on both backends, so it is computed over the filtered open
    tasks' addresses only (a worker's grids hold hundreds) and the page read by its ids.
    """
    if sort not in QUEUE_SORTS:
        raise ViewInvalid(f"sort: {sort!r} is not one of {', '.join(QUEUE_SORTS)}")
    condition: ColumnElement[bool] = ReviewTask.status.in_([TaskStatus.OPEN, TaskStatus.CLAIMED])
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
    claim_live = and_(ReviewTask.status == TaskStatus.CLAIMED, ReviewTask.claim_expires_at > now)
    columns = (
        ReviewTask.id, Person.person_ref, Person.name, Person.id_number, Person.birth_date,
        Person.address, Person.phone, Person.region_code, ReviewTask.grid_code,
        ReviewTask.kind, ReviewTask.priority, ReviewTask.due_on, ReviewTask.claimed_by,
        claim_live.label("claim_live"), ReviewTask.reasons, ReviewTask.cause,
        ReviewTask.person_id,
    )  # fmt: skip
    rows: list[Any]
    total: int | None
    if sort == "address":
        rows, total = _walking_page(session, condition, columns, limit=limit, offset=offset)
    else:
        order: tuple[Any, ...] = {
            "priority": (ReviewTask.priority.desc(),),
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
        total = int(rows[0].total) if rows else None
    current = current_reasons(session, person_ids=[row.person_id for row in rows]) if rows else {}
    page = [
        WorkerRow(
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
            current=current.get(row.person_id),
        )
        for row in rows
    ]
    if total is not None:
        return page, total
    counted = session.scalar(
        select(func.count())
        .select_from(ReviewTask)
        .join(Person, Person.id == ReviewTask.person_id)
        .where(condition)
    )
    return page, int(counted or 0)


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
    allowed = text("EXISTS (SELECT FROM client)")
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
    EXISTS (SELECT FROM client),
    (SELECT string_agg(row_to_json(x)::text, ',' ORDER BY h.priority DESC, h.id)
     FROM hits AS h, LATERAL (SELECT {json_fields_sql(fields, "h")}) AS x),
    coalesce((SELECT total FROM hits LIMIT 1), ({counted}))
"""


def grid_queue_body(row: tuple[Any, ...], *, limit: int, offset: int) -> bytes:
    """Return the JSON `TaskPage` of a `grid_queue_sql` result row (allowed, items, total)."""
    return (
        b'{"items":['
        + (row[1] or "").encode()
        + b'],"total":%d,"limit":%d,"offset":%d}' % (row[2], limit, offset)
    )


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
