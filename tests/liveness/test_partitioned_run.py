"""A run by ranges of person ids is the run of everyone at once: every effect, the list's order.

`certify_by_partitions` (what `liveness run` does where `LIVENESS_RUN_PARTITION_PERSONS` is
set) takes, grades and publishes one range of person ids at a time in one transaction. Its
effects must be those of `certify` for everyone: the list's entries with their sequence
numbers (every benefit's events in benefit-id order, then the lapses and deaths that stood,
across the ranges), every benefit's payment state, the assessments written and kept, the
certifications and their ends, the review tasks, their plan into weeks and the notices, the
death records, the integrity leads of duplicate identities, and the report. A guard that
trips on the sum of the ranges' downgrades publishes nothing, and a run killed between two
ranges publishes nothing either.

Checked on the simulated city with reviews answered in every way, and over generated
histories: a Hypothesis state machine runs nights some days apart, by ranges of any size
against the run of everyone, and publishes the run by ranges; between nights it loses
sources, answers reviews, records deaths and withdraws them, and links persons of different
ranges as one identity.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from liveness.certification.assessments import standing_assessments
from liveness.certification.kept_ends import kept_ends
from liveness.certification.partitioned import certify_by_partitions
from liveness.certification.run import certify
from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.review.outcomes import OUTCOMES_BY_KIND
from liveness.services import Services
from models import (
    Benefit,
    DeathRecord,
    Deregistration,
    EvidencePart,
    IntegrityLead,
    ListEntry,
    Person,
    RecordStatus,
    Run,
    RunStatus,
    TaskKind,
    VisitOutcome,
)
from tests.liveness.test_partitioned import _assessments
from tests.liveness.test_partitioned_workflow import (
    _answer,
    _certifications,
    _deaths,
    _notices,
    _open_tasks,
    _tasks,
    _tight_capacity,
    answered_city,  # noqa: F401  (a fixture)
    record_cremation,
)
from tests.liveness.test_run import AS_OF, _certify_city

pytestmark = pytest.mark.slow(seconds=30)

_OPEN = ("open", "in_progress")


def _effects(session: Session, run: Run) -> dict[str, Any]:
    """Return everything a run changed or wrote, without ids a rerun gets anew, and its report."""
    entries = session.execute(
        select(ListEntry).where(ListEntry.run_id == run.id).order_by(ListEntry.seq)
    ).scalars().all()  # fmt: skip
    seq_of = {entry.id: entry.seq for entry in entries}
    listed = [
        (entry.seq, entry.person_id, entry.benefit_id, str(entry.action), str(entry.reason),
         str(entry.event), entry.effective_on, str(entry.amount), str(entry.status),
         entry.caused_by, json.dumps(entry.detail, sort_keys=True))
        for entry in entries
    ]  # fmt: skip
    columns = [c for c in Benefit.__table__.columns if c.name not in {"created_at", "updated_at"}]
    benefits = sorted(
        tuple(
            # The entry a benefit waits on, by its place in the list (ids are the database's).
            seq_of.get(value, ("earlier", value)) if column.name == "held_entry_id"
            else str(value)
            for column, value in zip(columns, row, strict=True)
        )
        for row in session.execute(select(*columns)).all()
    )  # fmt: skip
    leads = sorted(
        (lead.rule, lead.key, lead.region_code, json.dumps(lead.person_refs),
         json.dumps(lead.evidence, sort_keys=True), str(lead.amount_at_risk), str(lead.status),
         lead.found_on)
        for lead in session.scalars(select(IntegrityLead))
    )  # fmt: skip
    kept = kept_ends(session)
    # Without how long it took, and how it was made (a run by ranges says so).
    report = {
        key: value for key, value in (run.report or {}).items()
        if key not in {"timings_s", "ranges"}
    }  # fmt: skip
    return {
        "status": str(run.status),
        "report": json.loads(json.dumps(report, sort_keys=True, default=str)),
        "list": listed,
        "benefits": benefits,
        "assessments": _assessments(session, run),
        "standing": standing_assessments(session, run=run).to_dict("list")
        if run.status == RunStatus.PUBLISHED else None,
        "kept_ends": None if kept is None else kept[1].sort_index().to_dict(),
        "certifications": _certifications(session, run),
        "tasks": _tasks(session, run),
        "notices": _notices(session, run),
        "deaths": _deaths(session),
        "leads": leads,
    }  # fmt: skip


def _run(
    services: Services, as_of: dt.date, range_persons: int | None, *, override: bool,
    publish: bool,
) -> dict[str, Any]:  # fmt: skip
    """Run as of `as_of`, by ranges or for everyone; return its effects, then keep or undo it."""
    with services.sessions() as session:
        arguments = {
            "as_of": as_of, "store": services.store, "policies": services.policies,
            "override_guard": override,
        }  # fmt: skip
        if range_persons is None:
            run = certify(session, **arguments)
        else:
            run = certify_by_partitions(session, range_persons=range_persons, **arguments)
        effects = _effects(session, run)
        if publish:
            session.commit()
        else:
            session.rollback()
    return effects


def _differences(by_range: dict[str, Any], whole: dict[str, Any]) -> dict[str, Any]:
    """Return, per kind of effect that differs, its first few differences."""
    found: dict[str, Any] = {}
    for name, value in whole.items():
        mine = by_range[name]
        if mine == value:
            continue
        if isinstance(value, list) and isinstance(mine, list):
            found[name] = {
                "only by range": [r for r in mine if r not in value][:3],
                "only whole": [r for r in value if r not in mine][:3],
            }
        else:
            found[name] = (mine, value)
    return found


def the_run_by_ranges_is_the_run(
    services: Services, as_of: dt.date, range_persons: int
) -> dict[str, Any]:
    """Check a run by ranges against the run of everyone; publish the run by ranges.

    A run the guard stops is compared stopped, then both are run again with the guard
    overridden, as an operator would. Returns the published run's effects.
    """
    whole = _run(services, as_of, None, override=False, publish=False)
    tripped = whole["status"] == str(RunStatus.STOPPED_BY_GUARD)
    by_range = _run(services, as_of, range_persons, override=False, publish=not tripped)
    assert not _differences(by_range, whole)
    if tripped:
        assert not by_range["list"] and not by_range["assessments"]
        whole = _run(services, as_of, None, override=True, publish=False)
        by_range = _run(services, as_of, range_persons, override=True, publish=True)
        assert not _differences(by_range, whole)
    assert whole["status"] == str(RunStatus.PUBLISHED)
    return whole


def _link_identities(services: Services, *, pick: int, other: int, number: int) -> None:
    """Cancel one person's number as replaced by another's of the same benefit type."""
    with session_scope(services.sessions) as session:
        drawing = session.execute(
            select(Benefit.person_id, Benefit.benefit_type).order_by(Benefit.id)
        ).all()  # fmt: skip
        person, kind = drawing[pick % len(drawing)]
        same = [p for p, k in drawing if k == kind and p != person]
        if not same:
            return
        holder = session.get_one(Person, same[other % len(same)])
        session.add(
            Deregistration(
                record_id=f"generated-{number}", id_number=None, deregistered_on=AS_OF,
                reason="replaced", new_id_number=holder.id_number, person_id=person,
                status=RecordStatus.ACTIVE,
            )
        )  # fmt: skip


@pytest.mark.parametrize("range_persons", [100, 10_000])
def test_a_run_by_ranges_is_the_run(
    answered_city: Services,  # noqa: F811
    range_persons: int,
) -> None:
    services = answered_city
    # Persons far apart in the ids, linked as one identity: a duplicate across the ranges.
    _link_identities(services, pick=3, other=-1, number=1)
    _link_identities(services, pick=-5, other=0, number=2)
    as_of = AS_OF + dt.timedelta(days=1)
    for number, pick in enumerate((11, 500, 1200), start=3):
        record_cremation(services, pick=pick, number=number, as_of=as_of, days_ago=30)
    whole = the_run_by_ranges_is_the_run(services, as_of, range_persons)
    events = whole["report"]["payment_events"]
    assert events["death"] >= 3 and events["duplicate_identity"] == 2
    with session_scope(services.sessions) as session:
        made = session.scalars(select(Run).order_by(Run.id.desc()).limit(1)).one()
        top = session.scalar(select(func.max(Person.id)))
        assert made.report["ranges"] == {
            "persons": range_persons,
            "count": top // range_persons + 1,
        }
    assert whole["leads"]
    # Half a year on, the deaths stand, in every range (the list's second phase), and a new
    # death in the last range comes before them all (its first): the list's order is the run's.
    later = as_of + dt.timedelta(days=services.policies.certification.terminate_after_death_days)
    record_cremation(services, pick=1450, number=6, as_of=later, days_ago=3)
    whole = the_run_by_ranges_is_the_run(services, later, range_persons)
    events = whole["report"]["payment_events"]
    assert events["death"] >= 1 and events["death_stood"] > 3
    listed = [(row[0], row[5]) for row in whole["list"]]
    assert listed[0][1] == "death" and listed[-1][1] == "death_stood"


def test_a_guard_that_trips_on_the_ranges_sum_publishes_nothing(
    answered_city: Services,  # noqa: F811
) -> None:
    services = answered_city
    with session_scope(services.sessions) as session:
        # The data is gone, the people are not: many would be lowered, across every range.
        session.execute(delete(EvidencePart).where(EvidencePart.source == "transit"))
    whole = the_run_by_ranges_is_the_run(services, AS_OF + dt.timedelta(days=1), 37)
    assert whole["report"]["guard"]["overridden"] is True


class _Killed(Exception):
    """The run's process dying between two ranges."""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_run_killed_between_ranges_publishes_nothing_and_its_rerun_is_the_run(
    backend: str, city: Path, services_factory: Callable[[str], Services]
) -> None:
    services, first, _ = _certify_city(backend, city, services_factory)
    as_of = AS_OF + dt.timedelta(days=1)
    whole = _run(services, as_of, None, override=False, publish=False)
    services.settings = services.settings.model_copy(update={"run_partition_persons": 37})
    with session_scope(services.sessions) as session:
        before = _effects(session, session.get_one(Run, first.id))
    published = 0

    def die_after_two_ranges(moment: str) -> None:
        nonlocal published
        published += moment == "after publish"
        if published == 2:
            raise _Killed

    with pytest.raises(_Killed):
        execute_run(services, as_of=as_of, checkpoint=die_after_two_ranges)
    with session_scope(services.sessions) as session:
        killed = session.scalars(select(Run).where(Run.id > first.id)).one()
        assert killed.status == RunStatus.FAILED
        assert _effects(session, killed)["list"] == []
        assert _effects(session, killed)["assessments"] == []
        # Nothing else moved: the benefits, tasks, death records and leads are the first run's.
        after = _effects(session, session.get_one(Run, first.id))
    assert not _differences(after, before)
    rerun = execute_run(services, as_of=as_of)
    with session_scope(services.sessions) as session:
        again = _effects(session, session.get_one(Run, rerun.id))
    # Sequence numbers included: the killed run's were given back with it.
    assert again["list"] == whole["list"] and again["benefits"] == whole["benefits"]
    assert again["report"] == whole["report"]


