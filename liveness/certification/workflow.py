"""The certification workflow of one run: from levels and review outcomes to certifications,
reviews, notices and the events of the money path.

Every effect here is written in the run's transaction. The order matters and is fixed, so a
rerun of the same date does the same: settle face verifications from their results, apply
review outcomes recorded since the last run (a review's death becomes a death record), weigh
proofs of life against death records, certify, route new reviews, then gather each benefit's
events and fold them through the payment state machine (`liveness.lists.payment`), which
alone makes list entries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from liveness.certification import (
    CertificationPolicy,
    certify_persons,
    certify_silently,
    cycle_days,
    dates_of,
    valid_until,
)
from liveness.db import IN_CHUNK, query_frame
from liveness.evidence.snapshot import EvidenceSnapshot
from liveness.evidence.store import EvidenceStore
from liveness.lists import Occurrence, RunTerms, apply_occurrences, suspended_benefits
from liveness.review import RoutingResult, open_death_reviews, route_reviews
from liveness.review.outcomes import REVIEW_DEATH_SOURCE, review_death_record_id
from liveness.scoring import ScoringPolicy
from models import (
    Benefit,
    BenefitStatus,
    Certification,
    CertificationSource,
    DeathMatch,
    DeathRecord,
    Deregistration,
    IntegrityLead,
    LeadStatus,
    ListAction,
    ListEntry,
    ListReason,
    Notice,
    NoticeChannel,
    NoticeStatus,
    PaymentEvent,
    Person,
    RecordStatus,
    ReviewTask,
    Run,
    TaskKind,
    TaskStatus,
    VisitOutcome,
)

OPEN_TASK_STATUSES = (TaskStatus.OPEN, TaskStatus.CLAIMED)
ALIVE_OUTCOMES = (VisitOutcome.ALIVE_CONFIRMED, VisitOutcome.IN_HOSPITAL)
# The face channel of a verification a grid worker helped the person through and recorded.
ASSISTED_CHANNEL = "assisted"
REVIEW_KINDS = (TaskKind.FACE_VERIFICATION, TaskKind.HOME_VISIT)
# Death records whose match names their person: they act (a review's death among them).
ACTING = (DeathMatch.ID_NUMBER, DeathMatch.DEMOGRAPHIC)
PROOF_SOURCES = (CertificationSource.FACE, CertificationSource.VISIT, CertificationSource.PROXY)
# The order in which a benefit's events of one run apply.
EVENT_ORDER = (
    PaymentEvent.DEATH, PaymentEvent.PROOF_OF_LIFE, PaymentEvent.DEATH_WITHDRAWN,
    PaymentEvent.RECERTIFIED, PaymentEvent.IMPRISONMENT, PaymentEvent.DUPLICATE_WITHDRAWN,
    PaymentEvent.DUPLICATE_IDENTITY, PaymentEvent.LAPSE, PaymentEvent.DEATH_STOOD,
)  # fmt: skip


@dataclass
class WorkflowResult:
    """What the workflow did in one run, for the run report."""

    certified: dict[str, int] = field(default_factory=dict)
    face_settled: dict[str, int] = field(default_factory=dict)
    outcomes_applied: dict[str, int] = field(default_factory=dict)
    routing: RoutingResult | None = None
    death_reviews: int = 0
    death_records_settled: int = 0
    notices: dict[str, int] = field(default_factory=dict)
    refuted_death_records: int = 0
    events: dict[str, int] = field(default_factory=dict)
    lapse_waiting: dict[str, int] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Context:
    """What every step of one run's workflow reads."""

    run_id: int
    as_of: dt.date
    store: EvidenceStore
    policy: CertificationPolicy
    timezone: str


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


def _frame_in(
    session: Session, ids: Iterable[int], statement: Callable[[list[int]], Any],
    columns: list[str],
) -> pd.DataFrame:  # fmt: skip
    """Run `statement(chunk)` over chunks of ids and return the rows as one frame.

    A set that grows with the roll (the dead of years, a first run's lapses) is never sent
    as one IN list: SQLite caps the parameters of a statement.
    """
    ordered = sorted({int(i) for i in ids})
    frames = [
        query_frame(session, statement(ordered[start : start + IN_CHUNK]), columns)
        for start in range(0, len(ordered), IN_CHUNK)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _day(number: Any) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(number))


def _proofs(person_id: Iterable[Any], source: Iterable[Any], day: Iterable[dt.date],
            evidence: Iterable[dict[str, Any]]) -> pd.DataFrame:  # fmt: skip
    """Return proofs of life: who, how (a certification source), on which day, with what."""
    frame = pd.DataFrame(
        {"person_id": list(person_id), "source": list(source), "day": list(day),
         "evidence": list(evidence)}
    )  # fmt: skip
    return frame.astype({"person_id": np.int64})


