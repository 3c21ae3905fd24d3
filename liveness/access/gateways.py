"""What the gateway clients change: notices sent, and face verification results received.

A face result is not written into the review task: it becomes a face trace through the
normal ingest path (a JSON Lines delivery in the face inbox, loaded in the caller's
transaction), and the next run settles the task from it as it does for any face result.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.access.service import Unauthenticated
from liveness.errors import DeliveryRefused, InputInvalid, NotFound, StateRefused
from liveness.ingest.context import IngestContext
from liveness.ingest.service import ingest_delivery
from models import (
    LIVE_TASK_STATUSES,
    FaceCallback,
    Notice,
    NoticeChannel,
    NoticeStatus,
    Person,
    ReviewTask,
    TaskKind,
    utcnow,
)


class GatewayConflict(StateRefused):
    """A result or a notice that was already dealt with, or a request no longer open."""


class NoticeDayInvalid(InputInvalid):
    """A notice said sent on a day it could not have been: the message names the field."""


def mark_notice_sent(
    session: Session, *, notice_id: int, sent_at: dt.datetime,
    channel: NoticeChannel | str | None = None, zone: dt.tzinfo = dt.UTC,
) -> Notice:  # fmt: skip
    """Mark a notice sent; marking it again keeps the first time.

    `channel` records how it went when that differs from the planned one: `letter` for a
    letter posted or handed over by staff. A notice is not sent before the day (in `zone`,
    the agency's) the run that wrote it was as of.
    """
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise NotFound(f"no notice {notice_id}")
    if notice.status != NoticeStatus.SENT:
        # Sent before it existed, its notice period would have passed already: a lapse could
        # suspend the person the same night, before they had their chance.
        day = sent_at.astimezone(zone).date()
        if day < notice.created_on:
            raise NoticeDayInvalid(
                f"on: notice {notice_id} was written on {notice.created_on}, not sent before it "
                f"({day})"
            )
        notice.status = NoticeStatus.SENT
        notice.sent_at = sent_at
        if channel is not None:
            notice.channel = NoticeChannel(channel)
        session.flush()
    return notice


@dataclass(frozen=True)
class FaceResult:
    """A verifier's result for one request (a face verification task)."""

    request_id: int
    result: str
    verified_at: dt.datetime
    channel: str | None = None
    score: float | None = None
    face_id: str | None = None


def receive_face_result(
    session: Session,
    *,
    result: FaceResult,
    client: str,
    signature: str,
    inbox: Path,
    context: IngestContext,
) -> FaceCallback:
    """Turn a signed face result into a face trace and record that its request is answered.

    The same signed message twice is a replay and is refused; a second result for the same
    request is a conflict. The delivery file stays in the inbox as the record of what came.
    """
    if session.scalar(select(FaceCallback.id).where(FaceCallback.signature == signature)):
        raise Unauthenticated("X-Signature: this message was received already (replay)")
    task = session.get(ReviewTask, result.request_id)
    if task is None or task.kind != TaskKind.FACE_VERIFICATION:
        raise NotFound(f"no face verification request {result.request_id}")
    if session.scalar(select(FaceCallback.id).where(FaceCallback.task_id == task.id)):
        raise GatewayConflict(f"request {task.id} already has a result")
    if task.status not in LIVE_TASK_STATUSES:
        raise GatewayConflict(f"request {task.id} is {task.status}, no longer pending")
    if result.verified_at > utcnow() + dt.timedelta(minutes=5):
        raise DeliveryRefused("verified_at: in the future")
    person = session.get_one(Person, task.person_id)
    record_id = f"callback-{task.id}"
    row = {
        "record_id": record_id, "id_number": person.id_number,
        "verified_at": result.verified_at.astimezone(dt.UTC).isoformat(),
        "result": result.result, "request_id": str(task.id),
    }  # fmt: skip
    if result.channel is not None:
        row["channel"] = result.channel
    if result.score is not None:
        row["score"] = str(result.score)
    if result.face_id is not None:
        row["face_id"] = result.face_id
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / f"{record_id}-{signature[:16]}.jsonl"
    # Written whole under a temporary name, then renamed: a reader never sees half a file.
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(path)
    report = ingest_delivery(session, source="face", path=path, context=context, format="jsonl")
    if report.loaded + report.redelivered != 1:
        raise DeliveryRefused(
            f"the face result for request {task.id} could not be loaded: "
            + (report.error or f"{report.quarantined} row quarantined")
        )
    callback = FaceCallback(
        task_id=task.id, client=client, result=result.result, signature=signature.lower(),
        record_id=record_id,
    )  # fmt: skip
    session.add(callback)
    session.flush()
    return callback
