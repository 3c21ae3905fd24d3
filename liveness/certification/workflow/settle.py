"""Settle the reviews: face verifications by their results, the outcomes since the last run, and
the deaths reviews found.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from liveness.certification import CertificationPolicy
from liveness.certification.workflow.context import Context, WorkflowResult
from liveness.certification.workflow.frames import date_of_day, face_results, proofs_of_life
from liveness.db import any_ids, query_frame, read_frame
from liveness.review.outcomes import REVIEW_DEATH_SOURCE, review_death_record_id
from models import (
    CertificationSource,
    DeathMatch,
    DeathRecord,
    Person,
    RecordStatus,
    ReviewTask,
    TaskKind,
    TaskStatus,
    VisitOutcome,
)

OPEN_TASK_STATUSES = (TaskStatus.OPEN, TaskStatus.CLAIMED)


# The face channel of a verification a grid worker helped the person through and recorded.
ASSISTED_CHANNEL = "assisted"


@dataclass(frozen=True)
class Settled:
    """What settling the reviews left: the outcomes taken up and what face verifications showed."""

    outcomes: pd.DataFrame  # review outcomes recorded since the last run, as `_apply_outcomes`
    face_proofs: pd.DataFrame  # proofs of life from passed face verifications, as `proofs_of_life`
    face_failures: pd.DataFrame  # failed or lapsed face verifications: id, person_id, cause
    visits_asked: set[int]  # persons a grid worker asked a home visit for


def settle_reviews(session: Session, context: Context, result: WorkflowResult) -> Settled:
    """Settle face verifications, take up review outcomes and settle the deaths reviews found."""
    face_proofs, face_failures = _settle_face_tasks(session, context, result)
    outcomes = _apply_outcomes(session, context, result)
    assisted, failed_assisted, visits_asked = _assisted_face_results(outcomes, context.policy)
    settled = Settled(
        outcomes=outcomes,
        face_proofs=pd.concat([face_proofs, assisted], ignore_index=True),
        face_failures=pd.concat([face_failures, failed_assisted], ignore_index=True),
        visits_asked=visits_asked,
    )
    _record_review_deaths(session, outcomes)
    result.death_records_settled = _settle_death_records(session, outcomes)
    return settled


def _settle_face_tasks(
    session: Session, context: Context, result: WorkflowResult
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Close open face verifications by their results; return the proofs and the failures.

    Failures are the tasks that failed or lapsed (ignored past their due date), with their
    person and the cause the task was opened for.
    """
    as_of, policy = context.as_of, context.policy
    # Ordered by id here, not by the database: the same rows, without numbering them there.
    tasks = read_frame(
        session,
        select(ReviewTask.id, ReviewTask.person_id, ReviewTask.opened_on, ReviewTask.due_on,
               ReviewTask.cause)
        .where(ReviewTask.kind == TaskKind.FACE_VERIFICATION,
               ReviewTask.status.in_(OPEN_TASK_STATUSES),
               context.in_partition(ReviewTask.person_id)),
        ["id", "person_id", "opened_on", "due_on", "cause"],
    ).sort_values("id", ignore_index=True)  # fmt: skip
    no_failures = pd.DataFrame(
        {"id": pd.Series(dtype="int64"), "person_id": pd.Series(dtype="int64"),
         "cause": pd.Series(dtype=object)}
    )  # fmt: skip
    if tasks.empty:
        return proofs_of_life([], [], [], []), no_failures
    results = face_results(
        session, store=context.store, first_day=min(tasks["opened_on"]), as_of=as_of,
        persons=context.persons,
    ).merge(tasks, on="person_id")  # fmt: skip
    opened_day = (pd.to_datetime(results["opened_on"]) - pd.Timestamp("1970-01-01")).dt.days
    results = results[results["day"].to_numpy() >= opened_day.to_numpy()]
    own = {f"pass_{channel}" for channel in policy.own_face_channels}
    passing = results["kind"].isin(own) | (policy.proxy_allowed & (results["kind"] == "pass_proxy"))
    by_task = results.groupby("id")["kind"].agg(set)
    passes = results[passing].groupby("id")["day"].max()
    passed_own = {t for t, kinds in by_task.items() if kinds & own}
    passed = set(passes.index)
    failed = set(by_task.index) - passed
    overdue = set(tasks.loc[pd.to_datetime(tasks["due_on"]) < pd.Timestamp(as_of), "id"])
    lapsed = overdue - passed - failed
    _close_face_tasks(session, context, passed=passed, failed=failed, lapsed=lapsed, result=result)
    by_id = tasks.set_index("id")
    ordered = sorted(passed)
    proofs = proofs_of_life(
        (by_id.at[t, "person_id"] for t in ordered),
        (CertificationSource.FACE if t in passed_own else CertificationSource.PROXY
         for t in ordered),
        (date_of_day(passes[t]) for t in ordered),
        ({"face_task": int(t)} for t in ordered),
    )  # fmt: skip
    failures = by_id.loc[sorted(failed | lapsed), ["person_id", "cause"]].reset_index()
    return proofs, failures


