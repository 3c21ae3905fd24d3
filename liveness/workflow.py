"""The certification workflow of one run: from levels and review outcomes to certifications,
reviews, notices and list entries.

Every effect here is written in the run's transaction. The order matters and is fixed, so a
rerun of the same date does the same: settle face verifications from their results, apply
review outcomes recorded since the last run, certify, route new reviews, then build the list
(deaths, prison, lapses, reinstatements) and append it in that order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from liveness.certification import (
    CertificationPolicy,
    certify_persons,
    certify_silently,
    valid_until,
)
from liveness.db import query_frame
from liveness.evidence.snapshot import ACTING_MATCHES, EvidenceSnapshot
from liveness.evidence.store import EvidenceStore
from liveness.lists import (
    append_entries,
    open_suspensions,
    reinstatements,
    suspensions_for_death,
    suspensions_from_next_payment,
    terminations,
)
from liveness.review import RoutingResult, open_death_reviews, route_reviews
from liveness.scoring import ScoringPolicy
from models import (
    CertificationSource,
    DeathMatch,
    DeathRecord,
    ListReason,
    Notice,
    NoticeChannel,
    NoticeStatus,
    Person,
    RecordStatus,
    ReviewTask,
    TaskKind,
    TaskStatus,
    VisitOutcome,
)

FAILED_REVIEWS = (
    VisitOutcome.NOT_FOUND, VisitOutcome.REFUSED, VisitOutcome.LAPSED, VisitOutcome.FACE_FAILED,
)  # fmt: skip
OPEN_TASK_STATUSES = (TaskStatus.OPEN, TaskStatus.CLAIMED)
ALIVE_OUTCOMES = (VisitOutcome.ALIVE_CONFIRMED, VisitOutcome.IN_HOSPITAL)
FACE_NOTICE = (
    "【社保】您的待遇领取资格认证需要确认，请于{due}前通过手机或社区自助终端完成刷脸认证。"
)
LAPSE_NOTICE = (
    "【社保】您的待遇领取资格认证已于{end}到期，请于{deadline}前完成认证，逾期将暂停发放。"
)


@dataclass
class WorkflowResult:
    """What the workflow did in one run, for the run report."""

    certified: dict[str, int] = field(default_factory=dict)
    face_settled: dict[str, int] = field(default_factory=dict)
    outcomes_applied: dict[str, int] = field(default_factory=dict)
    routing: RoutingResult | None = None
    death_reviews: int = 0
    notices: dict[str, int] = field(default_factory=dict)
    refuted_death_records: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)


def _face_results(
    session: Session, *, store: EvidenceStore, first_day: dt.date, as_of: dt.date
) -> pd.DataFrame:
    """Return the linked face verification results in a window: person_id, day, kind."""
    table = store.read_table(
        session, source="face", columns=["person_id", "day", "kind"], first_day=first_day,
        last_day=as_of,
    ).to_pandas()  # fmt: skip
    table = table[table["person_id"] >= 0]
    return table.assign(kind=table["kind"].astype(object))


def _settle_face_tasks(
    session: Session, *, run_id: int, as_of: dt.date, store: EvidenceStore,
    policy: CertificationPolicy, result: WorkflowResult,
) -> tuple[pd.DataFrame, set[int]]:  # fmt: skip
    """Close open face verifications by their results; return the proofs and who needs a visit."""
    tasks = query_frame(
        session,
        select(ReviewTask.id, ReviewTask.person_id, ReviewTask.opened_on, ReviewTask.due_on)
        .where(
            ReviewTask.kind == TaskKind.FACE_VERIFICATION,
            ReviewTask.status.in_([TaskStatus.OPEN, TaskStatus.CLAIMED]),
        )
        .order_by(ReviewTask.id),
        ["id", "person_id", "opened_on", "due_on"],
    )
    proofs = pd.DataFrame({"person_id": [], "source": [], "evidence": []})
    if tasks.empty:
        return proofs, set()
    first_day = min(tasks["opened_on"])
    results = _face_results(session, store=store, first_day=first_day, as_of=as_of).merge(
        tasks, on="person_id"
    )
    opened_day = (pd.to_datetime(results["opened_on"]) - pd.Timestamp("1970-01-01")).dt.days
    results = results[results["day"].to_numpy() >= opened_day.to_numpy()]
    own = {f"pass_{channel}" for channel in policy.own_face_channels}
    by_task = results.groupby("id")["kind"].agg(set)
    passed_own = {t for t, kinds in by_task.items() if kinds & own}
    passed_proxy = {
        t for t, kinds in by_task.items() if policy.proxy_allowed and "pass_proxy" in kinds
    } - passed_own
    failed = set(by_task.index) - passed_own - passed_proxy
    overdue = set(tasks.loc[pd.to_datetime(tasks["due_on"]) < pd.Timestamp(as_of), "id"])
    lapsed = overdue - passed_own - passed_proxy - failed
    for outcome, ids in (
        (VisitOutcome.FACE_PASSED, passed_own | passed_proxy),
        (VisitOutcome.FACE_FAILED, failed),
        (VisitOutcome.LAPSED, lapsed),
    ):
        if ids:
            session.execute(
                update(ReviewTask)
                .where(ReviewTask.id.in_(sorted(ids)))
                .values(
                    status=TaskStatus.DONE, outcome=outcome, closed_on=as_of, closed_run_id=run_id
                )
            )
        result.face_settled[str(outcome)] = len(ids)
    person_of = tasks.set_index("id")["person_id"]
    proofs = pd.DataFrame(
        {
            "person_id": [int(person_of[t]) for t in sorted(passed_own | passed_proxy)],
            "source": [
                CertificationSource.FACE if t in passed_own else CertificationSource.PROXY
                for t in sorted(passed_own | passed_proxy)
            ],
            "evidence": [{"face_task": int(t)} for t in sorted(passed_own | passed_proxy)],
        }
    )
    return proofs, {int(person_of[t]) for t in failed | lapsed}


def _suspended_face_passes(
    session: Session, *, store: EvidenceStore, as_of: dt.date, policy: CertificationPolicy
) -> pd.DataFrame:
    """Return own face passes of suspended people after their suspension took effect.

    Nobody asked them (their reviews were closed when they were suspended), but a person who
    verifies their own face after being stopped has proved they are alive.
    """
    suspended = open_suspensions(session)
    if suspended.empty:
        return pd.DataFrame({"person_id": [], "source": [], "evidence": []})
    since = suspended.groupby("person_id")["effective_on"].min()
    results = _face_results(session, store=store, first_day=min(since), as_of=as_of)
    own = {f"pass_{channel}" for channel in policy.own_face_channels}
    results = results[results["kind"].isin(own) & results["person_id"].isin(since.index)]
    start = (pd.to_datetime(since.reindex(results["person_id"]).to_numpy()) - pd.Timestamp(
        "1970-01-01"
    )).days  # fmt: skip
    passes = results[results["day"].to_numpy() >= np.asarray(start)]
    people = sorted(set(passes["person_id"].astype(int)))
    return pd.DataFrame(
        {
            "person_id": people,
            "source": CertificationSource.FACE,
            "evidence": [{"face_pass_after_suspension": True}] * len(people),
        }
    )


def _apply_outcomes(session: Session, *, run_id: int, result: WorkflowResult) -> pd.DataFrame:
    """Take the review outcomes recorded since the last run: person_id, outcome, detail, actor."""
    done = query_frame(
        session,
        select(
            ReviewTask.id,
            ReviewTask.person_id,
            ReviewTask.kind,
            ReviewTask.outcome,
            ReviewTask.outcome_detail,
        )
        .where(ReviewTask.status == TaskStatus.DONE, ReviewTask.closed_run_id.is_(None))
        .order_by(ReviewTask.id),
        ["id", "person_id", "kind", "outcome", "detail"],
    )
    if done.empty:
        return done.assign(actor=pd.Series(dtype=object))
    session.execute(
        update(ReviewTask)
        .where(ReviewTask.id.in_(done["id"].tolist()))
        .values(closed_run_id=run_id)
    )
    done["outcome"] = done["outcome"].astype(object).map(str)
    done["actor"] = [detail.get("by", "system") for detail in done["detail"]]
    result.outcomes_applied = {str(k): int(v) for k, v in done["outcome"].value_counts().items()}
    return done


def _due_for_review(
    session: Session, *, as_of: dt.date, ends: pd.Series, roll: pd.DataFrame,
    policy: CertificationPolicy,
) -> set[int]:  # fmt: skip
    """Return persons whose certification is up for renewal and who have no review this cycle."""
    last_opened = dict(
        session.execute(
            select(ReviewTask.person_id, ReviewTask.opened_on)
            .where(ReviewTask.kind.in_([TaskKind.FACE_VERIFICATION, TaskKind.HOME_VISIT]))
            .order_by(ReviewTask.opened_on)
        ).all()
    )
    due = set()
    for person_id, benefit_type in zip(roll["person_id"], roll["benefit_type"], strict=True):
        end = ends.get(int(person_id))
        cycle = policy.cycle_for(str(benefit_type))
        window_opens = None if end is None else end - dt.timedelta(days=cycle.renewal_window_days)
        if window_opens is not None and window_opens > as_of:
            continue
        opened = last_opened.get(int(person_id))
        if opened is None or window_opens is None or opened < window_opens:
            due.add(int(person_id))
    return due


def _notices(session: Session, *, run_id: int, as_of: dt.date, rows: list[dict[str, Any]]) -> int:
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
                "run_id": run_id,
                "channel": NoticeChannel.SMS if phones.get(row["person_id"]) else NoticeChannel.APP,
                "status": NoticeStatus.PENDING,
                "created_on": as_of,
            }
            for row in rows
        ],
    )
    return len(rows)


def _lapse_entries(
    session: Session, *, run_id: int, as_of: dt.date, ends: pd.Series, roll: pd.DataFrame,
    assessed: pd.DataFrame, certified_now: set[int], policy: CertificationPolicy,
    result: WorkflowResult,
) -> list[dict[str, Any]]:  # fmt: skip
    """Notify people whose certification lapsed; suspend those past notice after a failed review."""
    level_of = assessed.set_index("person_id")["level"]
    lapsed = [
        int(p) for p, benefit_status in zip(roll["person_id"], roll["benefit_status"], strict=True)
        if benefit_status == "active" and int(p) not in certified_now
        and ends.get(int(p)) is not None and ends[int(p)] < as_of
        and level_of.get(p) not in ("deceased", "strong")
    ]  # fmt: skip
    if not lapsed:
        return []
    notices = query_frame(
        session,
        select(Notice.person_id, Notice.created_on).where(
            Notice.template == "lapse", Notice.person_id.in_(lapsed)
        ),
        ["person_id", "created_on"],
    )
    first_notice = notices.groupby("person_id")["created_on"].max().to_dict()
    reviews = query_frame(
        session,
        select(
            ReviewTask.person_id,
            ReviewTask.status,
            ReviewTask.outcome,
            ReviewTask.due_on,
            ReviewTask.opened_on,
        ).where(
            ReviewTask.person_id.in_(lapsed),
            ReviewTask.kind.in_([TaskKind.FACE_VERIFICATION, TaskKind.HOME_VISIT]),
        ),
        ["person_id", "status", "outcome", "due_on", "opened_on"],
    )
    # Only the latest review of the cycle counts: a failed face verification followed by a
    # home visit still open and not yet due is no reason to suspend anyone.
    latest = reviews.sort_values(["person_id", "opened_on"]).drop_duplicates(
        "person_id", keep="last"
    )
    is_open = latest["status"].astype(object).isin([str(s) for s in OPEN_TASK_STATUSES])
    failed_review = set(
        latest.loc[
            latest["outcome"].astype(object).isin([str(o) for o in FAILED_REVIEWS])
            | (is_open & (pd.to_datetime(latest["due_on"]) < pd.Timestamp(as_of))),
            "person_id",
        ]
    )
    new_notices, suspend = [], []
    for person_id in lapsed:
        end = ends[person_id]
        notified = first_notice.get(person_id)
        if notified is None or notified < end:
            deadline = as_of + dt.timedelta(days=policy.cycle.notice_days)
            new_notices.append(
                {
                    "person_id": person_id, "template": "lapse",
                    "body": LAPSE_NOTICE.format(end=end.isoformat(), deadline=deadline.isoformat()),
                }
            )  # fmt: skip
        elif (as_of - notified).days >= policy.cycle.notice_days and person_id in failed_review:
            # Lapsed, told, given the notice period, and a review failed or lapsed: only now.
            suspend.append(person_id)
    result.notices["lapse"] = _notices(session, run_id=run_id, as_of=as_of, rows=new_notices)
    return suspensions_from_next_payment(
        session, person_ids=suspend, reason=ListReason.LAPSED, as_of=as_of,
        payment_day=policy.payment_day,
        detail={p: {"certification_ended": ends[p].isoformat()} for p in suspend},
    )  # fmt: skip


def apply_workflow(
    session: Session,
    *,
    run_id: int,
    as_of: dt.date,
    snapshot: EvidenceSnapshot,
    assessed: pd.DataFrame,
    store: EvidenceStore,
    scoring: ScoringPolicy,
    policy: CertificationPolicy,
) -> WorkflowResult:
    """Turn a run's levels and the reviews' outcomes into certifications, reviews and the list."""
    result = WorkflowResult()
    roll = snapshot.roll
    benefit_type = roll.set_index("person_id")["benefit_type"]

    face_proofs, visit_now = _settle_face_tasks(
        session, run_id=run_id, as_of=as_of, store=store, policy=policy, result=result
    )
    face_proofs = pd.concat(
        [face_proofs, _suspended_face_passes(session, store=store, as_of=as_of, policy=policy)],
        ignore_index=True,
    )
    outcomes = _apply_outcomes(session, run_id=run_id, result=result)
    alive = outcomes[outcomes["outcome"].isin([str(o) for o in ALIVE_OUTCOMES])]
    visit_proofs = pd.DataFrame(
        {
            "person_id": alive["person_id"].astype(int).to_numpy(),
            "source": CertificationSource.VISIT,
            "evidence": [{"review_task": int(t)} for t in alive["id"]],
        }
    )
    proofs = pd.concat([face_proofs, visit_proofs], ignore_index=True).drop_duplicates("person_id")
    proofs = proofs[proofs["person_id"].isin(benefit_type.index)]
    proofs = proofs.assign(benefit_type=benefit_type.reindex(proofs["person_id"]).to_numpy())
    proof_of_life = set(proofs["person_id"].astype(int))
    caused_by = {int(p): str(a) for p, a in zip(alive["person_id"], alive["actor"], strict=True)}

    # Proof of life contradicts a death record: it stops acting (a review can reinstate it).
    acting = snapshot.deaths[snapshot.deaths["match"].isin([str(m) for m in ACTING_MATCHES])]
    refuted = sorted(set(acting["person_id"].astype(int)) & proof_of_life)
    if refuted:
        session.execute(
            update(DeathRecord)
            .where(
                DeathRecord.person_id.in_(refuted),
                DeathRecord.status == RecordStatus.ACTIVE,
                DeathRecord.match.in_([DeathMatch.ID_NUMBER, DeathMatch.DEMOGRAPHIC]),
            )
            .values(status=RecordStatus.REFUTED)
        )
    result.refuted_death_records = len(refuted)

    certify_persons(
        session, run_id=run_id, as_of=as_of, proofs=proofs, policy=policy,
        policy_version=scoring.version,
    )  # fmt: skip
    strong = assessed[
        (assessed["level"] == "strong")
        & assessed["certifiable"]
        & ~assessed["person_id"].isin(proof_of_life)
    ]
    silently = certify_silently(
        session, run_id=run_id, as_of=as_of, strong=strong, policy=policy,
        policy_version=scoring.version,
    )  # fmt: skip
    result.certified = {
        **{str(k): int(v) for k, v in proofs["source"].astype(str).value_counts().items()},
        str(CertificationSource.DATA_COMPARISON): silently,
    }
    session.flush()
    ends = valid_until(session, policy=policy)
    certified_now = proof_of_life | set(strong["person_id"].astype(int))
    certified_now &= {p for p, end in ends.items() if end > as_of}

    moved = set(outcomes.loc[outcomes["outcome"] == str(VisitOutcome.MOVED_AWAY), "person_id"])
    due = _due_for_review(session, as_of=as_of, ends=ends, roll=roll, policy=policy)
    result.routing = route_reviews(
        session, run_id=run_id, as_of=as_of,
        assessed=assessed[~assessed["person_id"].isin(proof_of_life)], policy=policy,
        due=due - proof_of_life, visit_now=visit_now, face_now={int(p) for p in moved},
    )  # fmt: skip
    opened_face = query_frame(
        session,
        select(ReviewTask.id, ReviewTask.person_id, ReviewTask.due_on).where(
            ReviewTask.opened_run_id == run_id, ReviewTask.kind == TaskKind.FACE_VERIFICATION
        ),
        ["id", "person_id", "due_on"],
    )
    result.notices["face"] = _notices(
        session, run_id=run_id, as_of=as_of,
        rows=[
            {"person_id": int(p), "task_id": int(t), "template": "face",
             "body": FACE_NOTICE.format(due=d.isoformat())}
            for t, p, d in zip(
                opened_face["id"], opened_face["person_id"], opened_face["due_on"], strict=True
            )
        ],
    )  # fmt: skip

    mismatched = snapshot.deaths[snapshot.deaths["match"] == str(DeathMatch.NAME_MISMATCH)]
    mismatched = mismatched[
        ~mismatched["person_id"].isin(snapshot.first_death.index)
        & mismatched["person_id"].isin(roll["person_id"])
    ]
    result.death_reviews = open_death_reviews(
        session, run_id=run_id, as_of=as_of,
        cases=mismatched.merge(roll[["person_id", "grid_code"]], on="person_id").assign(
            record=lambda f: [
                {"source": s, "record_id": r, "name": n, "died_on": d.isoformat()}
                for s, r, n, d in zip(
                    f["source"], f["record_id"], f["name"], f["died_on"], strict=True
                )
            ]
        ),
        policy=policy,
    )  # fmt: skip

    # The list, in a fixed order: deaths, prison, lapses, reinstatements.
    dead = assessed.loc[
        (assessed["level"] == "deceased") & ~assessed["person_id"].isin(proof_of_life),
        "person_id",
    ]
    deaths = {int(p): snapshot.first_death[p] for p in dead}
    reported = outcomes[outcomes["outcome"] == str(VisitOutcome.DECEASED)]
    visit_deaths = {
        int(p): dt.date.fromisoformat(d["died_on"])
        for p, d in zip(reported["person_id"], reported["detail"], strict=True)
        if int(p) not in deaths
    }
    entries = suspensions_for_death(
        session, deaths=deaths, as_of=as_of, payment_day=policy.payment_day
    )
    entries += suspensions_for_death(
        session, deaths=visit_deaths, as_of=as_of, payment_day=policy.payment_day,
        caused_by="review",
    )  # fmt: skip
    prison = outcomes[outcomes["outcome"] == str(VisitOutcome.IMPRISONED)]
    entries += suspensions_from_next_payment(
        session, person_ids=[int(p) for p in prison["person_id"]], reason=ListReason.IMPRISONED,
        as_of=as_of, payment_day=policy.payment_day,
        benefit_types=policy.suspend_when_imprisoned, caused_by="review",
    )  # fmt: skip
    entries += _lapse_entries(
        session, run_id=run_id, as_of=as_of, ends=ends, roll=roll, assessed=assessed,
        certified_now=certified_now, policy=policy, result=result,
    )  # fmt: skip

    suspended = open_suspensions(session)
    still_dead = set(snapshot.first_death.index.astype(int)) - set(refuted)
    voided = set(
        suspended.loc[
            (suspended["reason"] == str(ListReason.DECEASED))
            & ~suspended["person_id"].isin(still_dead | proof_of_life),
            "person_id",
        ]
    )
    back_from = {
        str(ListReason.DECEASED): proof_of_life,
        str(ListReason.LAPSED): certified_now,
        str(ListReason.IMPRISONED): set(alive["person_id"].astype(int)),
    }
    proven = {
        int(p)
        for p, reason in zip(suspended["person_id"], suspended["reason"], strict=True)
        if int(p) in back_from.get(reason, set())
    }
    for reason, people in (
        (ListReason.PROOF_OF_LIFE, proven),
        (ListReason.DEATH_WITHDRAWN, voided - proven),
    ):
        entries += reinstatements(
            suspended, person_ids=people, reason=reason, as_of=as_of,
            payment_day=policy.payment_day, four_eyes_back_pay=policy.four_eyes_back_pay,
            caused_by=caused_by,
        )  # fmt: skip
    # A death nobody contested for long enough ends the benefit.
    entries += terminations(
        suspended, person_ids=still_dead - proof_of_life, as_of=as_of,
        after_days=policy.terminate_after_death_days,
    )  # fmt: skip
    append_entries(session, run_id=run_id, entries=entries)
    result.entries = entries
    return result
