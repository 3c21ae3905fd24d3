"""Queue the notices a run sends: the face verifications it asked for, lapses."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from liveness.certification.workflow.context import Context
from liveness.db import query_frame
from models import Notice, NoticeChannel, NoticeStatus, Person, ReviewTask, TaskKind


def queue_notices(session: Session, context: Context, rows: list[dict[str, Any]]) -> int:
    """Queue notices for the messaging gateway: SMS where a phone is known, else the app."""
    if not rows:
        return 0
    phones = dict(
        session.execute(
            select(Person.id, Person.phone).where(Person.id.in_([r["person_id"] for r in rows]))
        ).all()
    )
    session.execute(
        insert(Notice),
        [
            {
                **row,
                "run_id": context.run_id,
                "channel": NoticeChannel.SMS if phones.get(row["person_id"]) else NoticeChannel.APP,
                "status": NoticeStatus.PENDING,
                "created_on": context.as_of,
            }
            for row in rows
        ],
    )
    return len(rows)


def face_notices(session: Session, context: Context) -> int:
    """Tell each person asked for a face verification by this run, by when."""
    opened = query_frame(
        session,
        select(ReviewTask.id, ReviewTask.person_id, ReviewTask.due_on).where(
            ReviewTask.opened_run_id == context.run_id,
            ReviewTask.kind == TaskKind.FACE_VERIFICATION,
        ),
        ["id", "person_id", "due_on"],
    )
    template = context.policy.notice_texts["face"]
    return queue_notices(
        session, context,
        [{"person_id": int(p), "task_id": int(t), "template": "face",
          "body": template.format(due=d.isoformat())}
         for t, p, d in zip(opened["id"], opened["person_id"], opened["due_on"], strict=True)],
    )  # fmt: skip
