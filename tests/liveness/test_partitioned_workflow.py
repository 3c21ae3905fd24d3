"""The workflow up to routing, one partition of person ids at a time, equal to the run's.

A run by partitions (docs/PARTITIONED_RUN.md) gives each stage of the workflow its range of
person ids (`Context.persons`). Run for every range in turn in one transaction, settling the
reviews, weighing the proofs of life against the death records, the abrupt stops, the
estimate, certifying and routing must do what they do for everyone at once: the same tasks
closed, opened and planned into weeks (once, after the last range), outcomes taken up, the
same death records recorded, refuted and settled, the same certifications and notices
written, the same proofs, deaths, stops, probabilities and certification ends (kept once,
after the last range), and results that add up to the run's. A stage that read beyond its
range would take another partition's outcomes, queue its proofs or notices twice, keep
another partition's ends as its own or plan visits against another's.

Checked on the simulated city with reviews answered in every way a grid worker can. Over
generated histories, the whole run by ranges is compared with the run of everyone, effect by
effect (`tests/liveness/test_partitioned_run.py`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.certification.kept_ends import keep_ends, kept_ends
from liveness.certification.partitioned import GradingByRange
from liveness.certification.run import grade_snapshot
from liveness.certification.service import read_ends
from liveness.certification.workflow.context import Context, WorkflowResult
from liveness.certification.workflow.estimate import alive_estimate
from liveness.certification.workflow.proofs import certify as certify_stage
from liveness.certification.workflow.proofs import gather_proofs
from liveness.certification.workflow.risk import abrupt_stops
from liveness.certification.workflow.routing import route
from liveness.certification.workflow.settle import OPEN_TASK_STATUSES, settle_reviews
from liveness.db import session_scope
from liveness.evidence.snapshot import take_snapshot
from liveness.review.outcomes import OUTCOMES_BY_KIND, record_outcome
from liveness.review.service import VisitPlanning
from liveness.services import Services
from models import (
    Certification,
    DeathMatch,
    DeathRecord,
    Notice,
    Person,
    RecordStatus,
    ReviewTask,
    Run,
    RunStatus,
    TaskKind,
    VisitOutcome,
)
from tests.liveness.test_run import AS_OF, _certify_city

pytestmark = pytest.mark.slow(seconds=30)

# Frames the stages return, each sorted by these columns so that partitions' rows compare.
_ORDER = {
    "outcomes": ["id"],
    "face_proofs": ["person_id", "day", "source"],
    "face_failures": ["id"],
    "proofs": ["person_id"],
    # By the record, not its row id: a review's death inserted again after a rollback gets a
    # new id on PostgreSQL, whose sequences do not roll back.
    "standing": ["source", "record_id"],
}


@dataclass
class _Stages:
    """What the workflow's stages up to routing returned and changed, read before the rollback."""

    frames: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    visits_asked: set[int] = field(default_factory=set)
    died_on: dict[int, dt.date] = field(default_factory=dict)
    dead: set[int] = field(default_factory=set)
    stops: dict[str, list[np.ndarray]] = field(default_factory=dict)
    probability: list[np.ndarray] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    proof_of_life: set[int] = field(default_factory=set)
    earlier_night: set[int] = field(default_factory=set)
    by_estimator: set[int] = field(default_factory=set)
    ends: list[pd.Series] = field(default_factory=list)
    certified_now: list[np.ndarray] = field(default_factory=list)
    recorded: pd.Series | None = None
    kept_ends: pd.Series | None = None
    tasks: list[tuple[Any, ...]] = field(default_factory=list)
    deaths: list[tuple[Any, ...]] = field(default_factory=list)
    certifications: list[tuple[Any, ...]] = field(default_factory=list)
    notices: list[tuple[Any, ...]] = field(default_factory=list)
    # The run's result: everyone's, or every range's added up (`WorkflowResult.add`).
    result: WorkflowResult = field(default_factory=WorkflowResult)

    def add(self, name: str, frame: pd.DataFrame) -> None:
        """Keep one partition's frame of a stage."""
        self.frames.setdefault(name, []).append(frame)

    def frame(self, name: str) -> pd.DataFrame:
        """Return a stage's frame over every partition, in one order, its dtypes made plain."""
        parts = [part for part in self.frames.get(name, []) if len(part)]
        if not parts:
            return pd.DataFrame()
        frame = pd.concat(parts, ignore_index=True).astype(object)
        frame = frame.sort_values(_ORDER[name], ignore_index=True)
        plain = frame.map(lambda v: repr(v) if isinstance(v, dict | list | set) else v)
        return plain.astype(object)

    def count(self, result: WorkflowResult) -> None:
        """Add one partition's counts of the stages to the others'."""
        routing = result.routing
        assert routing is not None
        named = {
            "face_settled": result.face_settled, "outcomes_applied": result.outcomes_applied,
            "certified": result.certified, "opened": routing.opened,
            "risk_reviews": result.risk_reviews, "notices": result.notices,
        }  # fmt: skip
        for name, counts in named.items():
            total = self.counts.setdefault(name, {})
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value
        for name in ("closed_by_data", "cancelled"):
            self.counts[name] = self.counts.get(name, 0) + getattr(routing, name)
        for name in (
            "death_records_settled", "refuted_death_records", "certified_earlier_night",
            "certified_by_estimator", "death_reviews",
        ):  # fmt: skip
            self.counts[name] = self.counts.get(name, 0) + getattr(result, name)