def _settle_face_tasks(
    session: Session, context: _Context, result: WorkflowResult
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Close open face verifications by their results; return the proofs and the failures.

    Failures are the tasks that failed or lapsed (ignored past their due date), with their
    person and the cause the task was opened for.
    """
    as_of, policy = context.as_of, context.policy
    tasks = query_frame(
        session,
        select(ReviewTask.id, ReviewTask.person_id, ReviewTask.opened_on, ReviewTask.due_on,
               ReviewTask.cause)
        .where(ReviewTask.kind == TaskKind.FACE_VERIFICATION,
               ReviewTask.status.in_(OPEN_TASK_STATUSES))
        .order_by(ReviewTask.id),
        ["id", "person_id", "opened_on", "due_on", "cause"],
    )  # fmt: skip
    no_failures = pd.DataFrame({"id": [], "person_id": [], "cause": []})
    if tasks.empty:
        return _proofs([], [], [], []), no_failures
    results = _face_results(
        session, store=context.store, first_day=min(tasks["opened_on"]), as_of=as_of
    ).merge(tasks, on="person_id")
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
    proofs = _proofs(
        (by_id.at[t, "person_id"] for t in ordered),
        (CertificationSource.FACE if t in passed_own else CertificationSource.PROXY
         for t in ordered),
        (_day(passes[t]) for t in ordered),
        ({"face_task": int(t)} for t in ordered),
    )  # fmt: skip
    failures = by_id.loc[sorted(failed | lapsed), ["person_id", "cause"]].reset_index()
    return proofs, failures


def _close_face_tasks(
    session: Session, context: _Context, *, passed: set[int], failed: set[int],
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
                .where(ReviewTask.id.in_(sorted(ids)))
                .values(
                    status=TaskStatus.DONE, outcome=outcome, closed_on=context.as_of,
                    closed_run_id=context.run_id,
                )
            )  # fmt: skip
        result.face_settled[str(outcome)] = len(ids)


def _face_passes(session: Session, context: _Context, since: pd.Series) -> pd.DataFrame:
    """Return, per person in `since`, their latest passing face verification from that day on.

    Nobody asked these people (a suspended person's reviews are closed, a death record may
    arrive after the pass), but a person whose own face passed after the day their death or
    suspension took effect has proved they are alive; by proxy too where the policy allows.
    """
    if since.empty:
        return _proofs([], [], [], [])
    results = _face_results(session, store=context.store, first_day=min(since), as_of=context.as_of)
    own = {f"pass_{channel}" for channel in context.policy.own_face_channels}
    passing = own | ({"pass_proxy"} if context.policy.proxy_allowed else set())
    results = results[results["kind"].isin(passing) & results["person_id"].isin(since.index)]
    start = (pd.to_datetime(since.reindex(results["person_id"]).to_numpy()) - pd.Timestamp(
        "1970-01-01"
    )).days  # fmt: skip
    passes = results[results["day"].to_numpy() >= np.asarray(start)]
    last = passes.sort_values(["person_id", "day"]).drop_duplicates("person_id", keep="last")
    return _proofs(
        last["person_id"],
        (CertificationSource.FACE if kind in own else CertificationSource.PROXY
         for kind in last["kind"]),
        (_day(d) for d in last["day"]),
        ({"face_pass": True} for _ in range(len(last))),
    )  # fmt: skip


def _apply_outcomes(session: Session, context: _Context, result: WorkflowResult) -> pd.DataFrame:
    """Take the review outcomes recorded since the last run, with their kind and reasons."""
    done = query_frame(
        session,
        select(
            ReviewTask.id, ReviewTask.person_id, ReviewTask.kind, ReviewTask.outcome,
            ReviewTask.outcome_detail, ReviewTask.reasons, ReviewTask.closed_on, ReviewTask.cause,
        )
        .where(ReviewTask.status == TaskStatus.DONE, ReviewTask.closed_run_id.is_(None))
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
        .where(ReviewTask.id.in_(done["id"].tolist()))
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
    proofs = _proofs(
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
                   Person.birth_date).where(Person.id.in_(found["person_id"].tolist()))
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


def _acting_deaths(session: Session, as_of: dt.date) -> pd.DataFrame:
    """Return death records that act on someone as of the run: id, person, date, source."""
    return query_frame(
        session,
        select(DeathRecord.id, DeathRecord.person_id, DeathRecord.died_on, DeathRecord.source,
               DeathRecord.record_id)
        .where(DeathRecord.status == RecordStatus.ACTIVE, DeathRecord.person_id.is_not(None),
               DeathRecord.match.in_(ACTING), DeathRecord.recorded_on <= as_of,
               DeathRecord.died_on <= as_of),
        ["id", "person_id", "died_on", "source", "record_id"],
    )  # fmt: skip


def _past_proofs(session: Session, persons: list[int]) -> pd.Series:
    """Return, per person, the day of their latest proof of life certified by earlier runs."""
    rows = _frame_in(
        session, persons,
        lambda chunk: select(Certification.person_id, Certification.evidence).where(
            Certification.person_id.in_(chunk), Certification.source.in_(PROOF_SOURCES)
        ),
        ["person_id", "evidence"],
    )  # fmt: skip
    days = [(evidence or {}).get("proof_day") for evidence in rows["evidence"]]
    rows = rows.assign(day=days).dropna(subset=["day"])
    if rows.empty:
        return pd.Series(dtype=object)
    return rows.assign(day=rows["day"].map(dt.date.fromisoformat)).groupby("person_id")["day"].max()


def _refute(session: Session, deaths: pd.DataFrame, proofs: pd.DataFrame) -> pd.DataFrame:
    """Refute the death records that a proof of life dated after them contradicts.

    Returns the records that still stand. A proof on the day of death itself refutes
    nothing: the death stands, which never pays anyone dead.
    """
    if deaths.empty:
        return deaths
    latest = proofs.groupby("person_id")["day"].max() if len(proofs) else pd.Series(dtype=object)
    past = _past_proofs(session, sorted(set(deaths["person_id"].astype(int))))
    best = pd.concat([latest, past]).groupby(level=0).max()
    proof_day = deaths["person_id"].map(best)
    contradicted = proof_day.notna() & (
        pd.to_datetime(proof_day) > pd.to_datetime(deaths["died_on"])
    )
    refuted = deaths.loc[contradicted.to_numpy(), "id"].astype(int).tolist()
    for start in range(0, len(refuted), IN_CHUNK):
        session.execute(
            update(DeathRecord).where(DeathRecord.id.in_(refuted[start : start + IN_CHUNK]))
            .values(status=RecordStatus.REFUTED)
        )  # fmt: skip
    return deaths.loc[~contradicted.to_numpy()]


@dataclass(frozen=True)
class _Settled:
    """What settling the reviews left: the outcomes taken up and what face verifications showed."""

    outcomes: pd.DataFrame  # review outcomes recorded since the last run, as `_apply_outcomes`
    face_proofs: pd.DataFrame  # proofs of life from passed face verifications, as `_proofs`
    face_failures: pd.DataFrame  # failed or lapsed face verifications: id, person_id, cause
    visits_asked: set[int]  # persons a grid worker asked a home visit for


@dataclass(frozen=True)
class _Findings:
    """What the run holds of life and death once the proofs are weighed against death records."""

    proofs: pd.DataFrame  # each living person's newest proof of life, news to this run
    standing: pd.DataFrame  # the acting death records no proof of life refuted
    died_on: pd.Series  # per person a standing record names, their earliest date of death
    dead: set[int]  # the persons of `died_on`


@dataclass(frozen=True)
class _Certified:
    """Who the run certified, and until when everyone's certification now holds."""

    proof_of_life: set[int]  # persons certified on a proof of life
    ends: pd.Series  # per person, the day their certification holds until
    certified_now: set[int]  # persons this run certified whose certification holds as of it


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
    timezone: str = "Asia/Shanghai",
) -> WorkflowResult:
    """Turn a run's levels and the reviews' outcomes into certifications, reviews and the list."""
    context = _Context(run_id=run_id, as_of=as_of, store=store, policy=policy, timezone=timezone)
    result = WorkflowResult()
    settled = _settle_reviews(session, context, result)
    findings = _gather_proofs(session, context, settled, roll=snapshot.roll, result=result)
    certified = _certify(
        session, context, findings, assessed=assessed, policy_version=scoring.version,
        result=result,
    )  # fmt: skip
    # What the run now knows of the dead is their death: reviews and lapses see them deceased.
    levels = assessed.assign(
        level=np.where(assessed["person_id"].isin(findings.dead), "deceased", assessed["level"])
    )
    _route(
        session, context, settled, findings, certified, snapshot=snapshot, levels=levels,
        result=result,
    )  # fmt: skip
    _fold_payments(session, context, settled, findings, certified, levels=levels, result=result)
    return result


