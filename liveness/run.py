"""The certification run: grade everyone as of a date, route reviews, list suspensions.

The run writes everything in the caller's transaction; the boundary commits once, so a run
that fails publishes nothing and the same date run again gives the same lists.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from liveness.certification import CertificationPolicy, certify_silently
from liveness.errors import RollMissing
from liveness.evidence.health import HealthPolicy, source_health
from liveness.evidence.store import EvidenceStore, day_from_number, day_number
from liveness.ingest.traces import TRACE_SOURCES
from liveness.lists import suspend_deceased
from liveness.review import open_death_reviews, route_reviews
from liveness.scoring import (
    LEVELS,
    RULES,
    ScoringPolicy,
    compute_features,
    grade,
    post_death_traces,
    reasons_frame,
)
from models import (
    Assessment,
    Benefit,
    BenefitStatus,
    DeathMatch,
    DeathRecord,
    Person,
    RecordStatus,
    Run,
    RunStatus,
    utcnow,
)

ACTING_MATCHES = (DeathMatch.ID_NUMBER, DeathMatch.DEMOGRAPHIC)
REVIEW_MATCHES = (DeathMatch.NAME_MISMATCH,)


@dataclass(frozen=True)
class RunPolicies:
    """The policies a run applies."""

    scoring: ScoringPolicy
    certification: CertificationPolicy
    health: HealthPolicy


class _Stopwatch:
    """Collects the seconds each stage of a run took, for its report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 3)


def roll_frame(session: Session) -> pd.DataFrame:
    """Return one row per person drawing a benefit, with their main benefit's type and amount."""
    rows = session.execute(
        select(
            Person.id, Person.person_ref, Person.grid_code, Person.region_code,
            Benefit.benefit_type, Benefit.monthly_amount, Benefit.status,
        )
        .join(Benefit, Benefit.person_id == Person.id)
        .where(Benefit.status != BenefitStatus.TERMINATED)
        .order_by(Person.id, Benefit.id)
    ).all()  # fmt: skip
    frame = pd.DataFrame(
        rows,
        columns=[
            "person_id", "person_ref", "grid_code", "region_code", "benefit_type",
            "monthly_amount", "benefit_status",
        ],
    )  # fmt: skip
    frame["benefit_type"] = frame["benefit_type"].astype(object).map(str)
    frame["monthly_amount"] = frame["monthly_amount"].astype(float)
    # A person is graded once; the monthly amount at stake is the sum of their benefits.
    totals = frame.groupby("person_id")["monthly_amount"].sum()
    frame = frame.drop_duplicates("person_id").reset_index(drop=True)
    frame["monthly_amount"] = totals.reindex(frame["person_id"]).to_numpy()
    return frame


def _death_evidence(session: Session, as_of: dt.date) -> pd.DataFrame:
    """Return active death records known by `as_of` that name a person."""
    rows = session.execute(
        select(
            DeathRecord.person_id, DeathRecord.died_on, DeathRecord.match, DeathRecord.source,
            DeathRecord.record_id, DeathRecord.name, DeathRecord.recorded_on,
        ).where(
            DeathRecord.status == RecordStatus.ACTIVE,
            DeathRecord.person_id.is_not(None),
            DeathRecord.recorded_on <= as_of,
            DeathRecord.died_on <= as_of,
        )
    ).all()  # fmt: skip
    frame = pd.DataFrame(
        rows,
        columns=["person_id", "died_on", "match", "source", "record_id", "name", "recorded_on"],
    )
    frame["match"] = frame["match"].astype(object).map(str)
    return frame