def _stages_to_routing(services: Services, as_of: dt.date, range_persons: int | None) -> _Stages:
    """Run the workflow's stages up to routing, for everyone or by ranges; roll them back.

    By ranges, the run's certification ends are read once before the first range, each range
    certifies with its slice, and the ends are kept once after the last: as a driver would.
    """
    policies = services.policies
    stages = _Stages()
    with services.sessions() as session:
        run = Run(as_of=as_of, status=RunStatus.RUNNING, policy_version=policies.scoring.version)
        session.add(run)
        session.flush()
        grading = GradingByRange(session, run=run)
        if range_persons is None:
            snapshot = take_snapshot(
                session, as_of=as_of, store=services.store, scoring=policies.scoring,
                health=policies.health,
            )  # fmt: skip
            graded = iter(
                [(snapshot, grade_snapshot(snapshot, previous=grading.previous,
                                           scoring=policies.scoring))]
            )  # fmt: skip
            # As a run of everyone reads them: with the roll's certifications it read.
            ends = read_ends(
                session, policy=policies.certification, roll_certified=snapshot.roll_certified
            )
        else:
            graded = (
                (part.snapshot, part.graded)
                for part in grading.ranges(
                    as_of=as_of, store=services.store, policies=policies,
                    range_persons=range_persons,
                )
            )  # fmt: skip
            ends = read_ends(session, policy=policies.certification)
        recorded = []
        # The new home visits are planned once, after the last range (or everyone).
        planning = VisitPlanning()
        for snapshot, grades in graded:
            context = Context(
                run_id=run.id, as_of=as_of, store=services.store, policy=policies.certification,
                timezone="Asia/Shanghai", scoring=policies.scoring, estimator=policies.estimator,
                explain=grades.explain,
                persons=None if range_persons is None else snapshot.person_range,
            )  # fmt: skip
            result = WorkflowResult()
            settled = settle_reviews(session, context, result)
            findings = gather_proofs(session, context, settled, roll=snapshot.roll, result=result)
            stops = abrupt_stops(
                snapshot, policy=policies.certification.risk, scoring=policies.scoring
            )
            estimate = alive_estimate(session, context, snapshot=snapshot)
            assessed = grades.assessed.assign(
                stopped=stops.held,
                certifiable=grades.assessed["certifiable"].to_numpy() & ~stops.held,
            )
            certified = certify_stage(
                session, context, findings, assessed=assessed, roll=snapshot.roll,
                estimate=estimate, result=result,
                partition_ends=ends if range_persons is None
                else ends.between(*snapshot.person_range),
            )  # fmt: skip
            recorded.append(certified.recorded)
            # What the run knows of the dead is their death: routing sees them deceased.
            levels = assessed.assign(
                level=np.where(
                    assessed["person_id"].isin(findings.dead), "deceased", assessed["level"]
                )
            )
            route(
                session, context, settled, findings, certified, snapshot=snapshot,
                levels=levels, stops=stops, estimate=estimate, result=result,
                planning=planning,
            )  # fmt: skip
            stages.count(result)
            if range_persons is None:
                stages.result = result
            else:
                stages.result.add(result)
            for name in ("outcomes", "face_proofs", "face_failures"):
                stages.add(name, getattr(settled, name))
            stages.add("proofs", findings.proofs)
            stages.add("standing", findings.standing.drop(columns="id"))
            stages.visits_asked |= settled.visits_asked
            stages.died_on.update(findings.died_on.to_dict())
            stages.dead |= findings.dead
            for name in ("silent", "stopped", "last_day", "expected", "held"):
                stages.stops.setdefault(name, []).append(getattr(stops, name))
            stages.probability.append(estimate.probability)
            stages.proof_of_life |= certified.proof_of_life
            stages.earlier_night |= certified.earlier_night
            stages.by_estimator |= certified.by_estimator
            stages.ends.append(certified.ends)
            stages.certified_now.append(certified.certified_now)
        keep_ends(session, pd.concat(recorded).sort_index())
        late = planning.plan(session, run_id=run.id, as_of=as_of, policy=policies.certification)
        if late:
            stages.counts["visits_late"] = late
        assert stages.result.routing is not None
        stages.result.routing = dataclasses.replace(stages.result.routing, visits_late=late)
        stages.recorded = pd.concat(recorded).sort_index()
        kept = kept_ends(session)
        assert kept is not None
        stages.kept_ends = kept[1].sort_index()
        stages.tasks = _tasks(session, run)
        stages.deaths = _deaths(session)
        stages.certifications = _certifications(session, run)
        stages.notices = _notices(session, run)
        session.rollback()
    return stages