def _settle_reviews(session: Session, context: _Context, result: WorkflowResult) -> _Settled:
    """Settle face verifications, take up review outcomes and settle the deaths reviews found."""
    face_proofs, face_failures = _settle_face_tasks(session, context, result)
    outcomes = _apply_outcomes(session, context, result)
    assisted, failed_assisted, visits_asked = _assisted_face_results(outcomes, context.policy)
    settled = _Settled(
        outcomes=outcomes,
        face_proofs=pd.concat([face_proofs, assisted], ignore_index=True),
        face_failures=pd.concat([face_failures, failed_assisted], ignore_index=True),
        visits_asked=visits_asked,
    )
    _record_review_deaths(session, outcomes)
    result.death_records_settled = _settle_death_records(session, outcomes)
    return settled


def _gather_proofs(
    session: Session, context: _Context, settled: _Settled, *, roll: pd.DataFrame,
    result: WorkflowResult,
) -> _Findings:  # fmt: skip
    """Gather the run's proofs of life, refute the deaths they contradict; keep what stands."""
    benefit_type = roll.set_index("person_id")["benefit_type"]
    acting = _acting_deaths(session, context.as_of)
    proofs = _new_proofs(session, context, settled, acting=acting, on_roll=benefit_type.index)
    # Proof of life dated after a death refutes it; what stands is this run's deaths.
    standing = _refute(session, acting, proofs)
    result.refuted_death_records = len(acting) - len(standing)
    died_on = standing.groupby("person_id")["died_on"].min()
    dead = set(died_on.index.astype(int))
    # The dead are certified by nothing; the living by their newest proof.
    proofs = proofs[~proofs["person_id"].isin(dead)].sort_values("day")
    proofs = proofs.drop_duplicates("person_id", keep="last")
    proofs = proofs.assign(
        benefit_type=benefit_type.reindex(proofs["person_id"]).to_numpy(),
        evidence=[{**e, "proof_day": d.isoformat()}
                  for e, d in zip(proofs["evidence"], proofs["day"], strict=True)],
    )  # fmt: skip
    return _Findings(proofs=proofs, standing=standing, died_on=died_on, dead=dead)


def _new_proofs(
    session: Session, context: _Context, settled: _Settled, *, acting: pd.DataFrame,
    on_roll: pd.Index,
) -> pd.DataFrame:  # fmt: skip
    """Return the proofs of life of persons on the roll that no earlier run certified."""
    outcomes = settled.outcomes
    alive = outcomes[outcomes["outcome"].isin([str(o) for o in ALIVE_OUTCOMES])]
    # Whose own face passing counts unasked: the suspended from the day it took effect, those
    # a death record names from the day after their death.
    suspended = suspended_benefits(session)
    since = pd.concat(
        [
            suspended.set_index("person_id")["effective_on"],
            acting.set_index("person_id")["died_on"].map(lambda d: d + dt.timedelta(days=1)),
        ]
    ).groupby(level=0).min()  # fmt: skip
    proofs = pd.concat(
        [
            settled.face_proofs,
            _face_passes(session, context, since),
            _proofs(alive["person_id"], [CertificationSource.VISIT] * len(alive), alive["day"],
                    ({"review_task": int(t)} for t in alive["id"])),
        ],
        ignore_index=True,
    )  # fmt: skip
    proofs = proofs[proofs["person_id"].isin(on_roll)]
    # A proof already certified by an earlier run is no news: a rerun certifies nothing twice.
    used = _past_proofs(session, sorted(set(proofs["person_id"].astype(int))))
    return proofs[~(pd.to_datetime(proofs["day"]) <= pd.to_datetime(proofs["person_id"].map(used)))]


