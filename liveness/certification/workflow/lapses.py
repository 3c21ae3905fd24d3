"""Who lapses: certification ended, told, given the notice period, and a review failed."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.certification.service import cycle_days, dates_of
from liveness.certification.workflow.context import REVIEW_KINDS, Context, WorkflowResult
from liveness.certification.workflow.frames import frame_in
from liveness.certification.workflow.notices import notice_bodies, queue_notices
from models import (
    Benefit,
    BenefitStatus,
    Notice,
    NoticeStatus,
    ReviewTask,
    TaskKind,
    TaskStatus,
    VisitOutcome,
)


def find_lapses(
    session: Session, context: Context, *, ends: pd.Series, assessed: pd.DataFrame,
    certified_now: npt.NDArray[np.int64], result: WorkflowResult,
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Return who lapses now after a real chance, with the evidence; notify the newly lapsed.

    The certification ended; a lapse notice was sent after it ended and its period passed;
    and the latest review of the cycle happened and failed. An open review past its due date
    is the agency's delay: it escalates (the run report lists it) and suspends nobody.
    """
    # Each person's end as a day (NaT where none; a far end is simply after today), kept as
    # a day number beside the person so the lapsed keep theirs.
    end = dates_of(assessed["person_id"], ends)
    roll = assessed[["person_id", "benefit_type", "level"]].assign(end=end.astype(np.int64))
    lapsed = roll[
        ~np.isnat(end)
        & (end < np.datetime64(context.as_of, "D"))
        & ~roll["person_id"].isin(certified_now).to_numpy()
        & ~roll["level"].isin(["deceased", "strong"]).to_numpy()
    ].drop_duplicates("person_id")
    if lapsed.empty:
        return {}
    persons = lapsed["person_id"].astype(int).tolist()
    # Only who draws an active benefit matters here: their ids, not their benefits' rows.
    active = set(
        frame_in(
            session, persons,
            lambda ids: select(Benefit.person_id).where(
                Benefit.person_id.in_(ids), Benefit.status == BenefitStatus.ACTIVE
            ),
            ["person_id"],
        )["person_id"]
    )  # fmt: skip
    lapsed = lapsed[lapsed["person_id"].isin(active)]
    persons = lapsed["person_id"].astype(int).tolist()
    notified, sent_on = _lapse_notices(session, context, persons=persons, ends=ends)
    frame = pd.DataFrame({"person_id": persons})
    frame["ended"] = dates_of(frame["person_id"], ends).astype(object)
    frame["told"] = frame["person_id"].map(sent_on)
    # Only whose notice period is over can lapse or wait for a review: only theirs are read.
    over = _period_over(frame["told"], as_of=context.as_of, days=context.policy.cycle.notice_days)
    window = cycle_days(context.policy, lapsed["benefit_type"], field="renewal_window_days")
    opens = pd.Series(
        (lapsed["end"].to_numpy().astype("datetime64[D]") - window.astype("timedelta64[D]"))
        .astype(object),
        index=persons, dtype=object,
    )[over]  # fmt: skip
    failed = _failed_reviews(session, context, persons=opens.index.tolist(), opens=opens)
    return _ready_to_lapse(
        session, context, frame, notified=frame["person_id"].isin(notified).to_numpy(),
        period_over=over, failed=failed, result=result,
    )  # fmt: skip


def _lapse_notices(
    session: Session, context: Context, *, persons: list[int], ends: pd.Series
) -> tuple[pd.Series, pd.Series]:
    """Return who has a lapse notice since their certification ended, and when it was sent.

    The day sent is the local day of the earliest notice sent, per person, never before the
    notice was written (a day recorded before it would shorten the person's notice period).
    """
    # Two reads: every lapse notice's person and day as one joined text, and the time sent of
    # the few sent (a timestamp column would make the first read go row by row).
    notices = _since_ended(frame_in(
        session, persons,
        lambda chunk: select(Notice.person_id, Notice.created_on)
        .where(Notice.template == "lapse", Notice.person_id.in_(chunk)),
        ["person_id", "created_on"],
    ), ends)  # fmt: skip
    zone = ZoneInfo(context.timezone)
    sent = _since_ended(frame_in(
        session, persons,
        lambda chunk: select(Notice.person_id, Notice.created_on, Notice.sent_at)
        .where(Notice.template == "lapse", Notice.status == NoticeStatus.SENT,
               Notice.person_id.in_(chunk)),
        ["person_id", "created_on", "sent_at"],
    ), ends)  # fmt: skip
    day = pd.Series(
        [at.astimezone(zone).date() for at in sent["sent_at"]], index=sent.index, dtype=object
    )
    written = sent["created_on"]
    sent_on = (
        sent.assign(day=day.where((day >= written).to_numpy(dtype=bool), written))
        .groupby("person_id")["day"].min()
    )  # fmt: skip
    return notices["person_id"], sent_on


def _period_over(told: pd.Series, *, as_of: dt.date, days: int) -> npt.NDArray[np.bool_]:
    """Return whether each notice, sent on the day `told` (None where unsent), has run its days."""
    sent = told.notna().to_numpy()
    return sent & (pd.Timestamp(as_of) - pd.to_datetime(told) >= pd.Timedelta(days=days)).to_numpy()


