"""Review queues of grids, claims and outcomes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response

from api.deps import CLIENT_CTE, Caller, require, require_cached
from api.routers.common import ERRORS, Id, IdempotencyHeader, Limit, Offset
from api.schemas import (
    ClaimRead,
    OutcomeCreate,
    OutcomeRead,
    OverduePage,
    TaskPage,
    TaskRead,
    json_fields,
)
from liveness.access import authorize_grid
from liveness.access.idempotency import request_hash
from liveness.review.claims import claim_task, ensure_may_settle
from liveness.review.outcomes import record_outcome
from liveness.views.overdue import overdue_reviews
from liveness.views.queue import grid_queue, grid_queue_body, grid_queue_sql
from liveness.weeks import week_start
from models import Role, utcnow

router = APIRouter(tags=["tasks"], responses=ERRORS)
# The queue's JSON keys on the one-statement path: TaskRead is the one definition of a task.
TASK_FIELDS = json_fields(TaskRead)


def _grids(caller: Caller) -> tuple[str, ...] | None:
    """Return the grids a caller is scoped to, or None for callers who see every grid."""
    return caller.principal.grids if caller.principal.role == Role.GRID_WORKER else None


@router.get("/grids/{grid}/tasks", response_model=TaskPage, summary="A grid's review queue")
async def list_grid_tasks(
    grid: Annotated[str, Path(max_length=32)],
    caller: Annotated[Caller, Depends(require_cached("tasks.read"))],
    status: Annotated[str, Query(max_length=16, description="Task status.")] = "open",
    limit: Limit = 50,
    offset: Offset = 0,
) -> Response:
    """List a grid's tasks by planned week and priority, identity numbers masked.

    Grid workers see their grids.
    """
    if caller.reads is not None:
        # PostgreSQL: check the client, read, audit and build the JSON in one statement.
        if not caller.principal.may_see_grid(grid):
            await caller.exact()  # a revoked token is answered 401, never 403
        authorize_grid(caller.principal, grid)
        sql = grid_queue_sql(status, CLIENT_CTE, TASK_FIELDS)
        row = await caller.read_once(
            sql, {"grid": grid, "status": status, "monday": week_start(caller.today()),
                  "limit": limit, "offset": offset},
            target_ref=grid, now=utcnow(),
        )  # fmt: skip
        return Response(
            grid_queue_body(row, limit=limit, offset=offset), media_type="application/json"
        )

    def work() -> bytes:
        authorize_grid(caller.principal, grid)
        with caller.audit_read("tasks.read", "grid", grid) as audit:
            rows, total = grid_queue(
                caller.session, grid=grid, status=status, now=utcnow(), today=caller.today(),
                limit=limit, offset=offset,
            )  # fmt: skip
            audit.detail = {
                "status": status, "limit": limit, "offset": offset, "returned": len(rows),
            }  # fmt: skip
        page = TaskPage(
            items=[TaskRead.model_validate(r) for r in rows], total=total, limit=limit,
            offset=offset,
        )  # fmt: skip
        return page.model_dump_json().encode()

    # One worker thread reads, audits, commits and serialises (validated once, by TaskPage).
    return Response(await caller.run(work), media_type="application/json")


@router.get("/reviews/overdue", response_model=OverduePage, summary="Overdue reviews per grid")
def list_overdue_reviews(
    caller: Annotated[Caller, Depends(require("reviews.overdue"))],
    grid: Annotated[str | None, Query(max_length=32, description="Only this grid.")] = None,
    region: Annotated[
        str | None,
        Query(pattern=r"^\d{1,6}$", description="Region code or prefix (3301: its counties)."),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> OverduePage:
    """List open reviews past their due date per grid, oldest first; grid workers see theirs."""
    if grid is not None:
        authorize_grid(caller.principal, grid)
    grids = [grid] if grid is not None else _grids(caller)
    with caller.audit_read("reviews.overdue", "grid", grid) as audit:
        found = overdue_reviews(
            caller.session, today=caller.today(), grids=grids,
            regions=None if region is None else [region], limit=limit, offset=offset,
        )  # fmt: skip
        audit.detail = {
            "grids": grids, "region": region, "limit": limit, "offset": offset,
            "tasks": [task.id for g in found.grids for task in g.tasks],
        }  # fmt: skip
    return OverduePage(
        as_of=found.as_of, total=found.total, limit=limit, offset=offset,
        grids_behind=found.grids_behind,
        grids=found.grids,
    )  # fmt: skip


@router.post("/tasks/{task_id}/claim", response_model=ClaimRead, summary="Claim a task")
def claim(task_id: Id, caller: Annotated[Caller, Depends(require("tasks.claim"))]) -> ClaimRead:
    """Claim a task for a while; of concurrent claimants exactly one wins, the others get 409."""
    caller.audit("tasks.claim", "review_task", task_id)
    task = claim_task(
        caller.session, task_id=task_id, claimant=caller.name, now=utcnow(),
        minutes=caller.services.settings.api_claim_minutes, grids=_grids(caller),
    )  # fmt: skip
    return ClaimRead.model_validate(task)


@router.post(
    "/tasks/{task_id}/outcome", response_model=OutcomeRead, summary="Record a review's outcome"
)
def outcome(
    task_id: Id,
    body: OutcomeCreate,
    caller: Annotated[Caller, Depends(require("tasks.outcome"))],
    idempotency_key: IdempotencyHeader = None,
) -> OutcomeRead | JSONResponse:
    """Record what a visit found; the next run applies it (certify, suspend or reinstate)."""
    entry = caller.audit("tasks.outcome", "review_task", task_id, body.model_dump(mode="json"))

    def change() -> OutcomeRead:
        ensure_may_settle(
            caller.session, task_id=task_id, actor=caller.name, now=utcnow(),
            grids=_grids(caller),
        )  # fmt: skip
        task = record_outcome(
            caller.session, task_id=task_id, outcome=body.outcome, actor=caller.name,
            on=body.on or caller.today(), died_on=body.died_on, region=body.region,
            note=body.note, today=caller.today(),
        )  # fmt: skip
        return OutcomeRead.model_validate(task)

    return caller.idempotent(
        entry, key=idempotency_key,
        digest=request_hash(task_id, body.model_dump(mode="json")), change=change,
    )  # fmt: skip