def _certify(
    session: Session, context: _Context, findings: _Findings, *, assessed: pd.DataFrame,
    policy_version: str, result: WorkflowResult,
) -> _Certified:  # fmt: skip
    """Certify the living on their proofs, the strong silently; return who holds until when."""
    run_id, as_of, policy = context.run_id, context.as_of, context.policy
    proofs = findings.proofs
    proof_of_life = set(proofs["person_id"].astype(int))
    certify_persons(
        session, run_id=run_id, as_of=as_of, proofs=proofs, policy=policy,
        policy_version=policy_version,
    )  # fmt: skip
    living = ~assessed["person_id"].isin(proof_of_life | findings.dead)
    strong = assessed[(assessed["level"] == "strong") & living]
    if "certifiable" in assessed:
        strong = strong[strong["certifiable"].astype(bool)]
    silently = certify_silently(
        session, run_id=run_id, as_of=as_of, strong=strong, policy=policy,
        policy_version=policy_version,
    )  # fmt: skip
    result.certified = {
        **{str(k): int(v) for k, v in proofs["source"].astype(str).value_counts().items()},
        str(CertificationSource.DATA_COMPARISON): silently,
    }
    session.flush()
    ends = valid_until(session, policy=policy)
    certified_now = proof_of_life | set(strong["person_id"].astype(int))
    certified_now &= {p for p, end in ends.items() if end > as_of}
    return _Certified(proof_of_life=proof_of_life, ends=ends, certified_now=certified_now)


def _route(
    session: Session, context: _Context, settled: _Settled, findings: _Findings,
    certified: _Certified, *, snapshot: EvidenceSnapshot, levels: pd.DataFrame,
    result: WorkflowResult,
) -> None:  # fmt: skip
    """Route reviews (visits, face verifications, renewals), notify the asked, death reviews."""
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
    due = _due_for_review(session, as_of=as_of, ends=certified.ends, roll=roll, policy=policy)
    result.routing = route_reviews(
        session, run_id=context.run_id, as_of=as_of,
        assessed=levels[~levels["person_id"].isin(proof_of_life)], policy=policy,
        due=due - proof_of_life, visit_now=visit_now - dead, face_now=face_now - proof_of_life,
        visit_asked=settled.visits_asked - dead,
    )  # fmt: skip
    result.notices["face"] = _face_notices(session, context)
    result.death_reviews = _death_reviews(session, context, snapshot=snapshot, dead=dead)


def _fold_payments(
    session: Session, context: _Context, settled: _Settled, findings: _Findings,
    certified: _Certified, *, levels: pd.DataFrame, result: WorkflowResult,
) -> None:  # fmt: skip
    """Fold each benefit's events of the run through the payment state machine: the list.

    Lapses and deaths that stood are weighed on the states the run's other events left.
    """
    policy = context.policy
    terms = RunTerms(
        as_of=context.as_of, payment_day=policy.payment_day,
        four_eyes_back_pay=Decimal(str(policy.four_eyes_back_pay)),
        terminate_after_death_days=policy.terminate_after_death_days,
    )  # fmt: skip
    events = _events(
        session, context, dead=findings.died_on, standing=findings.standing,
        proofs=findings.proofs, certified_now=certified.certified_now,
        outcomes=settled.outcomes, ends=certified.ends,
    )  # fmt: skip
    result.entries = apply_occurrences(
        session, run_id=context.run_id, run=terms, occurrences=events
    )
    later = _events_after(
        session, context, dead=findings.died_on, ends=certified.ends, assessed=levels,
        certified_now=certified.certified_now, result=result,
    )  # fmt: skip
    result.entries += apply_occurrences(
        session, run_id=context.run_id, run=terms, occurrences=later
    )
    result.events = {
        str(event): sum(
            o.event == event for found in (events, later) for each in found.values() for o in each
        )
        for event in EVENT_ORDER
    }
    _open_duplicate_leads(session, context, entries=result.entries)


def _due_for_review(
    session: Session, *, as_of: dt.date, ends: pd.Series, roll: pd.DataFrame,
    policy: CertificationPolicy,
) -> set[int]:  # fmt: skip
    """Return persons whose certification is up for renewal and who have no review this cycle."""
    last_opened = pd.DataFrame(
        session.execute(
            select(ReviewTask.person_id, func.max(ReviewTask.opened_on))
            .where(ReviewTask.kind.in_(REVIEW_KINDS))
            .group_by(ReviewTask.person_id)
        ).all(),
        columns=["person_id", "opened_on"],
    )
    end = dates_of(roll["person_id"], ends)
    window = cycle_days(policy, roll["benefit_type"], field="renewal_window_days")
    window_opens = end - window.astype("timedelta64[D]")
    opened = dates_of(roll["person_id"], last_opened.set_index("person_id")["opened_on"])
    unknown = np.isnat(window_opens)
    # Due: the renewal window is open (or no certification is known) and no review was opened
    # in it yet.
    is_open = unknown | (window_opens <= np.datetime64(as_of, "D"))
    unreviewed = np.isnat(opened) | unknown | (opened < window_opens)
    return set(roll.loc[is_open & unreviewed, "person_id"].astype(int))


def _notices(session: Session, context: _Context, rows: list[dict[str, Any]]) -> int:
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


