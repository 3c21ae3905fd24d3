"""Indicators for the dashboard, and the audit log for auditors."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import Caller, require
from api.routers.common import ERRORS, Limit, Offset
from api.schemas import AuditPage, AuditRead, IndicatorsRead
from liveness.access import audit_page
from liveness.views.indicators import indicators

router = APIRouter(responses=ERRORS)


@router.get(
    "/indicators", response_model=IndicatorsRead, tags=["indicators"], summary="The indicators"
)
def read_indicators(
    caller: Annotated[Caller, Depends(require("indicators.read"))],
    region: Annotated[str | None, Query(max_length=6, description="Region code prefix.")] = None,
    grid: Annotated[str | None, Query(max_length=32)] = None,
) -> IndicatorsRead:
    """Return on-roll, certification status, mark, source and time, and the level counts."""
    return indicators(caller.session, region=region, grid=grid, today=caller.today())


@router.get("/audit", response_model=AuditPage, tags=["audit"], summary="The audit log")
def read_audit(
    caller: Annotated[Caller, Depends(require("audit.read"))],
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target_type: Annotated[str | None, Query(max_length=32)] = None,
    target_ref: Annotated[str | None, Query(max_length=64)] = None,
    since: dt.datetime | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AuditPage:
    """List audit entries, newest first; reading the log is itself audited."""
    caller.audit("audit.read", "audit_log", None, {"actor": actor, "target_ref": target_ref})
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    rows, total = audit_page(
        caller.session, actor=actor, action=action, target_type=target_type,
        target_ref=target_ref, since=since, limit=limit, offset=offset,
    )  # fmt: skip
    return AuditPage(
        items=[AuditRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )
