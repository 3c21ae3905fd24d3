"""Opening and closing review tasks from a run's levels; one open task per person at most."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from liveness.certification.policy import CertificationPolicy
from liveness.db import IN_CHUNK, any_ids, insert_records, read_frame
from liveness.review.capacity import plan_visits
from liveness.review.plan import visit_load
from liveness.scoring import fill_reasons
from models import (
    LIVE_TASK_STATUSES,
    Base,
    Certification,
    CertificationSource,
    Person,
    ReviewTask,
    TaskKind,
    TaskStatus,
    VisitOutcome,
)

# Review tasks go to the table as plain rows, past the ORM (`insert_records`).
REVIEW_TASKS = Base.metadata.tables["review_tasks"]
# The rule a death review's reasons name: a death record that did not match the roll cleanly.
DEATH_REVIEW_RULE = "death_record_name_mismatch"


@dataclass(frozen=True)
class RoutingResult:
    """How many tasks a run opened and closed, by kind."""

    opened: dict[str, int]
    closed_by_data: int
    cancelled: int
    visits_late: int = 0  # home visits opened that no week before their due date had room for


@dataclass
class VisitPlanning:
    """A run's new home visits, opened unplanned and planned into weeks at once, after routing.

    A grid's new visits are ranked by value against the visits it has open, less those the
    run closed or cancelled meanwhile: `route_reviews` opens them and leaves them here, and
    `plan` plans them all. A run by partitions of person ids (docs/PARTITIONED_RUN.md) keeps
    one for every partition, and plans them as one run does, in the order opened.
    """

    # Per partition routed: the new visits' person, grid, deadline and value (risk x amount).
    visits: list[pd.DataFrame] = field(default_factory=list)

    def plan(
        self, session: Session, *, run_id: int, as_of: dt.date, policy: CertificationPolicy
    ) -> int:
        """Plan the new visits into weeks; return how many no week before their due date had."""
        visits = pd.concat(self.visits, ignore_index=True) if self.visits else _no_visits()
        load = visit_load(session, today=as_of, before_run=run_id)
        weeks = _plan_weeks(visits, as_of=as_of, policy=policy, load=load)
        for week, persons in weeks.groupby("planned_week")["person_id"]:
            session.execute(
                update(ReviewTask)
                .where(ReviewTask.opened_run_id == run_id,
                       ReviewTask.kind == TaskKind.HOME_VISIT,
                       ReviewTask.person_id.in_(any_ids(session, sorted(persons.tolist()))))
                .values(planned_week=week)
            )  # fmt: skip
        return int(weeks["late"].sum())


def _no_visits() -> pd.DataFrame:
    """Return a frame of no new home visits, as `route_reviews` gathers them."""
    return pd.DataFrame(
        {"person_id": pd.Series(dtype="int64"), "grid_code": pd.Series(dtype=object),
         "deadline": pd.Series(dtype=object), "value": pd.Series(dtype=float)}
    )  # fmt: skip


def open_tasks(session: Session, *where: Any) -> pd.DataFrame:
    """Return the open tasks (those matching `where`): id, person_id and kind."""
    # One text the database joins (read_frame): a frame built from rows costs several times more.
    return read_frame(
        session,
        select(ReviewTask.id, ReviewTask.person_id, ReviewTask.kind).where(
            ReviewTask.status.in_(LIVE_TASK_STATUSES), *where
        ),
        ["id", "person_id", "kind"],
    )


def _close(
    session: Session, ids: list[int], *, status: TaskStatus, run_id: int, as_of: dt.date
) -> None:
    if ids:
        session.execute(
            update(ReviewTask)
            .where(ReviewTask.id.in_(any_ids(session, ids)))
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
    explain: Callable[[npt.ArrayLike], list[dict[str, Any]]] | None = None,
    current: pd.DataFrame | None = None,
    planning: VisitPlanning,
) -> RoutingResult:
    """Open reviews for people due for certification; close what data resolved.

    `assessed` has person_id, grid_code, region_code, level, certifiable, score, monthly_amount
    and reasons. Medium people due for renewal get a remote face verification (with the policy's
    `visit_first_after_failed_face`, a home visit where their last one came to nothing:
    `face_failed_lately`), weak ones a home visit (or, living outside the agency's area, a face
    verification: nobody can visit them; with `face_first_for_weak`, one who can verify remotely
    (`face_first`) too). Home visits are planned into weeks within their grid's capacity
    (`liveness.review.capacity`); `due_on` stays the deadline, `planned_week` is the plan. `due`
    limits new reviews to people whose certification is up for renewal (None: everyone);
    `visit_now` and `face_now` are people a finished review sends on (a failed or lapsed face
    verification to a visit; a person who moved away to a face verification); `visit_asked` are
    people of `visit_now` whose face verification a grid worker turned into a visit; `risk_now`
    are people whose risk opens a review before their cycle is due (traces stopped abruptly, a
    low P(alive)), reviewed as their level is; none of them opens for someone the data certifies
    tonight. `current`: the open tasks (`open_tasks`), if the caller has read them.
    `planning`: where the new home visits are left, opened unplanned, for the caller to plan
    (`VisitPlanning.plan`) once nothing else of the run closes a visit. A person
    never has two open tasks; a strong person's open review is closed as resolved by data,
    unless a degraded source kept them strong (not certifiable: the credit resolves nothing); a
    dead person's is cancelled (the death itself goes to the list).
    """
    if current is None:
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
    # A review asked for by a settled task or a risk opens only for someone the data does not
    # certify tonight: it would be closed by data at the next run (a rerun of the date closed
    # what the first run had opened), and the person asked for nothing.
    by_data_now = (assessed["level"] == "strong") & assessed["certifiable"].astype(bool)
    forced = (
        assessed["person_id"].isin(set(visit_now) | set(face_now) | set(risk_now))
        & (assessed["level"] != "deceased")
        & ~by_data_now
    )
    candidates = assessed[(reviewable | forced) & ~assessed["person_id"].isin(still_open)]
    in_area = candidates["region_code"].astype(str).str.startswith(policy.area_prefixes)
    wants_face = (candidates["level"] == "medium") | candidates["person_id"].isin(face_now)
    wants_face &= ~candidates["person_id"].isin(visit_now)
    # Nobody can visit a person who lives elsewhere: they are offered a face verification.
    face = wants_face.to_numpy() | ~in_area.to_numpy()
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
    # A weak person due for renewal who can verify remotely is asked to first: a visit
    # follows only if that verification fails or is ignored (cause face_failed).
    renewal_visit = ~face & (cause == "renewal")
    # A medium one whose last try came to nothing is visited at once, not asked again.
    renewal_face = face & in_area.to_numpy() & (cause == "renewal")
    if policy.capacity.face_first_for_weak and renewal_visit.any():
        remote = face_first(session, persons=candidates.loc[renewal_visit, "person_id"])
        face |= renewal_visit & candidates["person_id"].isin(remote).to_numpy()
    if policy.capacity.visit_first_after_failed_face and renewal_face.any():
        failed = face_failed_lately(session, persons=candidates.loc[renewal_face, "person_id"])
        face &= ~(renewal_face & candidates["person_id"].isin(failed).to_numpy())
    kind = np.where(face, TaskKind.FACE_VERIFICATION, TaskKind.HOME_VISIT)
    due_days = np.where(face, policy.face_due_days, policy.visit_due_days)
    # Riskier people and larger monthly amounts come first: both raise what a miss costs.
    at_risk = (1.0 - candidates["score"].to_numpy()) * candidates["monthly_amount"].to_numpy(float)
    priority = at_risk * policy.priority_per_yuan_at_risk
    # Home visits are planned into weeks within their grid's capacity, by risk x amount.
    visits = pd.DataFrame({
        "person_id": candidates["person_id"].to_numpy(dtype=np.int64)[~face],
        "grid_code": candidates["grid_code"].to_numpy()[~face],
        "deadline": as_of + dt.timedelta(days=policy.visit_due_days),
        "value": at_risk[~face],
    })  # fmt: skip
    planning.visits.append(visits)
    rows = [
        {
            "person_id": int(person_id),
            "kind": task_kind,
            "status": TaskStatus.OPEN,
            "grid_code": grid_code,
            "priority": round(float(task_priority), 2),
            "opened_on": as_of,
            "due_on": as_of + dt.timedelta(days=int(days)),
            # Planned into a week with every partition's new visits (`VisitPlanning.plan`).
            "planned_week": None,
            "opened_run_id": run_id,
            "reasons": reasons,
            "cause": str(task_cause),
        }
        for person_id, task_kind, grid_code, task_priority, days, reasons, task_cause in zip(
            candidates["person_id"], kind, candidates["grid_code"], priority, due_days,
            fill_reasons(candidates, explain), cause, strict=True,
        )
    ]  # fmt: skip
    if rows:
        insert_records(session, REVIEW_TASKS, rows)
    opened = pd.Series(kind).value_counts().to_dict() if len(kind) else {}
    return RoutingResult(
        opened={str(k): int(v) for k, v in opened.items()},
        closed_by_data=len(resolved),
        cancelled=len(cancelled),
    )


def _plan_weeks(
    visits: pd.DataFrame, *, as_of: dt.date, policy: CertificationPolicy, load: pd.DataFrame
) -> pd.DataFrame:
    """Plan new home visits into weeks beside those already planned (`plan_visits`)."""
    grids = sorted(set(visits["grid_code"].astype(str)))
    capacity = pd.Series({grid: policy.capacity.of(grid) for grid in grids}, dtype="int64")
    return plan_visits(visits, load=load, capacity=capacity, today=as_of)


def face_first(session: Session, *, persons: pd.Series) -> set[int]:
    """Return those of `persons` who may verify remotely before a visit is sent.

    They have a phone on the roll and no face verification came to nothing lately
    (`face_failed_lately`).
    """
    ids = sorted({int(p) for p in persons})
    phones: set[int] = set()
    # In chunks: SQLite caps the parameters of a statement.
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        phones.update(
            session.scalars(
                select(Person.id).where(
                    Person.id.in_(chunk), Person.phone.is_not(None), func.trim(Person.phone) != ""
                )
            ).all()
        )
    return phones - face_failed_lately(session, persons=persons)


def face_failed_lately(session: Session, *, persons: pd.Series) -> set[int]:
    """Return those of `persons` whose face verification failed or was ignored lately.

    Lately is since their last certification by anything but a home visit (ever, where they
    have none): a visit that certified them followed a remote try that came to nothing, or
    was sent at once after one, and another try would be one more request before the same
    visit. A certification by the data, a face or a proxy starts afresh.
    """
    ids = sorted({int(p) for p in persons})
    blocked: set[int] = set()
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        # Read at once: a result left open holds its statement (and on SQLite the run's lock
        # past a rollback) if the next statement fails.
        certified = pd.DataFrame(
            session.execute(
                select(Certification.person_id, func.max(Certification.certified_on))
                .where(Certification.person_id.in_(chunk),
                       Certification.source != CertificationSource.VISIT)
                .group_by(Certification.person_id)
            ).all(),
            columns=["person_id", "certified_on"],
        )  # fmt: skip
        failed = pd.DataFrame(
            session.execute(
                select(ReviewTask.person_id, ReviewTask.opened_on).where(
                    ReviewTask.person_id.in_(chunk),
                    ReviewTask.kind == TaskKind.FACE_VERIFICATION,
                    ReviewTask.outcome.in_([VisitOutcome.FACE_FAILED, VisitOutcome.LAPSED]),
                )
            ).all(),
            columns=["person_id", "opened_on"],
        )
        tries = failed.merge(certified, on="person_id", how="left")
        since = pd.to_datetime(tries["certified_on"])
        lately = since.isna() | (pd.to_datetime(tries["opened_on"]) >= since)
        blocked.update(tries.loc[lately.to_numpy(), "person_id"].astype(int))
    return blocked


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
        insert_records(session, REVIEW_TASKS, rows)
    return len(rows)