def _face_notices(session: Session, context: _Context) -> int:
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
    return _notices(
        session, context,
        [{"person_id": int(p), "task_id": int(t), "template": "face",
          "body": template.format(due=d.isoformat())}
         for t, p, d in zip(opened["id"], opened["person_id"], opened["due_on"], strict=True)],
    )  # fmt: skip


def _death_reviews(
    session: Session, context: _Context, *, snapshot: EvidenceSnapshot, dead: set[int]
) -> int:
    """Open a death review for each unsettled record naming a living roll person by number."""
    records = query_frame(
        session,
        select(DeathRecord.person_id, DeathRecord.source, DeathRecord.record_id,
               DeathRecord.name, DeathRecord.died_on)
        .where(DeathRecord.match == DeathMatch.NAME_MISMATCH,
               DeathRecord.status == RecordStatus.ACTIVE, DeathRecord.settled_by.is_(None),
               DeathRecord.person_id.is_not(None), DeathRecord.recorded_on <= context.as_of),
        ["person_id", "source", "record_id", "name", "died_on"],
    )  # fmt: skip
    roll = snapshot.roll
    records = records[
        ~records["person_id"].isin(dead) & records["person_id"].isin(roll["person_id"])
    ]
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


def _benefits(session: Session, *where: Any) -> pd.DataFrame:
    """Return benefits matching `where`: id, person, type, start, payment status and reason."""
    frame = query_frame(
        session,
        select(Benefit.id, Benefit.person_id, Benefit.benefit_type, Benefit.benefit_start,
               Benefit.status, Benefit.suspension_reason, Benefit.held_entry_id).where(*where),
        ["benefit_id", "person_id", "benefit_type", "benefit_start", "status", "reason", "held"],
    )  # fmt: skip
    for column in ("benefit_type", "status", "reason"):
        frame[column] = frame[column].astype(object).map(lambda v: None if v is None else str(v))
    return frame


def _of_persons(session: Session, persons: Iterable[int], *where: Any) -> pd.DataFrame:
    """Return the benefits of some persons (matching `where`), in chunks of ids."""
    ids = sorted(set(int(p) for p in persons))
    frames = [
        _benefits(session, Benefit.person_id.in_(ids[start : start + IN_CHUNK]), *where)
        for start in range(0, len(ids), IN_CHUNK)
    ]
    return pd.concat(frames, ignore_index=True) if frames else _benefits(session, False)


class _Found:
    """Each benefit's events of a run as they are gathered, at most one of each kind."""

    def __init__(self) -> None:
        self.events: dict[int, dict[PaymentEvent, Occurrence]] = {}

    def add(self, benefits: pd.DataFrame, occurrence_of: Callable[[int, int], Occurrence]) -> None:
        """Add the occurrence `occurrence_of(person_id, benefit_id)` of each benefit."""
        for benefit_id, person_id in zip(benefits["benefit_id"], benefits["person_id"],
                                         strict=True):  # fmt: skip
            occurrence = occurrence_of(int(person_id), int(benefit_id))
            self.events.setdefault(int(benefit_id), {})[occurrence.event] = occurrence

    def ordered(self) -> dict[int, list[Occurrence]]:
        """Return each benefit's events in the order they apply."""
        return {
            benefit_id: [events[e] for e in EVENT_ORDER if e in events]
            for benefit_id, events in self.events.items()
        }


def _events(
    session: Session, context: _Context, *, dead: pd.Series, standing: pd.DataFrame,
    proofs: pd.DataFrame, certified_now: set[int], outcomes: pd.DataFrame, ends: pd.Series,
) -> dict[int, list[Occurrence]]:  # fmt: skip
    """Gather each benefit's events of this run but lapses and deaths that stood."""
    found = _Found()
    reviewers = dict(zip(outcomes["person_id"], outcomes["actor"], strict=True))
    _add_deaths_and_proofs(
        session, found, dead=dead, standing=standing, proofs=proofs, reviewers=reviewers
    )
    _add_recertified_and_imprisoned(
        session, context, found, certified_now=certified_now, outcomes=outcomes, ends=ends,
        reviewers=reviewers,
    )  # fmt: skip
    _add_duplicates(session, found)
    return found.ordered()


def _add_deaths_and_proofs(
    session: Session, found: _Found, *, dead: pd.Series, standing: pd.DataFrame,
    proofs: pd.DataFrame, reviewers: dict[Any, Any],
) -> None:  # fmt: skip
    """Add the deaths, the proofs of life and the deaths withdrawn to the benefits they touch."""
    # A death is news to a benefit not already stopped for one, and to any holding a
    # reinstatement (terminated ones too): the death supersedes what waits for approval.
    not_over = (or_(Benefit.held_entry_id.is_not(None),
                    and_(Benefit.status != BenefitStatus.TERMINATED,
                         or_(Benefit.suspension_reason.is_(None),
                             Benefit.suspension_reason != ListReason.DECEASED))),)  # fmt: skip
    # Deaths: the earliest standing record, from whatever source (a review's too).
    first = (
        standing.sort_values(["died_on", "id"]).drop_duplicates("person_id").set_index("person_id")
    )
    found.add(
        _of_persons(session, dead.index, *not_over),
        lambda p, b: Occurrence(
            PaymentEvent.DEATH, day=first.at[p, "died_on"],
            evidence={"source": str(first.at[p, "source"]),
                      "record_id": str(first.at[p, "record_id"])},
            caused_by=reviewers.get(p, "system")
            if first.at[p, "source"] == REVIEW_DEATH_SOURCE else "system",
        ),
    )  # fmt: skip
    # Proofs of life of suspended or ended benefits.
    proof = proofs.set_index("person_id")
    found.add(
        _of_persons(session, proof.index, Benefit.status != BenefitStatus.ACTIVE),
        lambda p, b: Occurrence(
            PaymentEvent.PROOF_OF_LIFE, day=proof.at[p, "day"],
            evidence={"proof": str(proof.at[p, "source"]), "proof_day":
                      proof.at[p, "day"].isoformat(), **proof.at[p, "evidence"]},
            caused_by=reviewers.get(p, "system"),
        ),
    )  # fmt: skip
    # Deaths no record holds any more, with no proof of life this run: withdrawn by source.
    gone = _benefits(session, Benefit.suspension_reason == ListReason.DECEASED)
    gone = gone[~gone["person_id"].isin(dead.index) & ~gone["person_id"].isin(proof.index)]
    found.add(gone, lambda p, b: Occurrence(PaymentEvent.DEATH_WITHDRAWN,
                                            evidence={"no_death_stands": True}))  # fmt: skip


