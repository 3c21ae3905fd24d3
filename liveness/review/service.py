"""Opening and closing review tasks from a run's levels; one open task per person at most."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from liveness.certification.policy import CertificationPolicy
from models import LIVE_TASK_STATUSES, ReviewTask, TaskKind, TaskStatus

# The rule a death review's reasons name: a death record that did not match the roll cleanly.
DEATH_REVIEW_RULE = "death_record_name_mismatch"


@dataclass(frozen=True)
class RoutingResult:
    """How many tasks a run opened and closed, by kind."""

    opened: dict[str, int]
    closed_by_data: int
    cancelled: int


def open_tasks(session: Session) -> pd.DataFrame:
    """Return the open tasks: id, person_id and kind."""
    rows = session.execute(
        select(ReviewTask.id, ReviewTask.person_id, ReviewTask.kind).where(
            ReviewTask.status.in_(LIVE_TASK_STATUSES)
        )
    ).all()
    return pd.DataFrame(rows, columns=["id", "person_id", "kind"])


def _close(
    session: Session, ids: list[int], *, status: TaskStatus, run_id: int, as_of: dt.date
) -> None:
    if ids:
        session.execute(
            update(ReviewTask)
            .where(ReviewTask.id.in_(ids))
            .values(status=status, closed_run_id=run_id, closed_on=as_of)
        )


# Long by design: one vectorised pass: close what data resolved, then open, then rank.
def route_reviews(
    session: Session,
    *,
    run_id: int,
    as_of: dt.date,
    assessed: pd.DataFrame,
    policy: CertificationPolicy,
    due: set[int] | None = None,
    visit_now: set[int] = frozenset(),  # type: ignore[assignment]
    face_now: set[int] = frozenset(),  # type: ignore[assignment]
    visit_asked: set[int] = frozenset(),  # type: ignore[assignment]
    risk_now: set[int] = frozenset(),  # type: ignore[assignment]
) -> RoutingResult:
    """Open reviews for people due for certification; close what data resolved.

    `assessed` has person_id, grid_code, region_code, level, certifiable, score,
    monthly_amount and reasons. Medium people due for renewal get a remote face verification,
    weak ones a home visit (or, living outside the agency's area, a face verification: nobody
    can visit them). `due` limits new reviews to people whose certification is up for renewal
    (None: everyone); `visit_now` and `face_now` are people a finished review sends on (a
    failed or lapsed face verification to a visit; a person who moved away to a face
    verification); `visit_asked` are people of `visit_now` whose face verification a grid
    worker turned into a visit; `risk_now` are people whose risk opens a review before their
    cycle is due (traces stopped abruptly, a low P(alive)), reviewed as their level is.
    A person never has two open tasks; a strong person's open review is closed as resolved by
    data, unless a degraded source kept them strong (not certifiable: the credit resolves
    nothing); a dead person's is cancelled (the death itself goes to the list).
    """
    current = open_tasks(session)
    level_of = assessed.set_index("person_id")["level"]
    current_level = level_of.reindex(current["person_id"]).to_numpy()
    by_data = assessed.set_index("person_id")["certifiable"].reindex(current["person_id"])
    is_review = current["kind"].isin([TaskKind.FACE_VERIFICATION, TaskKind.HOME_VISIT]).to_numpy()
    resolved = current.loc[
        (current_level == "strong") & by_data.fillna(False).to_numpy(dtype=bool) & is_review, "id"
    ].tolist()
    cancelled = current.loc[current_level == "deceased", "id"].tolist()
    _close(session, resolved, status=TaskStatus.CLOSED_BY_DATA, run_id=run_id, as_of=as_of)
    _close(session, cancelled, status=TaskStatus.CANCELLED, run_id=run_id, as_of=as_of)

    still_open = set(current["person_id"]) - set(
        current.loc[current["id"].isin(resolved + cancelled), "person_id"]
    )
    reviewable = assessed["level"].isin(["medium", "weak"])
    if due is not None:
        reviewable &= assessed["person_id"].isin(due)
    forced = assessed["person_id"].isin(set(visit_now) | set(face_now) | set(risk_now)) & (
        assessed["level"] != "deceased"
    )
    candidates = assessed[(reviewable | forced) & ~assessed["person_id"].isin(still_open)]
    in_area = candidates["region_code"].astype(str).str.startswith(policy.area_prefixes)
    wants_face = (candidates["level"] == "medium") | candidates["person_id"].isin(face_now)
    wants_face &= ~candidates["person_id"].isin(visit_now)
    # Nobody can visit a person who lives elsewhere: they are offered a face verification.
    face = wants_face.to_numpy() | ~in_area.to_numpy()
    kind = np.where(face, TaskKind.FACE_VERIFICATION, TaskKind.HOME_VISIT)
    # Why each task opens: a visit a grid worker asked for instead of a face verification, a
    # visit after a failed face verification, a face verification after a visit that found
    # nobody, a risk before the cycle is due, else the certification's renewal.
    cause = np.select(
        [
            candidates["person_id"].isin(visit_asked).to_numpy(),
            candidates["person_id"].isin(visit_now).to_numpy(),
            candidates["person_id"].isin(face_now).to_numpy(),
            candidates["person_id"].isin(risk_now).to_numpy(),
        ],
        ["visit_asked", "face_failed", "after_visit", "risk"],
        default="renewal",
    )
    due_days = np.where(face, policy.face_due_days, policy.visit_due_days)
    # Riskier people and larger monthly amounts come first: both raise what a miss costs.
    at_risk = (1.0 - candidates["score"].to_numpy()) * candidates["monthly_amount"].to_numpy(float)
    priority = at_risk * policy.priority_per_yuan_at_risk
    rows = [
        {
            "person_id": int(person_id),
            "kind": task_kind,
            "status": TaskStatus.OPEN,
            "grid_code": grid_code,
            "priority": round(float(task_priority), 2),
            "opened_on": as_of,
            "due_on": as_of + dt.timedelta(days=int(days)),
            "opened_run_id": run_id,
            "reasons": reasons,
            "cause": str(task_cause),
        }
        for person_id, task_kind, grid_code, task_priority, days, reasons, task_cause in zip(
            candidates["person_id"], kind, candidates["grid_code"], priority, due_days,
            candidates["reasons"], cause, strict=True,
        )
    ]  # fmt: skip
    if rows:
        session.execute(insert(ReviewTask), rows)
    opened = pd.Series(kind).value_counts().to_dict() if len(kind) else {}
    return RoutingResult(
        opened={str(k): int(v) for k, v in opened.items()},
        closed_by_data=len(resolved),
        cancelled=len(cancelled),
    )


def open_death_reviews(
    session: Session,
    *,
    run_id: int,
    as_of: dt.date,
    cases: pd.DataFrame,
    policy: CertificationPolicy,
) -> int:
    """Open a death review for each person named by a death record that did not match cleanly.

    `cases` has person_id, grid_code, record (a dict describing the record). A review
    supersedes the person's open face verification or visit; it suspends nobody.
    """
    if cases.empty:
        return 0
    current = open_tasks(session)
    mine = current[current["person_id"].isin(cases["person_id"])]
    already = set(mine.loc[mine["kind"] == TaskKind.DEATH_REVIEW, "person_id"])
    superseded = mine.loc[mine["kind"] != TaskKind.DEATH_REVIEW, "id"].tolist()
    cases = cases[~cases["person_id"].isin(already)].drop_duplicates("person_id")
    superseded = [
        task_id
        for task_id, person_id in zip(mine["id"], mine["person_id"], strict=True)
        if task_id in superseded and person_id in set(cases["person_id"])
    ]
    _close(session, superseded, status=TaskStatus.CANCELLED, run_id=run_id, as_of=as_of)
    rows = [
        {
            "person_id": int(person_id),
            "kind": TaskKind.DEATH_REVIEW,
            "status": TaskStatus.OPEN,
            "grid_code": grid_code,
            "priority": policy.death_review_priority,
            "opened_on": as_of,
            "due_on": as_of + dt.timedelta(days=policy.death_review_due_days),
            "opened_run_id": run_id,
            "reasons": {"rule": DEATH_REVIEW_RULE, "record": record},
            "cause": "death_record",
        }
        for person_id, grid_code, record in zip(
            cases["person_id"], cases["grid_code"], cases["record"], strict=True
        )
    ]
    if rows:
        session.execute(insert(ReviewTask), rows)
    return len(rows)