def _close_face_tasks(
    session: Session, context: Context, *, passed: set[int], failed: set[int],
    lapsed: set[int], result: WorkflowResult,
) -> None:  # fmt: skip
    """Close the face verifications that passed, failed or lapsed, in this run, and count them."""
    for outcome, ids in (
        (VisitOutcome.FACE_PASSED, passed),
        (VisitOutcome.FACE_FAILED, failed),
        (VisitOutcome.LAPSED, lapsed),
    ):
        if ids:
            session.execute(
                update(ReviewTask)
                .where(ReviewTask.id.in_(any_ids(session, sorted(ids))))
                .values(
                    status=TaskStatus.DONE, outcome=outcome, closed_on=context.as_of,
                    closed_run_id=context.run_id,
                )
            )  # fmt: skip
        result.face_settled[str(outcome)] = len(ids)


def _apply_outcomes(session: Session, context: Context, result: WorkflowResult) -> pd.DataFrame:
    """Take the review outcomes recorded since the last run, with their kind and reasons."""
    done = query_frame(
        session,
        select(
            ReviewTask.id, ReviewTask.person_id, ReviewTask.kind, ReviewTask.outcome,
            ReviewTask.outcome_detail, ReviewTask.reasons, ReviewTask.closed_on, ReviewTask.cause,
        )
        .where(ReviewTask.status == TaskStatus.DONE, ReviewTask.closed_run_id.is_(None),
               context.in_partition(ReviewTask.person_id))
        .order_by(ReviewTask.id)
        # Locked until the run publishes: an undo (review.outcomes.undo_outcome) waits, then
        # finds the outcome taken up; one that came first is not selected.
        .with_for_update(of=ReviewTask),
        ["id", "person_id", "kind", "outcome", "detail", "reasons", "closed_on", "cause"],
    )  # fmt: skip
    if done.empty:
        return done.assign(actor=pd.Series(dtype=object), day=pd.Series(dtype=object))
    session.execute(
        update(ReviewTask)
        .where(ReviewTask.id.in_(any_ids(session, done["id"].tolist())))
        .values(closed_run_id=context.run_id)
    )
    done["outcome"] = done["outcome"].astype(object).map(str)
    done["kind"] = done["kind"].astype(object).map(str)
    done["actor"] = [detail.get("by", "system") for detail in done["detail"]]
    done["day"] = [
        dt.date.fromisoformat(detail["recorded_on"]) if "recorded_on" in detail else closed
        for detail, closed in zip(done["detail"], done["closed_on"], strict=True)
    ]
    result.outcomes_applied = {str(k): int(v) for k, v in done["outcome"].value_counts().items()}
    return done