def _add_recertified_and_imprisoned(
    session: Session, context: _Context, found: _Found, *, certified_now: set[int],
    outcomes: pd.DataFrame, ends: pd.Series, reviewers: dict[Any, Any],
) -> None:  # fmt: skip
    """Add the lapses a renewed certification ends and the imprisonments reviews found."""
    found.add(
        _of_persons(session, certified_now, Benefit.suspension_reason == ListReason.LAPSED),
        lambda p, b: Occurrence(PaymentEvent.RECERTIFIED,
                                evidence={"certified_until": ends[p].isoformat()}),
    )  # fmt: skip
    prison = outcomes[outcomes["outcome"] == str(VisitOutcome.IMPRISONED)]
    prison_task = dict(zip(prison["person_id"], prison["id"], strict=True))
    found.add(
        _of_persons(session, prison_task,
                    Benefit.benefit_type.in_(context.policy.suspend_when_imprisoned)),
        lambda p, b: Occurrence(PaymentEvent.IMPRISONMENT,
                                evidence={"review_task": int(prison_task[p])},
                                caused_by=reviewers.get(p, "system")),
    )  # fmt: skip


def _add_duplicates(session: Session, found: _Found) -> None:
    """Add the duplicate identities deregistrations show, and those none holds any more."""
    duplicates = _duplicate_benefits(session)
    # A duplicate suspension no deregistration holds any more, also under a death it amended
    # (were that death withdrawn later, it would otherwise return to a withdrawn duplicate).
    withdrawn = _benefits(
        session,
        or_(Benefit.suspension_reason == ListReason.DUPLICATE_IDENTITY,
            Benefit.prior_reason == ListReason.DUPLICATE_IDENTITY),
    )  # fmt: skip
    withdrawn = withdrawn[~withdrawn["benefit_id"].isin(duplicates.index)]
    found.add(
        withdrawn,
        lambda p, b: Occurrence(PaymentEvent.DUPLICATE_WITHDRAWN,
                                evidence={"no_deregistration_stands": True}),
    )  # fmt: skip
    found.add(
        duplicates.reset_index(),
        lambda p, b: Occurrence(PaymentEvent.DUPLICATE_IDENTITY,
                                evidence=duplicates.at[b, "evidence"]),
    )  # fmt: skip


def _events_after(
    session: Session, context: _Context, *, dead: pd.Series, ends: pd.Series,
    assessed: pd.DataFrame, certified_now: set[int], result: WorkflowResult,
) -> dict[int, list[Occurrence]]:  # fmt: skip
    """Gather lapses and deaths that stood, on the states the run's other events left."""
    found = _Found()
    lapses = _lapses(session, context, ends=ends, assessed=assessed,
                     certified_now=certified_now | set(dead.index), result=result)  # fmt: skip
    found.add(
        _of_persons(session, lapses, Benefit.status == BenefitStatus.ACTIVE),
        lambda p, b: Occurrence(PaymentEvent.LAPSE, evidence=lapses[p]),
    )  # fmt: skip
    stood = context.as_of - dt.timedelta(days=context.policy.terminate_after_death_days)
    candidates = _of_persons(
        session, dead.index, Benefit.status == BenefitStatus.SUSPENDED,
        Benefit.suspension_reason == ListReason.DECEASED, Benefit.held_entry_id.is_(None),
        Benefit.suspended_as_of <= stood,
    )  # fmt: skip
    found_on = _death_found_on(session, candidates["benefit_id"])
    found.add(
        candidates[candidates["benefit_id"].isin(found_on.index)],
        lambda p, b: Occurrence(PaymentEvent.DEATH_STOOD, day=found_on[b]),
    )  # fmt: skip
    return found.ordered()


def _death_found_on(session: Session, benefit_ids: Iterable[int]) -> pd.Series:
    """Return, per benefit, the date of the run whose entry last suspended it for a death."""
    rows = _frame_in(
        session, benefit_ids,
        lambda chunk: select(ListEntry.benefit_id, ListEntry.seq, Run.as_of)
        .join(Run, Run.id == ListEntry.run_id)
        .where(ListEntry.benefit_id.in_(chunk), ListEntry.reason == ListReason.DECEASED,
               ListEntry.action.in_([ListAction.SUSPEND, ListAction.AMEND])),
        ["benefit_id", "seq", "as_of"],
    )  # fmt: skip
    latest = rows.sort_values("seq").drop_duplicates("benefit_id", keep="last")
    return pd.Series(latest["as_of"].to_numpy(), index=latest["benefit_id"].astype(int))