def _certifications(session: Session, run: Run) -> list[tuple[Any, ...]]:
    """Return the certifications a run made, without their ids, in one order."""
    rows = session.execute(
        select(Certification.person_id, Certification.source, Certification.mark,
               Certification.certified_on, Certification.valid_until,
               Certification.policy_version, Certification.evidence)
        .where(Certification.run_id == run.id)
    ).all()  # fmt: skip
    return sorted((*row[:6], json.dumps(row.evidence, sort_keys=True)) for row in rows)


def _tasks(session: Session, run: Run) -> list[tuple[Any, ...]]:
    """Return every review task's state, in one order, the run's own id named as such.

    Without their ids: those the run opened again after a rollback get new ones on PostgreSQL.
    """
    rows = session.execute(
        select(ReviewTask.person_id, ReviewTask.kind, ReviewTask.status, ReviewTask.outcome,
               ReviewTask.grid_code, ReviewTask.priority, ReviewTask.opened_on,
               ReviewTask.due_on, ReviewTask.planned_week, ReviewTask.closed_on,
               ReviewTask.cause, ReviewTask.opened_run_id, ReviewTask.closed_run_id,
               ReviewTask.reasons)
    ).all()  # fmt: skip
    ours = {run.id: "this run"}
    return sorted(
        (
            *(str(value) for value in row[:11]),
            str(ours.get(row[11], row[11])),
            str(ours.get(row[12], row[12])),
            json.dumps(row[13], sort_keys=True),
        )
        for row in rows
    )


def _notices(session: Session, run: Run) -> list[tuple[Any, ...]]:
    """Return the notices a run queued, in one order, without their ids or their task's."""
    rows = session.execute(
        select(Notice.person_id, Notice.channel, Notice.template, Notice.body, Notice.status,
               Notice.created_on).where(Notice.run_id == run.id)
    ).all()  # fmt: skip
    return sorted(tuple(str(value) for value in row) for row in rows)


def _deaths(session: Session) -> list[tuple[Any, ...]]:
    """Return every death record's state, by source and record id."""
    rows = session.execute(
        select(DeathRecord.source, DeathRecord.record_id, DeathRecord.person_id,
               DeathRecord.status, DeathRecord.died_on, DeathRecord.settled_by,
               DeathRecord.settled_on, DeathRecord.settlement)
    ).all()  # fmt: skip
    return sorted(tuple(row) for row in rows)


