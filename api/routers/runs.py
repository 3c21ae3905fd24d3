"""Certification runs: start one, list them, read one's report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from api.deps import Caller, require
from api.routers.common import ERRORS, Id, Limit, Offset
from api.schemas import RunAccepted, RunCreate, RunDetailRead, RunPage, RunRead
from liveness.access import record_audit
from liveness.views.runs import get_run, runs_page

router = APIRouter(prefix="/runs", tags=["runs"], responses=ERRORS)


@router.post("", status_code=202, response_model=RunAccepted, summary="Start a certification run")
def create_run(
    body: RunCreate, request: Request, caller: Annotated[Caller, Depends(require("runs.create"))]
) -> RunAccepted:
    """Start a run as of a date in the background; 409 if another run holds the lock."""
    detail = body.model_dump(mode="json")

    def audit(session: Session) -> None:
        record_audit(
            session, actor=caller.name, action="runs.create", target_type="run",
            target_ref=f"as_of:{body.as_of}", detail=detail, remote_addr=caller.remote_addr,
        )  # fmt: skip

    run_id = request.app.state.runs.start(
        as_of=body.as_of, override_guard=body.override_guard, audit=audit
    )
    return RunAccepted(id=run_id, status="running")


@router.get("", response_model=RunPage, summary="List certification runs")
def list_runs(
    caller: Annotated[Caller, Depends(require("runs.read"))], limit: Limit = 20, offset: Offset = 0
) -> RunPage:
    """List runs, newest first."""
    runs, total = runs_page(caller.session, limit=limit, offset=offset)
    return RunPage(
        items=[RunRead.model_validate(r) for r in runs], total=total, limit=limit, offset=offset
    )


@router.get("/{run_id}", response_model=RunDetailRead, summary="Read a run and its report")
def read_run(run_id: Id, caller: Annotated[Caller, Depends(require("runs.read"))]) -> RunDetailRead:
    """Return a run with its report."""
    return RunDetailRead.model_validate(get_run(caller.session, run_id=run_id))