def _duplicate_benefits(session: Session) -> pd.DataFrame:
    """Return the benefits a deregistration shows to be drawn by a duplicate identity.

    A deregistration replacing a number by a `new_id_number` that also draws links two persons
    on the roll: where both draw the same benefit type, the later-started benefit is the
    duplicate (on a tie, the cancelled number's). A deregistration cancelling a number as a
    `duplicate` without naming another number on the roll makes every benefit that number draws a
    duplicate. Indexed by benefit id, with the person and the evidence to cite.
    """
    columns = ["benefit_id", "person_id", "evidence"]
    links = _deregistration_links(session)
    if links.empty:
        return pd.DataFrame(columns=columns).astype({"benefit_id": int}).set_index("benefit_id")
    persons = set(links["person_id"].astype(int)) | set(links["other_id"].dropna().astype(int))
    benefits = _of_persons(session, persons)[
        ["benefit_id", "person_id", "benefit_type", "benefit_start"]
    ]
    mine = links.merge(benefits, on="person_id")
    pairs = mine.dropna(subset=["other_id"]).merge(
        benefits, left_on=["other_id", "benefit_type"], right_on=["person_id", "benefit_type"],
        suffixes=("", "_other"),
    )  # fmt: skip
    chosen = pd.concat(
        [_paired_duplicates(pairs), _cancelled_duplicates(mine, pairs)], ignore_index=True
    )[columns]
    return chosen.drop_duplicates("benefit_id").set_index("benefit_id")


def _deregistration_links(session: Session) -> pd.DataFrame:
    """Return the standing deregistrations of roll persons that may show a duplicate.

    Each with `other_id`, the roll person holding its `new_id_number` (if another one does).
    """
    links = query_frame(
        session,
        select(Deregistration.record_id, Deregistration.reason, Deregistration.new_id_number,
               Deregistration.person_id)
        .where(Deregistration.status == RecordStatus.ACTIVE,
               Deregistration.person_id.is_not(None),
               or_(Deregistration.reason == "duplicate",
                   Deregistration.new_id_number.is_not(None))),
        ["record_id", "reason", "new_id_number", "person_id"],
    )  # fmt: skip
    if links.empty:
        return links
    numbers = links["new_id_number"].dropna().tolist()
    holders = dict(
        session.execute(select(Person.id_number, Person.id).where(Person.id_number.in_(numbers)))
        .all()
    ) if numbers else {}  # fmt: skip
    links["other_id"] = links["new_id_number"].map(holders)
    links.loc[links["other_id"] == links["person_id"], "other_id"] = np.nan
    return links


def _paired_duplicates(pairs: pd.DataFrame) -> pd.DataFrame:
    """Return, of each pair of same-type benefits two linked numbers draw, the later-started."""
    later = pairs["benefit_start"] >= pairs["benefit_start_other"]
    return pd.DataFrame(
        {
            "benefit_id": np.where(later, pairs["benefit_id"], pairs["benefit_id_other"]),
            "person_id": np.where(later, pairs["person_id"], pairs["person_id_other"]),
            "evidence": [
                {"deregistration": str(r), "reason": str(why),
                 "other_benefit": int(o if is_later else b)}
                for r, why, is_later, b, o in zip(
                    pairs["record_id"], pairs["reason"], later, pairs["benefit_id"],
                    pairs["benefit_id_other"], strict=True)
            ],
        }
    )  # fmt: skip