def _same_as_everyone(services: Services, as_of: dt.date, range_persons: int) -> _Stages:
    """Check the stages up to routing by ranges against the same stages for everyone at once."""
    whole = _stages_to_routing(services, as_of, None)
    by_range = _stages_to_routing(services, as_of, range_persons)
    for name in _ORDER:
        pd.testing.assert_frame_equal(by_range.frame(name), whole.frame(name), obj=name)
    assert by_range.visits_asked == whole.visits_asked
    assert by_range.died_on == whole.died_on
    assert by_range.dead == whole.dead
    for name, parts in whole.stops.items():
        np.testing.assert_array_equal(
            np.concatenate(by_range.stops[name]), np.concatenate(parts), err_msg=name
        )
    np.testing.assert_array_equal(
        np.concatenate(by_range.probability), np.concatenate(whole.probability)
    )
    assert by_range.counts == whole.counts
    assert dataclasses.asdict(by_range.result) == dataclasses.asdict(whole.result)
    assert by_range.tasks == whole.tasks
    assert by_range.deaths == whole.deaths
    # Certifying: the same certifications, ends (recorded, merged and kept) and persons.
    assert by_range.certifications == whole.certifications
    assert by_range.notices == whole.notices
    assert by_range.proof_of_life == whole.proof_of_life
    assert by_range.earlier_night == whole.earlier_night
    assert by_range.by_estimator == whole.by_estimator
    pd.testing.assert_series_equal(
        pd.concat(by_range.ends).sort_index(), pd.concat(whole.ends).sort_index()
    )
    np.testing.assert_array_equal(
        np.concatenate(by_range.certified_now), np.concatenate(whole.certified_now)
    )
    assert by_range.recorded is not None and whole.recorded is not None
    pd.testing.assert_series_equal(by_range.recorded, whole.recorded)
    assert by_range.kept_ends is not None and whole.kept_ends is not None
    pd.testing.assert_series_equal(by_range.kept_ends, whole.kept_ends)
    return whole


def _answer(session: Session, task: ReviewTask, outcome: VisitOutcome, on: dt.date) -> None:
    """Record a review's outcome as a grid worker would, on `on`."""
    record_outcome(
        session, task_id=task.id, outcome=str(outcome), actor="grid-7", on=on,
        died_on=on if outcome == VisitOutcome.DECEASED else None,
        region="110105" if outcome == VisitOutcome.MOVED_AWAY else None,
    )  # fmt: skip


def _open_tasks(session: Session) -> list[ReviewTask]:
    """Return the open review tasks, by id."""
    return list(
        session.scalars(
            select(ReviewTask).where(ReviewTask.status.in_(OPEN_TASK_STATUSES))
            .order_by(ReviewTask.id)
        )
    )  # fmt: skip


def _tight_capacity(services: Services) -> Services:
    """Let every grid make two home visits a week: the new visits' plan then ranks them."""
    policies = services.policies
    capacity = dataclasses.replace(policies.certification.capacity, visits_per_week=2, grids={})
    certification = dataclasses.replace(policies.certification, capacity=capacity)
    services.__dict__["policies"] = dataclasses.replace(policies, certification=certification)
    return services


@pytest.fixture(params=["sqlite", "postgresql"])
def answered_city(
    request: pytest.FixtureRequest, city: Path, services_factory: Callable[[str], Services]
) -> Services:
    """The city certified once, then every other open review answered, each outcome in turn."""
    services, _, _ = _certify_city(request.param, city, services_factory)
    with session_scope(services.sessions) as session:
        for number, task in enumerate(_open_tasks(session)[::2]):
            choices = sorted(OUTCOMES_BY_KIND[TaskKind(task.kind)])
            _answer(session, task, VisitOutcome(choices[number % len(choices)]), AS_OF)
    return _tight_capacity(services)


@pytest.mark.parametrize("range_persons", [37, 10_000])
def test_the_stages_to_routing_by_range_are_everyones(
    answered_city: Services, range_persons: int
) -> None:
    whole = _same_as_everyone(answered_city, AS_OF, range_persons)
    # The city's reviews were answered in every way: outcomes were taken up, deaths found.
    assert sum(whole.counts["outcomes_applied"].values()) > 5
    assert len(whole.counts["outcomes_applied"]) > 3
    assert whole.dead
    # Reviews were opened, and more home visits than a week has room for: the plan ranked them.
    assert whole.counts["opened"]["home_visit"] > 2 * len({t[4] for t in whole.tasks})
    assert whole.counts.get("visits_late", 0) > 0


def record_cremation(
    services: Services, *, pick: int, number: int, as_of: dt.date, days_ago: int
) -> None:
    """Record the cremation of a person picked by `pick`, `days_ago` before `as_of`."""
    with session_scope(services.sessions) as session:
        persons = session.execute(select(Person.id, Person.id_number)).all()
        person = persons[pick % len(persons)]
        session.add(
            DeathRecord(
                source="cremation", record_id=f"generated-{number}", id_number=person.id_number,
                id_status="valid", died_on=as_of - dt.timedelta(days=days_ago),
                recorded_on=as_of, person_id=person.id, match=DeathMatch.ID_NUMBER,
                confidence=1.0, status=RecordStatus.ACTIVE,
            )
        )  # fmt: skip
