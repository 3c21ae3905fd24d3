"""Queue the notices a run sends: the face verifications it asked for, lapses."""

from __future__ import annotations

import string
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.certification.workflow.context import Context
from liveness.db import any_ids, insert_records, query_frame
from models import Base, NoticeChannel, NoticeStatus, Person, ReviewTask, TaskKind

NOTICES = Base.metadata.tables["notices"]


def queue_notices(session: Session, context: Context, rows: list[dict[str, Any]]) -> int:
    """Queue notices for the messaging gateway: SMS where a phone is known, else the app."""
    if not rows:
        return 0
    phones = dict(
        session.execute(
            select(Person.id, Person.phone).where(
                Person.id.in_(any_ids(session, [r["person_id"] for r in rows]))
            )
        ).all()
    )
    # Plain rows past the ORM (`insert_records`): a first run queues one per review opened.
    insert_records(
        session,
        NOTICES,
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


def notice_bodies(
    template: str, *, field: str, days: npt.NDArray[np.datetime64], **fixed: str
) -> list[str]:
    """Return `template` formatted with each day (ISO) as `field`, the rest `fixed`, as a column.

    The template is formatted once around a marker and the days' text put in its place, so a
    roll's worth of notices costs no Python per notice; a field with a format spec or a
    conversion is formatted one by one (what the marker cannot stand for).
    """
    text = np.datetime_as_string(days.astype("datetime64[D]"), unit="D")
    marker = "\x00"
    plain = marker not in template + "".join(fixed.values()) and all(
        spec == "" and conversion is None
        for _, name, spec, conversion in string.Formatter().parse(template)
        if name == field
    )
    if not plain:
        return [template.format(**{field: day}, **fixed) for day in text.tolist()]
    pieces = template.format(**{field: marker}, **fixed).split(marker)
    bodies = np.full(len(text), pieces[0])
    for piece in pieces[1:]:
        bodies = np.char.add(np.char.add(bodies, text), piece)
    formatted: list[str] = bodies.tolist()
    return formatted


def face_notices(session: Session, context: Context) -> int:
    """Tell each person asked for a face verification by this run, by when."""
    opened = query_frame(
        session,
        select(ReviewTask.id, ReviewTask.person_id, ReviewTask.due_on).where(
            ReviewTask.opened_run_id == context.run_id,
            ReviewTask.kind == TaskKind.FACE_VERIFICATION,
            context.in_partition(ReviewTask.person_id),
        ),
        ["id", "person_id", "due_on"],
    )
    bodies = notice_bodies(
        context.policy.notice_texts["face"], field="due",
        days=np.array(opened["due_on"].tolist(), dtype="datetime64[D]"),
    )  # fmt: skip
    return queue_notices(
        session, context,
        [{"person_id": p, "task_id": t, "template": "face", "body": body}
         for t, p, body in zip(opened["id"].astype(np.int64).tolist(),
                               opened["person_id"].astype(np.int64).tolist(), bodies,
                               strict=True)],
    )  # fmt: skip