def _cancelled_duplicates(mine: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Return all that numbers cancelled as a duplicate of nobody on the roll draw: twice drawn."""
    # Where the other number is on the roll, only the pairs are duplicates: a benefit the other
    # number does not draw is the person's only one, and stopping it would stop a living
    # person's pay.
    alone = mine[
        (mine["reason"] == "duplicate")
        & mine["other_id"].isna()
        & ~mine["benefit_id"].isin(pairs["benefit_id"])
        & ~mine["benefit_id"].isin(pairs["benefit_id_other"])
    ]
    return pd.DataFrame(
        {
            "benefit_id": alone["benefit_id"].to_numpy(),
            "person_id": alone["person_id"].to_numpy(),
            "evidence": [
                {"deregistration": str(r), "reason": "duplicate"} for r in alone["record_id"]
            ],
        }
    )


def _lapses(
    session: Session, context: _Context, *, ends: pd.Series, assessed: pd.DataFrame,
    certified_now: set[int], result: WorkflowResult,
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Return who lapses now after a real chance, with the evidence; notify the newly lapsed.

    The certification ended; a lapse notice was sent after it ended and its period passed;
    and the latest review of the cycle happened and failed. An open review past its due date
    is the agency's delay: it escalates (the run report lists it) and suspends nobody.
    """
    roll = assessed[["person_id", "benefit_type", "level"]]
    end = roll["person_id"].map(ends)
    lapsed = roll[
        end.notna().to_numpy()
        & (pd.to_datetime(end, errors="coerce") < pd.Timestamp(context.as_of)).to_numpy()
        & ~roll["person_id"].isin(certified_now).to_numpy()
        & ~roll["level"].isin(["deceased", "strong"]).to_numpy()
    ].drop_duplicates("person_id")
    if lapsed.empty:
        return {}
    persons = lapsed["person_id"].astype(int).tolist()
    active = set(_of_persons(session, persons, Benefit.status == BenefitStatus.ACTIVE)["person_id"])
    lapsed = lapsed[lapsed["person_id"].isin(active)]
    persons = lapsed["person_id"].astype(int).tolist()
    notified, sent_on = _lapse_notices(session, context, persons=persons, ends=ends)
    window = [context.policy.cycle_for(str(t)).renewal_window_days for t in lapsed["benefit_type"]]
    opens = pd.Series(
        [ends[p] - dt.timedelta(days=days) for p, days in zip(persons, window, strict=True)],
        index=persons, dtype=object,
    )  # fmt: skip
    failed = _failed_reviews(session, context, persons=persons, opens=opens)
    frame = pd.DataFrame({"person_id": persons})
    frame["ended"] = frame["person_id"].map(ends)
    frame["told"] = frame["person_id"].map(sent_on)
    return _ready_to_lapse(
        session, context, frame, notified=frame["person_id"].isin(notified).to_numpy(),
        failed=failed, result=result,
    )  # fmt: skip


def _lapse_notices(
    session: Session, context: _Context, *, persons: list[int], ends: pd.Series
) -> tuple[pd.Series, pd.Series]:
    """Return who has a lapse notice since their certification ended, and when it was sent.

    The day sent is the local day of the earliest notice sent, per person.
    """
    notices = _frame_in(
        session, persons,
        lambda chunk: select(Notice.person_id, Notice.created_on, Notice.status, Notice.sent_at)
        .where(Notice.template == "lapse", Notice.person_id.in_(chunk)),
        ["person_id", "created_on", "status", "sent_at"],
    )  # fmt: skip
    notices = notices[
        pd.to_datetime(notices["created_on"]).to_numpy()
        >= pd.to_datetime(notices["person_id"].map(ends)).to_numpy()
    ]
    zone = ZoneInfo(context.timezone)
    sent = notices[notices["status"].astype(object).map(str) == str(NoticeStatus.SENT)]
    sent_on = (
        sent.assign(day=[at.astimezone(zone).date() for at in sent["sent_at"]])
        .groupby("person_id")["day"].min()
    )  # fmt: skip
    return notices["person_id"], sent_on


def _ready_to_lapse(
    session: Session, context: _Context, frame: pd.DataFrame, *, notified: np.ndarray,
    failed: dict[int, dict[str, Any]], result: WorkflowResult,
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Return the lapsed who were told, given the notice period and failed a review; tell the rest.

    `frame` holds each lapsed person, the day their certification ended and the day they were
    told (a lapse notice sent); `notified` marks those with a lapse notice, sent or not.
    """
    as_of, policy = context.as_of, context.policy
    told = frame["told"].notna().to_numpy()
    period_over = (
        told
        & (
            pd.Timestamp(as_of) - pd.to_datetime(frame["told"])
            >= pd.Timedelta(days=policy.cycle.notice_days)
        ).to_numpy()
    )
    review_failed = frame["person_id"].isin(failed).to_numpy()
    # Lapsed, told, given the notice period, and a review failed: only now.
    ready = frame[notified & period_over & review_failed]
    waiting = {
        "notice_unsent": int((notified & ~told).sum()),
        "notice_period": int((told & ~period_over).sum()),
        "review_pending": int((period_over & ~review_failed).sum()),
    }
    deadline = (as_of + dt.timedelta(days=policy.cycle.notice_days)).isoformat()
    new_notices = [
        {"person_id": int(p), "template": "lapse",
         "body": policy.notice_texts["lapse"].format(end=e.isoformat(), deadline=deadline)}
        for p, e in zip(frame.loc[~notified, "person_id"], frame.loc[~notified, "ended"],
                        strict=True)
    ]  # fmt: skip
    lapses = {
        int(p): {"certification_ended": e.isoformat(), "notice_sent_on": t.isoformat(),
                 **failed[int(p)]}
        for p, e, t in zip(ready["person_id"], ready["ended"], ready["told"], strict=True)
    }  # fmt: skip
    result.notices["lapse"] = _notices(session, context, new_notices)
    result.lapse_waiting = waiting
    return lapses


def _failed_reviews(
    session: Session, context: _Context, *, persons: list[int], opens: pd.Series
) -> dict[int, dict[str, Any]]:
    """Return persons whose latest review of the cycle happened and failed, with that review.

    `opens` gives, per person, the day their renewal window opened: reviews before it belong
    to an earlier cycle.

    A visit failed if it ended in one of the policy's failed outcomes (`refused`); a face
    verification if it failed, or was ignored past its due date although its notice was
    sent. A visit that found nobody is no failure: the remote verification it leads to is.
    """
    policy = context.policy
    reviews = _frame_in(
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
    rows = _frame_in(
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


def _open_duplicate_leads(
    session: Session, context: _Context, *, entries: list[dict[str, Any]]
) -> int:
    """Open an integrity lead for each duplicate identity the run suspended, if none is known."""
    made = [e for e in entries if e["event"] == PaymentEvent.DUPLICATE_IDENTITY]
    keys = {str(e["detail"]["deregistration"]) for e in made}
    if not keys:
        return 0
    known = set(
        session.scalars(
            select(IntegrityLead.key).where(
                IntegrityLead.rule == "deregistered_number", IntegrityLead.key.in_(keys)
            )
        )
    )
    refs = dict(
        session.execute(
            select(Person.id, Person.person_ref).where(
                Person.id.in_({int(e["person_id"]) for e in made})
            )
        ).all()
    )
    regions = dict(
        session.execute(
            select(Person.id, Person.region_code).where(Person.id.in_(list(refs)))
        ).all()
    )
    opened = 0
    for entry in made:
        key = str(entry["detail"]["deregistration"])
        if key in known:
            continue
        known.add(key)
        session.add(
            IntegrityLead(
                rule="deregistered_number", key=key,
                region_code=str(regions[int(entry["person_id"])]),
                person_refs=[refs[int(entry["person_id"])]],
                evidence={"deregistration": key, "suspended_benefit": int(entry["benefit_id"]),
                          **entry["detail"]},
                amount_at_risk=entry["amount"], status=LeadStatus.OPEN,
                policy_version=context.policy.version, found_on=context.as_of,
            )
        )  # fmt: skip
        opened += 1
    session.flush()
    return opened
