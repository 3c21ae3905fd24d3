"""The certification run: grade everyone as of a date, route reviews, list suspensions.

The run writes everything in the caller's transaction; the boundary commits once, so a run
that fails publishes nothing and the same date run again gives the same lists.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy.orm import Session

from liveness.certification import CertificationPolicy
from liveness.certification.assessments import assessment_gists, store_assessments
from liveness.certification.guard import GuardVerdict, check_downgrades, previous_levels
from liveness.certification.workflow import WorkflowResult, apply_workflow
from liveness.certification.workflow.context import add_counts
from liveness.estimator.config import EstimatorConfig
from liveness.evidence.health import HealthPolicy, SourceHealth
from liveness.evidence.parts import day_from_number, day_number
from liveness.evidence.snapshot import EvidenceSnapshot, take_snapshot
from liveness.evidence.store import EvidenceStore
from liveness.memory import reused_blocks
from liveness.scoring import (
    LEVELS,
    NO_LEVEL,
    RULES,
    Explainer,
    Grades,
    ScoringPolicy,
    benefit_type_codes,
    grade,
    level_codes,
)
from liveness.views.overdue import overdue_summary
from models import (
    DeathMatch,
    Run,
    RunStatus,
    utcnow,
)


@dataclass(frozen=True)
class RunPolicies:
    """The policies a run applies (the estimator's: whether and how it may certify)."""

    scoring: ScoringPolicy
    certification: CertificationPolicy
    health: HealthPolicy
    estimator: EstimatorConfig | None = None
    # The version of the sources.toml that declared the trace sources, their links and their
    # independence groups (grading counts groups): None where no file declared them.
    sources_version: str | None = None


class Stopwatch:
    """Collects the seconds each stage of a run took, for its report."""

    def __init__(self, checkpoint: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.checkpoint = checkpoint

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage (its seconds added to those of its earlier passes)."""
        if self.checkpoint is not None:
            self.checkpoint(f"before {name}")
        started = time.perf_counter()
        yield
        # A run by partitions passes through a stage once per partition: the times add up.
        elapsed = time.perf_counter() - started
        self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 3)
        if self.checkpoint is not None:
            self.checkpoint(f"after {name}")


# Long by design: the run's stages in publishing order, each timed; each stage is a call.
def certify(
    session: Session,
    *,
    as_of: dt.date,
    store: EvidenceStore,
    policies: RunPolicies,
    override_guard: bool = False,
    run: Run | None = None,
    checkpoint: Callable[[str], None] | None = None,
    timezone: str = "Asia/Shanghai",
) -> Run:
    """Run certification as of `as_of` and publish its results in the caller's transaction.

    A run that the mass-downgrade breaker stops is stored with status `stopped_by_guard` and
    its report, and publishes nothing; `override_guard` publishes it anyway, on record.
    `run` is the row of a run already recorded as running (else one is created);
    `checkpoint`, if given, is called between stages (tests use it to interrupt runs).
    """
    scoring = policies.scoring
    watch = Stopwatch(checkpoint)
    if run is None:
        run = Run(as_of=as_of, status=RunStatus.RUNNING, policy_version=scoring.version)
        session.add(run)
        session.flush()

    with watch.stage("evidence"), reused_blocks():
        # The run keeps the roll it read: the next night re-reads only who changed.
        snapshot = take_snapshot(
            session, as_of=as_of, store=store, scoring=scoring, health=policies.health,
            keep_roll=True,
        )  # fmt: skip

    with watch.stage("grade"):
        # Read once: grading keeps levels up to these while a source is degraded, and the
        # guard compares against them.
        previous = previous_levels(session, before=run)
        graded = grade_snapshot(snapshot, previous=previous[1], scoring=scoring)
        explain, assessed = graded.explain, graded.assessed

    with watch.stage("guard"):
        verdict = check_downgrades(
            session, run=run, assessed=assessed, policy=policies.certification.guard,
            previous=previous,
        )  # fmt: skip
    tally = RunTally.of(snapshot, graded)
    if verdict.tripped and not override_guard:
        return stop_by_guard(session, run, tally=tally, verdict=verdict, health=snapshot.health,
                             timings=watch.seconds)  # fmt: skip

    with watch.stage("publish"):
        # Only what changed is stored; the run confirms the rest by being published.
        stored = store_assessments(
            session, run_id=run.id, assessed=assessed, explain=explain, gist=graded.gists,
            standing=previous[1],
            as_of=as_of, policy_version=scoring.version,
            refresh_days=policies.certification.assessment_refresh_days,
        )  # fmt: skip
        workflow = apply_workflow(
            session, run_id=run.id, as_of=as_of, snapshot=snapshot, assessed=assessed,
            store=store, scoring=scoring, policy=policies.certification, timezone=timezone,
            estimator=policies.estimator, explain=explain,
        )  # fmt: skip

    return publish_report(
        session, run, tally=tally, workflow=workflow, policies=policies, timings=watch.seconds,
        health=snapshot.health, stored=stored, verdict=verdict, override_guard=override_guard,
    )  # fmt: skip


@dataclass
class RunTally:
    """What a run's report counts of its graded persons: added up over a run's partitions."""

    persons: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)
    # Traces in the scoring window, and persons a degraded source's silence kept at a level.
    traces: int = 0
    kept: int = 0
    with_traces_after_death: int = 0
    death_records_for_review: int = 0

    @classmethod
    def of(cls, snapshot: EvidenceSnapshot, graded: GradedSnapshot) -> RunTally:
        """Return the counts of a snapshot's persons as graded."""
        assessed = graded.assessed
        return cls(
            persons=len(assessed),
            levels={str(k): int(v) for k, v in assessed["level"].value_counts().items()},
            rules={str(k): int(v) for k, v in assessed["rule"].value_counts().items()},
            traces=int(snapshot.trace_count), kept=int(graded.grades.held.sum()),
            with_traces_after_death=int((snapshot.post_death > 0).sum()),
            death_records_for_review=int(
                snapshot.deaths["match"]
                .isin([DeathMatch.NAME_MISMATCH, DeathMatch.UNCONFIRMED]).sum()
            ),
        )  # fmt: skip

    def add(self, part: RunTally) -> None:
        """Add one partition's counts."""
        add_counts(self.levels, part.levels)
        add_counts(self.rules, part.rules)
        for name in ("persons", "traces", "kept", "with_traces_after_death",
                     "death_records_for_review"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(part, name))


def stop_by_guard(
    session: Session, run: Run, *, tally: RunTally, verdict: GuardVerdict, health: SourceHealth,
    timings: dict[str, float],
) -> Run:  # fmt: skip
    """Record a run the mass-downgrade breaker stopped: its report, nothing published."""
    run.report = {
        "as_of": run.as_of.isoformat(),
        "policy_version": run.policy_version,
        "persons": tally.persons,
        "levels": {level: tally.levels.get(level, 0) for level in LEVELS},
        "guard": {**verdict.as_dict(), "overridden": False},
        **_health_report(health, kept=tally.kept),
        "timings_s": timings,
    }
    run.status = RunStatus.STOPPED_BY_GUARD
    run.finished_at = utcnow()
    session.flush()
    return run


def publish_report(
    session: Session, run: Run, *, tally: RunTally, workflow: WorkflowResult,
    policies: RunPolicies, timings: dict[str, float], health: SourceHealth,
    stored: dict[str, int], verdict: GuardVerdict, override_guard: bool,
) -> Run:  # fmt: skip
    """Record a run published: its report, with the open reviews overdue."""
    # The agency's own delays escalate: every open review past its due date, per grid.
    overdue = overdue_summary(session, as_of=run.as_of)
    run.report = {
        **_report(as_of=run.as_of, tally=tally, workflow=workflow, policies=policies,
                  timings=timings, health=health),
        "overdue_reviews": overdue,
        "assessments": stored,
        "guard": {**verdict.as_dict(), "overridden": verdict.tripped and override_guard},
    }  # fmt: skip
    run.status = RunStatus.PUBLISHED
    run.finished_at = utcnow()
    session.flush()
    return run


def _report(
    *, as_of: dt.date, tally: RunTally, workflow: WorkflowResult, policies: RunPolicies,
    timings: dict[str, float], health: SourceHealth,
) -> dict[str, Any]:  # fmt: skip
    """Summarise a run for operators: levels, reviews, certifications, the list, timings."""
    entries = pd.DataFrame(workflow.entries, columns=["action", "reason", "amount", "status"])
    routing = workflow.routing
    list_summary = {
        f"{action}:{reason}": {"entries": len(group), "amount": str(group["amount"].sum())}
        for (action, reason), group in entries.groupby(
            [entries["action"].astype(str), entries["reason"].astype(str)]
        )
    }
    suspended = entries[entries["action"].astype(str) == "suspend"]
    return {
        "as_of": as_of.isoformat(),
        "policy_version": policies.scoring.version,
        "certification_policy_version": policies.certification.version,
        "health_policy_version": policies.health.version,
        "sources_version": policies.sources_version,
        "persons": tally.persons,
        "traces_in_window": tally.traces,
        "levels": {level: tally.levels.get(level, 0) for level in LEVELS},
        "rules": dict(sorted(tally.rules.items(), key=lambda rule: (-rule[1], rule[0]))),
        "certified": workflow.certified,
        "certified_silently": workflow.certified.get("data_comparison", 0),
        # Of those, strong by the data on a night between runs rather than tonight, and
        # likely alive by the learned estimator (with its guardrails' counts beside).
        "certified_earlier_night": workflow.certified_earlier_night,
        "certified_by_estimator": workflow.certified_by_estimator,
        "estimator": workflow.estimator,
        # Reviews opened before the cycle was due: persons each signal flagged, reviews opened.
        "risk_reviews": workflow.risk_reviews,
        "face_verifications_settled": workflow.face_settled,
        "review_outcomes_applied": workflow.outcomes_applied,
        "tasks_opened": {
            **(routing.opened if routing else {}),
            "death_review": workflow.death_reviews,
        },
        "tasks_closed_by_data": routing.closed_by_data if routing else 0,
        # The home visits planned per grid for the weeks ahead, against each grid's capacity;
        # open visits no week before their due date had room for.
        "visit_plan": {
            **{k: v for k, v in workflow.visit_plan.items() if k != "visits_over_capacity"},
            "opened_over_capacity": routing.visits_late if routing else 0,
        },
        "visits_over_capacity": workflow.visit_plan.get("visits_over_capacity", 0),
        "tasks_cancelled": routing.cancelled if routing else 0,
        "notices": workflow.notices,
        "death_records_refuted": workflow.refuted_death_records,
        "death_records_settled_by_review": workflow.death_records_settled,
        "payment_events": workflow.events,
        # Lapsed people not suspended yet, and why: their notice unsent, its period running,
        # or their review not (yet) failed.
        "lapse_waiting": workflow.lapse_waiting,
        "list": list_summary,
        "held_for_approval": int((entries["status"].astype(str) == "held").sum()),
        "suspensions": len(suspended),
        "overpayment_total": str(
            suspended.loc[suspended["reason"].astype(str) == "deceased", "amount"].sum()
        ),
        "persons_with_traces_after_death": tally.with_traces_after_death,
        "death_records_for_review": tally.death_records_for_review,
        **_health_report(health, kept=tally.kept),
        "trace_sources": list(policies.scoring.sources),
        # Sources that record the same acts agree as one (sources.toml's groups).
        "independence_groups": policies.scoring.group_members,
        "timings_s": timings,
        "first_day_of_window": day_from_number(
            day_number(as_of) - policies.scoring.long + 1
        ).isoformat(),
    }


@dataclass(frozen=True, eq=False)
class GradedSnapshot:
    """A snapshot's roll graded as the run grades it, with what publishing needs of it."""

    grades: Grades
    # Reasons, built for whom they are stored or cited (assessments that changed,
    # certifications, reviews): `assessed["row"]` is each person's place in the grades.
    explain: Explainer
    # The roll with level, rule, score, reasons (None: not built yet), row and certifiable.
    assessed: pd.DataFrame
    gists: npt.NDArray[np.int64]


def grade_snapshot(
    snapshot: EvidenceSnapshot, *, previous: pd.DataFrame, scoring: ScoringPolicy
) -> GradedSnapshot:
    """Grade a snapshot's roll, `previous` holding the levels that stood (`previous_levels`)."""
    roll = snapshot.roll
    grades = grade(
        features=snapshot.features, benefit_type=benefit_type_codes(roll["benefit_type"]),
        death_day=snapshot.death_day, degraded=snapshot.degraded,
        previous_level=previous_level_codes(roll, previous), policy=scoring,
    )  # fmt: skip
    explain = Explainer(
        grades=grades, features=snapshot.features, as_of_day=day_number(snapshot.as_of),
        policy=scoring, post_death=snapshot.post_death,
    )  # fmt: skip
    assessed = roll.assign(
        level=np.asarray(LEVELS, dtype=object)[grades.level],
        rule=np.asarray(RULES, dtype=object)[grades.rule],
        score=grades.score.astype(float).round(4),
        reasons=np.full(len(roll), None, dtype=object),
        row=np.arange(len(roll)),
        certifiable=grades.certifiable,
    )
    gists = assessment_gists(
        grades, post_death=snapshot.post_death, face_pass_day=snapshot.features.face_pass_day
    )
    return GradedSnapshot(grades=grades, explain=explain, assessed=assessed, gists=gists)


def previous_level_codes(roll: pd.DataFrame, previous: pd.DataFrame) -> np.ndarray:
    """Return each roll person's level at the previous run, as a LEVELS index (or NO_LEVEL)."""
    codes = np.full(len(roll), NO_LEVEL, dtype=np.int8)
    where = pd.Index(previous["person_id"].astype("int64")).get_indexer(
        roll["person_id"].astype("int64")
    )
    found = where >= 0
    codes[found] = level_codes(previous["previous"].to_numpy(dtype=object)[where[found]])
    return codes


def _health_report(health: SourceHealth, *, kept: int) -> dict[str, Any]:
    """Return the sources' health for the run report.

    `degraded_sources`: the degraded days of each degraded source; `not_yet_due`: per source,
    the first and last day not judged because its deliveries were not yet due, and how many;
    `kept_by_credit`: how many persons a degraded source's silence kept at their level.
    """
    return {
        "degraded_sources": {
            source: [day.isoformat() for day in days]
            for source, days in health.degraded.items()
            if days
        },
        "not_yet_due": {
            source: {
                "first": first.isoformat(),
                "last": last.isoformat(),
                "days": (last - first).days + 1,
            }
            for source, (first, last) in health.not_yet_due.items()
        },
        "kept_by_credit": kept,
    }
