"""Route the run's reviews: visits, face verifications, renewals and death reviews."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from liveness.certification import cycle_days, dates_of
from liveness.certification.workflow.context import REVIEW_KINDS, Context, WorkflowResult
from liveness.certification.workflow.estimate import Estimate
from liveness.certification.workflow.moments import previous_run_day
from liveness.certification.workflow.notices import face_notices
from liveness.certification.workflow.proofs import ACTING, Certified, Findings
from liveness.certification.workflow.risk import RISK_CAUSE, RiskReviews, Stops, risk_reviews
from liveness.certification.workflow.settle import Settled
from liveness.db import read_frame
from liveness.evidence.snapshot import EvidenceSnapshot
from liveness.identity.linking import NOTICE_SOURCE
from liveness.review import open_death_reviews, route_reviews
from liveness.review.service import VisitPlanning, open_tasks
from models import DeathMatch, DeathRecord, RecordStatus, ReviewTask

# A registry's notice, beside the other death records of its person.
Notice = aliased(DeathRecord)
# Death records that name someone without acting on them: each opens a death review.
REVIEW_MATCHES = (DeathMatch.NAME_MISMATCH, DeathMatch.UNCONFIRMED)


def route(
    session: Session, context: Context, settled: Settled, findings: Findings,
    certified: Certified, *, snapshot: EvidenceSnapshot, levels: pd.DataFrame, stops: Stops,
    estimate: Estimate, result: WorkflowResult, planning: VisitPlanning,
) -> None:  # fmt: skip
    """Route reviews (visits, face verifications, renewals, risk), notify, death reviews.

    The new home visits are left unplanned in `planning`, which the caller plans into weeks
    once every partition has routed and the death reviews have cancelled the visits they
    supersede (`VisitPlanning.plan`).
    """
    as_of, policy, roll = context.as_of, context.policy, snapshot.roll
    dead, proof_of_life = findings.dead, certified.proof_of_life
    in_area = set(
        roll.loc[roll["region_code"].astype(str).str.startswith(policy.area_prefixes),
                 "person_id"].astype(int)
    )  # fmt: skip
    # A failed or ignored face verification sends a grid worker, except after a visit that
    # found nobody (that verification was the person's last chance) or where nobody can go.
    # A grid worker may also turn a face verification into a visit (visit_needed).
    failures = settled.face_failures
    to_visit = failures[failures["cause"] != "after_visit"]
    visit_now = (set(to_visit["person_id"].astype(int)) | settled.visits_asked) & in_area
    outcomes = settled.outcomes
    remote = outcomes[outcomes["outcome"].isin(policy.lapse.remote_after_visit_outcomes)]
    face_now = set(remote["person_id"].astype(int)) - dead
    due = _due_for_review(session, context, ends=certified.ends, roll=roll)
    # Read once for the risk reviews and the routing: nothing opens or closes a task between.
    current = open_tasks(session, context.in_partition(ReviewTask.person_id))
    # Before the cycle is due: whose traces stopped abruptly, or whose P(alive) is low.
    risk = risk_reviews(
        session, context, snapshot=snapshot, stops=stops, estimate=estimate, levels=levels,
        ends=certified.ends, due=due, certified=certified.certified_now, under_review=current,
    )  # fmt: skip
    levels = _with_risk(levels, risk, estimate=estimate, ceiling=policy.risk.score)
    # Whoever was strong on a night between the runs, or likely alive by the estimator, is
    # certified by data: their open review is resolved as a strong person's is.
    earlier = levels["person_id"].isin(certified.earlier_night | certified.by_estimator)
    levels = levels.assign(level=levels["level"].mask(earlier, "strong"))
    if "certifiable" in levels:
        levels = levels.assign(certifiable=levels["certifiable"].mask(earlier, True))
    result.routing = route_reviews(
        session, run_id=context.run_id, as_of=as_of,
        assessed=levels[~levels["person_id"].isin(proof_of_life)], policy=policy,
        due=due - proof_of_life, visit_now=visit_now - dead, face_now=face_now - proof_of_life,
        visit_asked=settled.visits_asked - dead, risk_now=risk.persons - proof_of_life - dead,
        explain=context.explain, current=current, planning=planning,
    )  # fmt: skip
    result.risk_reviews = {
        "abrupt_stop": risk.abrupt_stop,
        "low_probability": risk.low_probability,
        "opened": int(
            session.scalar(
                select(func.count()).select_from(ReviewTask)
                .where(ReviewTask.opened_run_id == context.run_id, ReviewTask.cause == RISK_CAUSE,
                       context.in_partition(ReviewTask.person_id))
            ) or 0
        ),
    }  # fmt: skip
    result.notices["face"] = face_notices(session, context)
    result.death_reviews = _death_reviews(session, context, snapshot=snapshot, dead=dead)


def _with_risk(
    levels: pd.DataFrame, risk: RiskReviews, *, estimate: Estimate, ceiling: float
) -> pd.DataFrame:
    """Return the levels with each risk review's reasons, and its score for the ranking.

    A risk review ranks by risk x amount like any other: as if the person's score were at
    most the policy's ceiling, and at most their P(alive) where the estimator gave one.
    """
    if not risk.persons:
        return levels
    flagged = levels["person_id"].isin(risk.persons).to_numpy()
    score = np.fmin(np.minimum(levels["score"].to_numpy(dtype=float), ceiling),
                    estimate.probability)  # fmt: skip
    reasons = levels["reasons"].to_numpy(dtype=object).copy()
    reasons[flagged] = [risk.reasons[int(p)] for p in levels.loc[flagged, "person_id"]]
    return levels.assign(
        score=np.where(flagged, score, levels["score"].to_numpy(dtype=float)), reasons=reasons
    )


def _due_for_review(
    session: Session, context: Context, *, ends: pd.Series, roll: pd.DataFrame
) -> set[int]:  # fmt: skip
    """Return persons whose review must open tonight and who have no review this cycle.

    Just in time: a review opens at the latest run that still leaves it time to finish before
    the certification ends (`CertificationPolicy.review_lead_days`: the face verification's
    days, the visit's and the notice's); until then the data may still certify the person
    silently (the renewal window is open), and nobody is asked. The next run is expected as
    far ahead as the previous one was behind, so a weekly or monthly schedule opens reviews
    one run earlier than a nightly one. A person whose certification's end is unknown is due.
    """
    as_of, policy = context.as_of, context.policy
    last_opened = read_frame(
        session,
        select(ReviewTask.person_id, func.max(ReviewTask.opened_on))
        .where(ReviewTask.kind.in_(REVIEW_KINDS), context.in_partition(ReviewTask.person_id))
        .group_by(ReviewTask.person_id),
        ["person_id", "opened_on"],
    )
    end = dates_of(roll["person_id"], ends)
    window = cycle_days(policy, roll["benefit_type"], field="renewal_window_days")
    window_opens = end - window.astype("timedelta64[D]")
    previous = previous_run_day(session, context)
    # Waiting is too late when the next run, expected as many days ahead, falls after the day
    # the review must open; never before the renewal window opens: nothing to review before.
    later = 0 if previous is None else max((as_of - previous).days - 1, 0)
    lead = np.minimum(window, policy.review_lead_days + later)
    review_opens = end - lead.astype("timedelta64[D]")
    opened = dates_of(roll["person_id"], last_opened.set_index("person_id")["opened_on"])
    unknown = np.isnat(window_opens)
    is_due = unknown | (review_opens <= np.datetime64(as_of, "D"))
    # A review opened in this renewal window already counts for the cycle.
    unreviewed = np.isnat(opened) | unknown | (opened < window_opens)
    return set(roll.loc[is_due & unreviewed, "person_id"].astype(int))


def _death_reviews(
    session: Session, context: Context, *, snapshot: EvidenceSnapshot, dead: set[int]
) -> int:
    """Open a death review for each unsettled record naming a living roll person unclearly.

    Also for each registry notice that suspended its person but that no second, independent
    source confirmed within the policy's days: the suspension stands meanwhile.
    """
    records = read_frame(
        session,
        select(DeathRecord.person_id, DeathRecord.source, DeathRecord.record_id,
               DeathRecord.name, DeathRecord.died_on)
        .where(DeathRecord.match.in_(REVIEW_MATCHES),
               DeathRecord.status == RecordStatus.ACTIVE, DeathRecord.settled_by.is_(None),
               DeathRecord.person_id.is_not(None), DeathRecord.recorded_on <= context.as_of,
               context.in_partition(DeathRecord.person_id)),
        ["person_id", "source", "record_id", "name", "died_on"],
    )  # fmt: skip
    roll = snapshot.roll
    records = pd.concat(
        [records[~records["person_id"].isin(dead)], _unconfirmed_notices(session, context)],
        ignore_index=True,
    )
    records = records[records["person_id"].isin(roll["person_id"])]
    if records.empty:
        return 0
    cases = records.merge(roll[["person_id", "grid_code"]], on="person_id").assign(
        record=lambda f: [
            {"source": s, "record_id": r, "name": n, "died_on": d.isoformat()}
            for s, r, n, d in zip(f["source"], f["record_id"], f["name"], f["died_on"],
                                  strict=True)
        ]
    )  # fmt: skip
    return open_death_reviews(
        session, run_id=context.run_id, as_of=context.as_of, cases=cases, policy=context.policy
    )


def _unconfirmed_notices(session: Session, context: Context) -> pd.DataFrame:
    """Return the acting registry notices no other source confirmed within the policy's days.

    A confirmation is another standing death record of the same person from any other source
    (cremation, deregistration, a hospital discharge, a review's finding).
    """
    due = context.as_of - dt.timedelta(days=context.policy.notice_confirm_days)
    others = (
        select(DeathRecord.id)
        .where(DeathRecord.person_id == Notice.person_id, DeathRecord.source != NOTICE_SOURCE,
               DeathRecord.status == RecordStatus.ACTIVE, DeathRecord.match.in_(ACTING),
               DeathRecord.recorded_on <= context.as_of)
        .exists()
    )  # fmt: skip
    return read_frame(
        session,
        select(Notice.person_id, Notice.source, Notice.record_id, Notice.name, Notice.died_on)
        .where(Notice.source == NOTICE_SOURCE, Notice.match.in_(ACTING),
               Notice.status == RecordStatus.ACTIVE, Notice.settled_by.is_(None),
               Notice.person_id.is_not(None), Notice.recorded_on <= due, ~others,
               context.in_partition(Notice.person_id)),
        ["person_id", "source", "record_id", "name", "died_on"],
    )  # fmt: skip
