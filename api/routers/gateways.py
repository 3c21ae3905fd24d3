"""The verification service and the messaging gateway: what waits for them, what they report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, require
from api.routers.common import ERRORS, Id, Limit, Offset
from api.schemas import (
    FaceCallbackCreate,
    FaceCallbackRead,
    FaceRequestPage,
    NoticePage,
    NoticeSentRead,
    Page,
)
from liveness.access import client_secret, verify_signature
from liveness.access.gateways import FaceResult, mark_notice_sent, receive_face_result
from liveness.db import session_scope
from liveness.views.gateways import pending_face_requests, pending_notices
from liveness.views.queue import ViewInvalid
from models import utcnow

router = APIRouter(tags=["gateways"], responses=ERRORS)


PageT = TypeVar("PageT", bound=Page)


class PendingQuery(NamedTuple):
    """What a gateway asks of what waits for it: a page, of pending items only."""

    status: str
    limit: int
    offset: int


def pending_query(
    status: Annotated[str, Query(max_length=16)] = "pending", limit: Limit = 100, offset: Offset = 0
) -> PendingQuery:
    """Read a gateway's query for what waits for it."""
    return PendingQuery(status, limit, offset)


def _pending(
    caller: Caller,
    asked: PendingQuery,
    page: type[PageT],
    read: Callable[..., tuple[list[Any], int]],
    *,
    action: str,
    target_type: str,
) -> PageT:
    """Return what waits for a gateway as a page of `read`'s rows, audited as `action`."""
    if asked.status != "pending":
        raise ViewInvalid(f"status: only 'pending' is served, not {asked.status!r}")
    entry = caller.audit(action, target_type, None)
    rows, total = read(caller.session, limit=asked.limit, offset=asked.offset)
    entry.detail = {"returned": len(rows), "offset": asked.offset}
    return page.model_validate(
        {"items": rows, "total": total, "limit": asked.limit, "offset": asked.offset}
    )


@router.get(
    "/face-verifications/requests",
    response_model=FaceRequestPage,
    summary="Pending face verification requests",
)
def face_requests(
    caller: Annotated[Caller, Depends(require("face.requests"))],
    asked: Annotated[PendingQuery, Depends(pending_query)],
) -> FaceRequestPage:
    """List open face verifications without a result: request id, person, identity number, due."""
    return _pending(
        caller, asked, FaceRequestPage, pending_face_requests, action="face.requests",
        target_type="face_request",
    )  # fmt: skip


async def signed_body(
    request: Request,
    caller: Annotated[Caller, Depends(require("face.callback"))],
    x_timestamp: Annotated[
        str | None, Header(max_length=20, description="Seconds since 1970-01-01 UTC.")
    ] = None,
    x_signature: Annotated[
        str | None,
        Header(max_length=128, description='Hex HMAC-SHA256 of f"{X-Timestamp}.{body}".'),
    ] = None,
) -> tuple[Caller, str]:
    """Check the callback's signature over the raw body before anything reads it."""
    body = await request.body()

    def check() -> None:
        services = caller.services
        with session_scope(services.sessions) as session:
            secret = client_secret(session, client_id=caller.principal.client_id)
        verify_signature(
            secret, timestamp=x_timestamp, signature=x_signature, body=body, now=utcnow(),
            window_s=services.settings.api_replay_window_s,
        )  # fmt: skip

    await run_in_threadpool(check)
    return caller, str(x_signature)


@router.post(
    "/face-verifications/callback",
    response_model=FaceCallbackRead,
    summary="Report a face verification result (signed)",
)
def face_callback(
    body: FaceCallbackCreate, signed: Annotated[tuple[Caller, str], Depends(signed_body)]
) -> FaceCallbackRead:
    """Take a signed result: it becomes a face trace and completes its request."""
    caller, signature = signed
    caller.audit("face.callback", "face_request", body.request_id, body.model_dump(mode="json"))
    settings = caller.services.settings
    callback = receive_face_result(
        caller.session,
        result=FaceResult(**body.model_dump()),
        client=caller.name,
        signature=signature,
        inbox=settings.evidence_dir.parent / "inbox" / "face",
        context=caller.services.ingest_context(),
    )
    return FaceCallbackRead(
        request_id=callback.task_id, result=callback.result, record_id=callback.record_id,
        received_at=callback.received_at,
    )  # fmt: skip


@router.get("/notices", response_model=NoticePage, summary="Notices waiting to be sent")
def notices(
    caller: Annotated[Caller, Depends(require("notices.read"))],
    asked: Annotated[PendingQuery, Depends(pending_query)],
) -> NoticePage:
    """List pending notices, oldest first, with the phone to send an SMS to."""
    return _pending(
        caller, asked, NoticePage, pending_notices, action="notices.read", target_type="notice"
    )


@router.post("/notices/{notice_id}/sent", response_model=NoticeSentRead, summary="Mark sent")
def notice_sent(
    notice_id: Id, caller: Annotated[Caller, Depends(require("notices.sent"))]
) -> NoticeSentRead:
    """Mark a notice sent; marking it again changes nothing."""
    caller.audit("notices.sent", "notice", notice_id)
    return NoticeSentRead.model_validate(
        mark_notice_sent(
            caller.session,
            notice_id=notice_id,
            sent_at=utcnow(),
            zone=ZoneInfo(caller.services.settings.timezone),
        )
    )