def _traces(
    session: Session, *, store: EvidenceStore, policy: ScoringPolicy, as_of: dt.date,
    dense: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Read the long window's linked traces as policy-coded arrays over the dense index."""
    first_day = as_of - dt.timedelta(days=policy.long - 1)
    parts: dict[str, list[np.ndarray]] = {"person": [], "source": [], "kind": [], "day": []}
    kind_index = policy.kind_index
    for source_code, source in enumerate(policy.sources):
        window = store.read_window(session, source=source, first_day=first_day, last_day=as_of)
        if len(window) == 0:
            continue
        inside = window.person_id < len(dense)
        person = np.where(inside, dense[np.where(inside, window.person_id, 0)], -1)
        kinds, inverse = np.unique(window.kind.astype(str), return_inverse=True)
        known = np.array([kind_index.get((source, k), -1) for k in kinds], dtype=np.int16)
        kind = known[inverse]
        keep = (person >= 0) & (kind >= 0)
        parts["person"].append(person[keep].astype(np.int32))
        parts["source"].append(np.full(int(keep.sum()), source_code, dtype=np.int8))
        parts["kind"].append(kind[keep])
        parts["day"].append(window.day[keep])
    empty = {"person": np.int32, "source": np.int8, "kind": np.int16, "day": np.int32}
    return {
        key: np.concatenate(values) if values else np.empty(0, dtype=empty[key])
        for key, values in parts.items()
    }


def certify(
    session: Session,
    *,
    as_of: dt.date,
    store: EvidenceStore,
    policies: RunPolicies,
) -> Run:
    """Run certification as of `as_of` and publish its results in the caller's transaction."""
    watch = _Stopwatch()
    scoring = policies.scoring
    run = Run(
        as_of=as_of,
        status=RunStatus.RUNNING,
        policy_version=scoring.version,
    )
    session.add(run)
    session.flush()

    with watch.stage("load"):
        roll = roll_frame(session)
        if roll.empty:
            raise RollMissing("the benefit roll is empty: ingest the registry source first")
        ids = roll["person_id"].to_numpy()
        dense = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
        dense[ids] = np.arange(len(ids))
        traces = _traces(session, store=store, policy=scoring, as_of=as_of, dense=dense)
        deaths = _death_evidence(session, as_of)
        # A source that collapsed in the recent window is degraded for this run: its silence
        # lowers nobody (the grading credits what the person showed before the outage).
        outages = source_health(
            session, sources=scoring.sources,
            first_day=as_of - dt.timedelta(days=scoring.recent - 1), last_day=as_of,
            policy=policies.health,
        )  # fmt: skip

    with watch.stage("grade"):
        as_of_day = day_number(as_of)
        acting = deaths[deaths["match"].isin([m.value for m in ACTING_MATCHES])]
        first_death = acting.groupby("person_id")["died_on"].min()
        death_day = np.full(len(roll), -1, dtype=np.int32)
        known = first_death.index.to_numpy()
        on_roll = known[known < len(dense)]
        on_roll = on_roll[dense[on_roll] >= 0]
        death_day[dense[on_roll]] = [day_number(first_death[p]) for p in on_roll]
        features = compute_features(
            person_idx=traces["person"], source_code=traces["source"], kind_code=traces["kind"],
            day=traces["day"], n_persons=len(roll), as_of_day=as_of_day, policy=scoring,
        )  # fmt: skip
        degraded = np.array([bool(outages[source]) for source in scoring.sources])
        grades = grade(
            features=features, benefit_type=roll["benefit_type"].to_numpy(),
            death_day=death_day, degraded=degraded, policy=scoring,
        )  # fmt: skip
        post_death = post_death_traces(
            person_idx=traces["person"], kind_code=traces["kind"], day=traces["day"],
            death_day=death_day, policy=scoring,
        )  # fmt: skip
        reasons = reasons_frame(
            grades=grades, features=features, as_of_day=as_of_day, policy=scoring,
            post_death=post_death,
        )  # fmt: skip
        assessed = roll.assign(
            level=np.asarray(LEVELS, dtype=object)[grades.level],
            rule=np.asarray(RULES, dtype=object)[grades.rule],
            score=grades.score.astype(float).round(4),
            reasons=reasons,
        )

    with watch.stage("publish"):
        session.execute(
            insert(Assessment),
            [
                {
                    "run_id": run.id,
                    "person_id": int(person_id),
                    "level": level,
                    "score": float(score),
                    "rule": rule,
                    "reasons": person_reasons,
                    "policy_version": scoring.version,
                }
                for person_id, level, score, rule, person_reasons in zip(
                    assessed["person_id"], assessed["level"], assessed["score"],
                    assessed["rule"], assessed["reasons"], strict=True,
                )
            ],
        )  # fmt: skip
        certification = policies.certification
        certified = certify_silently(
            session, run_id=run.id, as_of=as_of,
            strong=assessed[assessed["level"] == "strong"], policy=certification,
            policy_version=scoring.version,
        )  # fmt: skip
        routing = route_reviews(
            session, run_id=run.id, as_of=as_of, assessed=assessed, policy=certification
        )
        mismatched = deaths[deaths["match"].isin([m.value for m in REVIEW_MATCHES])]
        mismatched = mismatched[
            ~mismatched["person_id"].isin(first_death.index)
            & mismatched["person_id"].isin(roll["person_id"])
        ]
        death_reviews = open_death_reviews(
            session, run_id=run.id, as_of=as_of,
            cases=mismatched.merge(roll[["person_id", "grid_code"]], on="person_id").assign(
                record=lambda f: [
                    {"source": s, "record_id": r, "name": n, "died_on": d.isoformat()}
                    for s, r, n, d in zip(
                        f["source"], f["record_id"], f["name"], f["died_on"], strict=True
                    )
                ]
            ),
            policy=certification,
        )  # fmt: skip
        dead = assessed.loc[assessed["level"] == "deceased", ["person_id"]]
        dead = dead.assign(died_on=[first_death[p] for p in dead["person_id"]])
        entries = suspend_deceased(
            session, run_id=run.id, deaths=dead, as_of=as_of,
            payment_day=certification.payment_day,
        )  # fmt: skip

    run.report = _report(
        as_of=as_of, assessed=assessed, post_death=post_death, certified=certified,
        routing=routing, death_reviews=death_reviews, entries=entries, deaths=deaths,
        traces=len(traces["day"]), policies=policies, timings=watch.seconds, outages=outages,
    )  # fmt: skip
    run.status = RunStatus.PUBLISHED
    run.finished_at = utcnow()
    session.flush()
    return run


def _report(
    *, as_of: dt.date, assessed: pd.DataFrame, post_death: np.ndarray, certified: int,
    routing: Any, death_reviews: int, entries: list[Any], deaths: pd.DataFrame, traces: int,
    policies: RunPolicies, timings: dict[str, float], outages: dict[str, list[dt.date]],
) -> dict[str, Any]:  # fmt: skip
    """Summarise a run for operators: levels, tasks, list entries and amounts, timings."""
    levels = assessed["level"].value_counts()
    suspended = [entry for entry in entries if entry.action == "suspend"]
    return {
        "as_of": as_of.isoformat(),
        "policy_version": policies.scoring.version,
        "certification_policy_version": policies.certification.version,
        "persons": len(assessed),
        "traces_in_window": traces,
        "levels": {level: int(levels.get(level, 0)) for level in LEVELS},
        "rules": {str(k): int(v) for k, v in assessed["rule"].value_counts().items()},
        "certified_silently": certified,
        "tasks_opened": {**routing.opened, "death_review": death_reviews},
        "tasks_closed_by_data": routing.closed_by_data,
        "tasks_cancelled": routing.cancelled,
        "suspensions": len(suspended),
        "overpayment_total": str(sum((entry.amount for entry in suspended), start=0)),
        "persons_with_traces_after_death": int((post_death > 0).sum()),
        "death_records_for_review": int((deaths["match"] == DeathMatch.NAME_MISMATCH).sum()),
        "degraded_sources": {
            source: [day.isoformat() for day in days] for source, days in outages.items() if days
        },
        "health_policy_version": policies.health.version,
        "trace_sources": list(TRACE_SOURCES),
        "timings_s": timings,
        "first_day_of_window": day_from_number(
            day_number(as_of) - policies.scoring.long + 1
        ).isoformat(),
    }
