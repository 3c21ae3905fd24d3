"""The suspension and reinstatement list: a cursor feed, acknowledgements, CSV, approvals."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.deps import CLIENT_CTE, Caller, require, require_cached
from api.routers.common import ERRORS, Id
from api.schemas import (
    ListAckCreate,
    ListAckRead,
    ListApprovalRead,
    ListEntryRead,
    ListFeedRead,
    ListRejectionCreate,
    ListRejectionRead,
    json_fields,
)
from liveness.lists import approve_entry, reject_entry
from liveness.views.lists import (
    acknowledge,
    entries_csv,
    list_feed,
    list_feed_body,
    list_feed_sql,
)
from models import utcnow

router = APIRouter(prefix="/lists", tags=["lists"], responses=ERRORS)
# The feed's JSON keys on the one-statement path: ListEntryRead is the one definition of an entry.
ENTRY_FIELDS = json_fields(ListEntryRead)


@router.get("/entries", response_model=ListFeedRead, summary="Published entries after a cursor")
async def feed(
    caller: Annotated[Caller, Depends(require_cached("lists.read"))],
    after: Annotated[int, Query(ge=0, le=2**31 - 1, description="Last seq already seen.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Return published entries in seq order; poll again with after=next_after.

    Never skips or repeats an entry, even while a run publishes (see liveness.views.lists).
    """
    if caller.reads is not None:
        # PostgreSQL: check the client, read, audit and build the JSON in one statement.
        row = await caller.read_once(
            list_feed_sql(CLIENT_CTE, ENTRY_FIELDS), {"after": after, "limit": limit},
            target_ref=None, now=utcnow(),
        )  # fmt: skip
        return Response(list_feed_body(row), media_type="application/json")

    def work() -> bytes:
        with caller.audit_read("lists.read", "list", None) as audit:
            entries, next_after, high_water = list_feed(caller.session, after=after, limit=limit)
            audit.detail = {
                "after": after, "next_after": next_after, "returned": len(entries),
            }  # fmt: skip
        read = ListFeedRead(
            entries=[ListEntryRead.model_validate(e) for e in entries],
            next_after=next_after, high_water=high_water,
        )  # fmt: skip
        return read.model_dump_json().encode()

    # One worker thread reads, audits, commits and serialises (validated once).
    return Response(await caller.run(work), media_type="application/json")


@router.post("/ack", response_model=ListAckRead, summary="Acknowledge applied entries")
def ack(
    body: ListAckCreate, caller: Annotated[Caller, Depends(require("lists.ack"))]
) -> ListAckRead:
    """Record the last seq the payment system applied; it only moves forward."""
    caller.audit("lists.ack", "list", None, {"last_seq": body.last_seq})
    return ListAckRead.model_validate(
        acknowledge(caller.session, client=caller.name, last_seq=body.last_seq)
    )


@router.get(
    "/entries.csv",
    response_class=Response,
    summary="A run's entries as CSV, with a checksum header",
    responses={200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV"}},
)
def entries_as_csv(
    caller: Annotated[Caller, Depends(require("lists.read"))],
    run: Annotated[int, Query(ge=1, le=2**31 - 1, description="Run id.")],
) -> Response:
    """Return a run's entries as CSV; X-Checksum-SHA256 is the SHA-256 of the body."""
    entry = caller.audit("lists.export", "run", run)
    body, checksum, rows = entries_csv(caller.session, run_id=run)
    entry.detail = {"rows": rows, "sha256": checksum}
    return Response(
        content=body,
        media_type="text/csv; charset=utf-8",
        headers={
            "X-Checksum-SHA256": checksum,
            "Content-Disposition": f'attachment; filename="list-run-{run}.csv"',
        },
    )


@router.post(
    "/entries/{entry_id}/approve",
    response_model=ListApprovalRead,
    summary="Approve a held entry (a second operator)",
)
def approve(
    entry_id: Id, caller: Annotated[Caller, Depends(require("lists.approve"))]
) -> ListApprovalRead:
    """Approve a held entry; who caused it may not approve it. A new entry carries it out."""
    caller.audit("lists.approve", "list_entry", entry_id)
    approval = approve_entry(caller.session, entry_id=entry_id, operator=caller.name)
    return ListApprovalRead(
        id=approval.id, seq=approval.seq, approves_seq=int(approval.detail["approves_seq"]),
        approved_by=str(approval.approved_by), approved_at=approval.approved_at,  # type: ignore[arg-type]
    )  # fmt: skip


@router.post(
    "/entries/{entry_id}/reject",
    response_model=ListRejectionRead,
    summary="Reject a held entry (a second operator)",
)
def reject(
    entry_id: Id,
    body: ListRejectionCreate,
    caller: Annotated[Caller, Depends(require("lists.approve"))],
) -> ListRejectionRead:
    """Reject a held entry with a reason; who caused it may not. Its suspension stands."""
    caller.audit("lists.reject", "list_entry", entry_id, {"reason": body.reason})
    rejected = reject_entry(
        caller.session, entry_id=entry_id, operator=caller.name, reason=body.reason
    )
    return ListRejectionRead(
        id=rejected.id, seq=rejected.seq, rejected_by=str(rejected.rejected_by),
        rejected_at=rejected.rejected_at,  # type: ignore[arg-type]
        rejection_reason=str(rejected.rejection_reason),
    )  # fmt: skip