def _since_ended(notices: pd.DataFrame, ends: pd.Series) -> pd.DataFrame:
    """Return the notices written on or after their person's certification ended."""
    ended = dates_of(notices["person_id"], ends)
    return notices[pd.to_datetime(notices["created_on"]).to_numpy() >= ended]


def _ready_to_lapse(
    session: Session, context: Context, frame: pd.DataFrame, *, notified: np.ndarray,
    period_over: np.ndarray, failed: dict[int, dict[str, Any]], result: WorkflowResult,
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Return the lapsed who were told, given the notice period and failed a review; tell the rest.

    `frame` holds each lapsed person, the day their certification ended and the day they were
    told (a lapse notice sent); `notified` marks those with a lapse notice, sent or not;
    `period_over` those told whose notice period has passed (`_period_over`).
    """
    as_of, policy = context.as_of, context.policy
    told = frame["told"].notna().to_numpy()
    review_failed = frame["person_id"].isin(failed).to_numpy()
    # Lapsed, told, given the notice period, and a review failed: only now.
    ready = frame[notified & period_over & review_failed]
    waiting = {
        "notice_unsent": int((notified & ~told).sum()),
        "notice_period": int((told & ~period_over).sum()),
        "review_pending": int((period_over & ~review_failed).sum()),
    }
    deadline = (as_of + dt.timedelta(days=policy.cycle.notice_days)).isoformat()
    told_now = frame[~notified]
    bodies = notice_bodies(
        policy.notice_texts["lapse"], field="end", deadline=deadline,
        days=np.array(told_now["ended"].tolist(), dtype="datetime64[D]"),
    )  # fmt: skip
    new_notices = [
        {"person_id": p, "template": "lapse", "body": body}
        for p, body in zip(told_now["person_id"].astype(np.int64).tolist(), bodies, strict=True)
    ]
    lapses = {
        int(p): {"certification_ended": e.isoformat(), "notice_sent_on": t.isoformat(),
                 **failed[int(p)]}
        for p, e, t in zip(ready["person_id"], ready["ended"], ready["told"], strict=True)
    }  # fmt: skip
    result.notices["lapse"] = queue_notices(session, context, new_notices)
    result.lapse_waiting = waiting
    return lapses


def _failed_reviews(
    session: Session, context: Context, *, persons: list[int], opens: pd.Series
) -> dict[int, dict[str, Any]]:
    """Return persons whose latest review of the cycle happened and failed, with that review.

    `opens` gives, per person, the day their renewal window opened: reviews before it belong
    to an earlier cycle.

    A visit failed if it ended in one of the policy's failed outcomes (`refused`); a face
    verification if it failed, or was ignored past its due date although its notice was
    sent. A visit that found nobody is no failure: the remote verification it leads to is.
    """
    policy = context.policy
    reviews = frame_in(
        session, persons,
        lambda chunk: select(ReviewTask.id, ReviewTask.person_id, ReviewTask.kind,
                             ReviewTask.status, ReviewTask.outcome, ReviewTask.opened_on,
                             ReviewTask.due_on)
        .where(ReviewTask.person_id.in_(chunk), ReviewTask.kind.in_(REVIEW_KINDS)),
        ["id", "person_id", "kind", "status", "outcome", "opened_on", "due_on"],
    )  # fmt: skip
    if reviews.empty:
        return {}
    reviews = reviews[
        pd.to_datetime(reviews["opened_on"]).to_numpy()
        >= pd.to_datetime(reviews["person_id"].map(opens)).to_numpy()
    ]
    latest = reviews.sort_values(["person_id", "opened_on", "id"]).drop_duplicates(
        "person_id", keep="last"
    )
    for column in ("kind", "status", "outcome"):
        latest[column] = latest[column].astype(object).map(lambda v: None if v is None else str(v))
    done = latest["status"] == str(TaskStatus.DONE)
    visit_failed = (latest["kind"] == str(TaskKind.HOME_VISIT)) & latest["outcome"].isin(
        policy.lapse.failed_visit_outcomes
    )
    face = latest["kind"] == str(TaskKind.FACE_VERIFICATION)
    face_failed = face & (latest["outcome"] == str(VisitOutcome.FACE_FAILED))
    ignored = face & (latest["outcome"] == str(VisitOutcome.LAPSED))
    told = _notice_sent_by_due(session, latest.loc[ignored, ["id", "due_on"]], context.timezone)
    ignored &= latest["id"].isin(told)
    chosen = latest[done & (visit_failed | face_failed | ignored)]
    return {
        int(p): {"review_task": int(t), "review_outcome": str(o)}
        for p, t, o in zip(chosen["person_id"], chosen["id"], chosen["outcome"], strict=True)
    }


def _notice_sent_by_due(session: Session, tasks: pd.DataFrame, timezone: str) -> set[int]:
    """Return the tasks whose face notice was sent by their due date (a local day)."""
    if tasks.empty:
        return set()
    rows = frame_in(
        session, tasks["id"].astype(int),
        lambda chunk: select(Notice.task_id, Notice.sent_at).where(
            Notice.task_id.in_(chunk), Notice.status == NoticeStatus.SENT
        ),
        ["id", "sent_at"],
    )  # fmt: skip
    due = tasks.set_index("id")["due_on"]
    return {
        int(t) for t, at in zip(rows["id"], rows["sent_at"], strict=True)
        if at.astimezone(ZoneInfo(timezone)).date() <= due[t]
    }  # fmt: skip