# Nights 0 to 40 days apart, 40 first (the simplest example's: lapses and deaths that
# stood come after weeks). Ranges of 300 persons (5 ranges on the city: 37 costs a night
# seven seconds), 120 or everyone in one.
NIGHTS = st.sampled_from([40, 1, 14, 0, 30, 7])
RANGES = st.sampled_from([300, 120, 10_000])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_over_generated_nights_a_run_by_ranges_is_the_run(
    backend: str, city: Path, services_factory: Callable[[str], Services]
) -> None:
    # Nights some days apart, by ranges of any size against the run of everyone; between
    # them sources lost, reviews answered in any way, deaths recorded and withdrawn, and
    # persons of different ranges linked as one identity.

    class Nights(RuleBasedStateMachine):
        """Every step changes something, or nothing, then runs a night: the check."""

        def __init__(self) -> None:
            super().__init__()
            services, _, _ = _certify_city(backend, city, services_factory)
            self.services = _tight_capacity(services)
            self.as_of = AS_OF
            self.records = 0

        @initialize()
        def news(self) -> None:
            """Deaths, duplicate identities across ranges, and reviews answered in every way."""
            for pick in (11, 500, 1200, 1400):
                self.records += 1
                record_cremation(
                    self.services, pick=pick, number=self.records, as_of=self.as_of, days_ago=9
                )
            for pick, other in ((3, -1), (-5, 0)):
                self.records += 1
                _link_identities(self.services, pick=pick, other=other, number=self.records)
            with session_scope(self.services.sessions) as session:
                for number, task in enumerate(_open_tasks(session)[::2]):
                    choices = sorted(OUTCOMES_BY_KIND[TaskKind(task.kind)])
                    _answer(session, task, VisitOutcome(choices[number % len(choices)]), AS_OF)

        def night(self, days: int, range_persons: int) -> None:
            self.as_of += dt.timedelta(days=days)
            whole = the_run_by_ranges_is_the_run(self.services, self.as_of, range_persons)
            for name, count in whole["report"]["payment_events"].items():
                event(f"{name} {'some' if count else 'none'}")

        @rule(days=NIGHTS, range_persons=RANGES)
        def nothing(self, days: int, range_persons: int) -> None:
            self.night(days, range_persons)

        @rule(source=st.sampled_from(["transit", "card_txn", "medical"]), days=NIGHTS,
              range_persons=RANGES)  # fmt: skip
        def lose_source(self, source: str, days: int, range_persons: int) -> None:
            with session_scope(self.services.sessions) as session:
                session.execute(delete(EvidencePart).where(EvidencePart.source == source))
            self.night(days, range_persons)

        @rule(pick=st.integers(min_value=0), choice=st.integers(min_value=0),
              many=st.integers(1, 8), days=NIGHTS, range_persons=RANGES)  # fmt: skip
        def answer_reviews(
            self, pick: int, choice: int, many: int, days: int, range_persons: int
        ) -> None:
            with session_scope(self.services.sessions) as session:
                tasks = _open_tasks(session)
                for k in range(min(many, len(tasks))):
                    task = tasks[(pick + k * 7) % len(tasks)]
                    if str(task.status) not in _OPEN:
                        continue
                    choices = sorted(OUTCOMES_BY_KIND[TaskKind(task.kind)])
                    outcome = VisitOutcome(choices[(choice + k) % len(choices)])
                    _answer(session, task, outcome, max(self.as_of, task.opened_on))
            self.night(days, range_persons)

        @rule(picks=st.lists(st.integers(min_value=0), min_size=1, max_size=4),
              days_ago=st.integers(0, 60), days=NIGHTS, range_persons=RANGES)  # fmt: skip
        def record_deaths(
            self, picks: list[int], days_ago: int, days: int, range_persons: int
        ) -> None:
            for pick in picks:
                self.records += 1
                record_cremation(
                    self.services, pick=pick, number=self.records, as_of=self.as_of,
                    days_ago=days_ago,
                )  # fmt: skip
            self.night(days, range_persons)

        @rule(pick=st.integers(min_value=0), days=NIGHTS, range_persons=RANGES)
        def withdraw_death(self, pick: int, days: int, range_persons: int) -> None:
            with session_scope(self.services.sessions) as session:
                acting = session.scalars(
                    select(DeathRecord.id).where(DeathRecord.status == RecordStatus.ACTIVE)
                    .order_by(DeathRecord.id)
                ).all()  # fmt: skip
                if acting:
                    session.execute(
                        update(DeathRecord).where(DeathRecord.id == acting[pick % len(acting)])
                        .values(status=RecordStatus.VOIDED)
                    )  # fmt: skip
            self.night(days, range_persons)

        @rule(pick=st.integers(min_value=0), other=st.integers(min_value=0), days=NIGHTS,
              range_persons=RANGES)  # fmt: skip
        def link_identities(self, pick: int, other: int, days: int, range_persons: int) -> None:
            self.records += 1
            _link_identities(self.services, pick=pick, other=other, number=self.records)
            self.night(days, range_persons)

    run_state_machine_as_test(
        Nights, settings=settings(max_examples=3, stateful_step_count=7, deadline=None)
    )