def _assisted_face_results(
    outcomes: pd.DataFrame, policy: CertificationPolicy
) -> tuple[pd.DataFrame, pd.DataFrame, set[int]]:
    """Return what grid workers recorded on face verifications: proofs, failures, visits asked.

    An assisted verification that passed proves life as the policy counts the assisted
    channel (the person's own, else by proxy where allowed, else not at all); one that failed
    is a failed face verification like any other; `visit_needed` asks for a home visit.
    """
    face = outcomes[outcomes["kind"] == str(TaskKind.FACE_VERIFICATION)]
    passed = face[face["outcome"] == str(VisitOutcome.FACE_PASSED)]
    if ASSISTED_CHANNEL in policy.own_face_channels:
        source: CertificationSource | None = CertificationSource.FACE
    else:
        source = CertificationSource.PROXY if policy.proxy_allowed else None
    if source is None:
        passed = passed.iloc[0:0]
    proofs = proofs_of_life(
        passed["person_id"], [source] * len(passed), passed["day"],
        ({"face_task": int(t), "channel": ASSISTED_CHANNEL} for t in passed["id"]),
    )  # fmt: skip
    failed = face.loc[
        face["outcome"] == str(VisitOutcome.FACE_FAILED), ["id", "person_id", "cause"]
    ]
    visits = set(
        face.loc[face["outcome"] == str(VisitOutcome.VISIT_NEEDED), "person_id"].astype(int)
    )
    return proofs, failed.reset_index(drop=True), visits


def _record_review_deaths(session: Session, outcomes: pd.DataFrame) -> int:
    """Keep each review that found the person dead as a death record of source `review`.

    As a record, the death holds from run to run like any other (it grades the person
    deceased, terminates their benefits in time) until proof of life or a supervisor's
    correction withdraws it.
    """
    found = outcomes[outcomes["outcome"] == str(VisitOutcome.DECEASED)]
    if found.empty:
        return 0
    persons = {
        row.id: row
        for row in session.execute(
            select(Person.id, Person.id_number, Person.id_status, Person.name, Person.sex,
                   Person.birth_date)
            .where(Person.id.in_(any_ids(session, found["person_id"].tolist())))
        )
    }  # fmt: skip
    rows = []
    for task_id, person_id, detail, day in zip(
        found["id"], found["person_id"], found["detail"], found["day"], strict=True
    ):
        person = persons[int(person_id)]
        rows.append(
            {
                "source": REVIEW_DEATH_SOURCE, "record_id": review_death_record_id(int(task_id)),
                "id_number": person.id_number, "id_status": person.id_status,
                "name": person.name, "sex": person.sex, "birth_date": person.birth_date,
                "died_on": dt.date.fromisoformat(detail["died_on"]), "recorded_on": day,
                "person_id": int(person_id), "match": DeathMatch.ID_NUMBER, "confidence": 1.0,
                "status": RecordStatus.ACTIVE, "settled_by": detail.get("by"),
                "settled_on": day, "settlement": str(VisitOutcome.DECEASED),
            }
        )  # fmt: skip
    # A task corrected away from `deceased` and back again finds its voided record: renewed.
    session.execute(
        delete(DeathRecord).where(
            DeathRecord.source == REVIEW_DEATH_SOURCE,
            DeathRecord.record_id.in_([row["record_id"] for row in rows]),
        )
    )
    session.execute(insert(DeathRecord), rows)
    return len(rows)


def _settle_death_records(session: Session, outcomes: pd.DataFrame) -> int:
    """Settle for good the death record each answered death review was about.

    `alive_confirmed` and `not_a_death` refute it (it never acts nor opens a review again);
    `deceased` confirms the person's death (kept as a review death) and closes the record.
    """
    answered = outcomes[outcomes["kind"] == str(TaskKind.DEATH_REVIEW)]
    settled = 0
    for reasons, outcome, actor, day in zip(
        answered["reasons"], answered["outcome"], answered["actor"], answered["day"],
        strict=True,
    ):  # fmt: skip
        record = (reasons or {}).get("record") or {}
        if "source" not in record or "record_id" not in record:
            continue
        values: dict[str, Any] = {"settled_by": actor, "settled_on": day, "settlement": outcome}
        if outcome != str(VisitOutcome.DECEASED):
            values["status"] = RecordStatus.REFUTED
        settled += session.execute(
            update(DeathRecord)
            .where(DeathRecord.source == record["source"],
                   DeathRecord.record_id == str(record["record_id"]))
            .values(**values)
        ).rowcount  # type: ignore[attr-defined]  # fmt: skip
    return settled
