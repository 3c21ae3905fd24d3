"""A run plans its home visits into weeks within each grid's capacity, face verification first."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import delete, select, update

from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.review.outcomes import record_outcome
from liveness.review.service import VisitPlanning, face_failed_lately, face_first, route_reviews
from liveness.services import Services
from liveness.settings import Settings
from liveness.simulate.identity import compose_id17, full_id_numbers
from liveness.views.worker_queue import worker_queue
from models import (
    Certification,
    CertificationSource,
    Person,
    ReviewTask,
    Run,
    TaskKind,
    TaskStatus,
)
from tests.liveness.review.test_priority import policy_copy

AS_OF = dt.date(2025, 4, 10)  # a Thursday: the week of Monday 04-07
MONDAY = dt.date(2025, 4, 7)
HEADER = (
    "person_ref,id_number,name,sex,birth_date,benefit_type,monthly_amount,benefit_start,"
    "region_code,grid_code,status,last_certified_on,phone\n"
)
# Certified 2024-05-20: their reviews are due on AS_OF (just in time: 50 days before the
# certification ends on 2025-05-20, on 03-31).
# Nobody has a trace: everyone is weak, everyone lives in the agency's area (3307).
# G1: ten people without a phone (monthly amounts 1010 .. 1100: their visits' values) and
# three with one; G2: four without.
G1_VISITS = [(f"V{n}", "G1", 1000 + 10 * n, "") for n in range(1, 11)]
G1_PHONES = [(f"F{n}", "G1", 2000 + n, "1380000000{n}") for n in range(1, 4)]
G2_VISITS = [(f"W{n}", "G2", 1500 + n, "") for n in range(1, 5)]
PEOPLE = G1_VISITS + G1_PHONES + G2_VISITS
# Two visits a week in G1 (the default), three in G2 (its own).
CAPACITY = {"visits_per_week = 25": "visits_per_week = 2", '# "G0317" = 40': '"G2" = 3'}


def _registry() -> str:
    bodies = compose_id17(
        region=np.full(len(PEOPLE), 330702, dtype=np.int64),
        birth_ymd=np.full(len(PEOPLE), 19500101, dtype=np.int64),
        seq=np.arange(len(PEOPLE), dtype=np.int64) * 2 + 1,  # odd: men
    )
    rows = [
        f"{ref},{number},张{ref},M,1950-01-01,enterprise_pension,{amount}.00,2010-01-01,"
        f"330702,{grid},active,2024-05-20,{phone}\n"
        for (ref, grid, amount, phone), number in zip(PEOPLE, full_id_numbers(bodies), strict=True)
    ]
    return HEADER + "".join(rows)


def _services(url: str, config: Path, folder: Path) -> Services:
    """Return services on `config` with the roll delivered."""
    folder.mkdir()
    services = Services(Settings(database_url=url, evidence_dir=folder / "evidence",
                                 config_dir=config))  # fmt: skip
    upgrade(services.engine)
    path = folder / "registry.csv"
    path.write_text(_registry(), encoding="utf-8")
    (report,) = ingest_paths(services, source="registry", paths=[path])
    assert report.error is None and report.quarantined == 0, report
    return services


def _run(services: Services, day: dt.date) -> dict[str, Any]:
    run = execute_run(services, as_of=day)
    assert run.status == "published", run.report.get("guard")
    with session_scope(services.sessions) as session:
        return dict(session.get_one(Run, run.id).report)


def _tasks(services: Services) -> dict[str, ReviewTask]:
    with session_scope(services.sessions) as session:
        rows = session.execute(
            select(Person.person_ref, ReviewTask).join(Person, Person.id == ReviewTask.person_id)
        ).all()
        session.expunge_all()
    return {ref: task for ref, task in rows}


@pytest.fixture(params=["sqlite", "postgresql"])
def first_run(
    request: pytest.FixtureRequest, database_url_factory: Callable[[str], str], tmp_path: Path
) -> tuple[Services, dict[str, Any]]:
    """Return the world after its first run at two visits a week in G1 and three in G2."""
    services = _services(database_url_factory(request.param), policy_copy(tmp_path, CAPACITY),
                         tmp_path / "world")  # fmt: skip
    return services, _run(services, AS_OF)


def test_a_run_plans_visits_within_capacity(first_run: tuple[Services, dict[str, Any]]) -> None:
    services, report = first_run
    tasks = _tasks(services)
    assert set(tasks) == {ref for ref, *_ in PEOPLE}
    # Weak people with a phone are asked for a face verification first; the others visited.
    kinds = {ref: str(task.kind) for ref, task in tasks.items()}
    assert {ref for ref, kind in kinds.items() if kind == TaskKind.FACE_VERIFICATION} == {
        ref for ref, *_ in G1_PHONES
    }
    assert all(tasks[ref].planned_week is None for ref, *_ in G1_PHONES)
    visits = {ref: task for ref, task in tasks.items() if task.kind == TaskKind.HOME_VISIT}
    # The deadline is unchanged; the plan is a Monday.
    assert {task.due_on for task in visits.values()} == {AS_OF + dt.timedelta(days=30)}
    assert all(task.planned_week.weekday() == 0 for task in visits.values())  # type: ignore[union-attr]
    per_week = Counter((task.grid_code, task.planned_week) for task in visits.values())
    week = [MONDAY + dt.timedelta(weeks=n) for n in range(8)]
    # G1: two a week in the four weeks that end by the due date (Saturday 05-10), most
    # valuable first; its two least valuable fit none: planned the week after, flagged.
    assert [per_week["G1", monday] for monday in week] == [2, 2, 2, 2, 2, 0, 0, 0]
    planned = sorted(G1_VISITS, key=lambda person: -person[2])
    for rank, (ref, *_) in enumerate(planned):
        assert visits[ref].planned_week == week[rank // 2], ref
    # G2 at its own capacity of three.
    assert [per_week["G2", monday] for monday in week[:3]] == [3, 1, 0]

    plan = report["visit_plan"]
    assert plan["weeks"] == [monday.isoformat() for monday in week]
    assert plan["grids"]["G1"] == {
        "capacity": 2, "planned": [2, 2, 2, 2, 2, 0, 0, 0], "late": [0, 0, 0, 0, 2, 0, 0, 0],
        "done": 0, "late_total": 2,
    }  # fmt: skip
    assert plan["grids"]["G2"]["planned"][:2] == [3, 1] and plan["grids"]["G2"]["capacity"] == 3
    assert plan["weeks_over_capacity"] == []
    assert report["visits_over_capacity"] == plan["opened_over_capacity"] == 2
    # Planning suspends nobody: the visits over capacity are the agency's delay.
    assert report["suspensions"] == 0

    # The worker's queue lists this week's tasks first, then week by week, by priority.
    with session_scope(services.sessions) as session:
        rows, total = worker_queue(
            session, grids=["G1"], now=dt.datetime(2025, 4, 10, 8, tzinfo=dt.UTC), today=AS_OF,
            kind=str(TaskKind.HOME_VISIT), limit=None, offset=0,
        )  # fmt: skip
    assert total == 10
    assert [row.person_ref for row in rows] == [ref for ref, *_ in planned]
    assert [row.planned_week for row in rows] == [week[n // 2] for n in range(10)]

    # A grid worker visits the most valuable person on Wednesday of the next week. That
    # week's run opens nothing new and moves no plan; the visit done counts in its week, and
    # so does the other visit of the week before, still open: more than two.
    with session_scope(services.sessions) as session:
        record_outcome(session, task_id=visits["V10"].id, outcome="alive_confirmed",
                       actor="worker-1", on=dt.date(2025, 4, 16))  # fmt: skip
    again = _run(services, AS_OF + dt.timedelta(days=7))
    assert {ref: task.planned_week for ref, task in _tasks(services).items()} == {
        ref: task.planned_week for ref, task in tasks.items()
    }
    g1 = again["visit_plan"]["grids"]["G1"]
    assert (g1["planned"], g1["done"]) == ([3, 2, 2, 2, 0, 0, 0, 0], 1)
    assert again["visit_plan"]["weeks_over_capacity"] == [
        {"grid": "G1", "week": week[1].isoformat(), "planned": 3, "done": 1, "capacity": 2},
        {"grid": "G2", "week": week[1].isoformat(), "planned": 4, "done": 0, "capacity": 3},
    ]
    assert again["suspensions"] == 0 and again["visit_plan"]["opened_over_capacity"] == 0


def test_face_first_only_without_a_failed_face_verification_since_other_than_a_visit(
    first_run: tuple[Services, dict[str, Any]],
) -> None:
    services, _ = first_run
    tasks = _tasks(services)
    refs = ["F1", "F2", "F3", "V1"]
    with session_scope(services.sessions) as session:
        ids = {ref: pid for ref, pid in session.execute(select(Person.person_ref, Person.id))}

        def able() -> set[str]:
            persons = pd.Series([ids[ref] for ref in refs])
            found = face_first(session, persons=persons)
            return {ref for ref in refs if ids[ref] in found}

        # A phone on the roll, no face verification failed: V1 has no phone.
        assert able() == {"F1", "F2", "F3"}
        # F1 failed theirs, F2 ignored theirs (lapsed) this cycle: a visit, not another try.
        for ref, outcome in (("F1", "face_failed"), ("F2", "lapsed")):
            session.execute(
                update(ReviewTask).where(ReviewTask.id == tasks[ref].id)
                .values(status=TaskStatus.DONE, outcome=outcome, closed_on=AS_OF)
            )  # fmt: skip
        assert able() == {"F3"}
        # Certified since (a new cycle), F1 may verify remotely first again.
        session.add(
            Certification(
                person_id=ids["F1"], source=CertificationSource.DATA_COMPARISON,
                mark="certified", certified_on=AS_OF + dt.timedelta(days=1),
                valid_until=AS_OF + dt.timedelta(days=366),
            )
        )  # fmt: skip
        session.flush()
        assert able() == {"F1", "F3"}
        # F2's ignored request was followed by the visit that certified F2: next cycle F2 is
        # visited directly (the try came to nothing), however long after it the visit came
        # (monthly runs see a lapse and a visit's outcome a month late), and after more
        # visits; a certification by other means starts afresh.
        for days in (30, 61, 400):
            session.add(
                Certification(
                    person_id=ids["F2"], source=CertificationSource.VISIT, mark="certified",
                    certified_on=AS_OF + dt.timedelta(days=days),
                    valid_until=AS_OF + dt.timedelta(days=days + 365),
                )
            )  # fmt: skip
            session.flush()
            assert able() == {"F1", "F3"}
        session.add(
            Certification(
                person_id=ids["F2"], source=CertificationSource.PROXY, mark="certified",
                certified_on=AS_OF + dt.timedelta(days=500),
                valid_until=AS_OF + dt.timedelta(days=865),
            )
        )  # fmt: skip
        session.flush()
        assert able() == {"F1", "F2", "F3"}


def _route_medium(
    services: Services, refs: list[str], *, day: dt.date, outside: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Route `refs` as medium people due for renewal on `day`; return each new task's kind."""
    with session_scope(services.sessions) as session:
        ids = {ref: pid for ref, pid in session.execute(select(Person.person_ref, Person.id))}
        assessed = pd.DataFrame({
            "person_id": [ids[ref] for ref in refs],
            "grid_code": "G1",
            "region_code": ["440100" if ref in outside else "330702" for ref in refs],
            "level": "medium", "certifiable": False, "score": 0.5, "monthly_amount": 1000.0,
            "reasons": [{"level": "medium"} for _ in refs],
        })  # fmt: skip
        route_reviews(
            session, run_id=session.scalar(select(Run.id)), as_of=day, assessed=assessed,
            policy=services.certification_policy, due={ids[ref] for ref in refs},
            planning=VisitPlanning(),
        )  # fmt: skip
        opened = session.execute(
            select(Person.person_ref, ReviewTask.kind)
            .join(Person, Person.id == ReviewTask.person_id)
            .where(ReviewTask.opened_on == day)
        ).all()  # fmt: skip
    return {ref: str(kind) for ref, kind in opened}


@pytest.mark.parametrize(
    ("backend", "switch"), [("sqlite", True), ("postgresql", True), ("sqlite", False)]
)
def test_a_medium_person_whose_face_verification_came_to_nothing_is_visited_at_once(
    database_url_factory: Callable[[str], str], tmp_path: Path, backend: str, switch: bool
) -> None:
    changes = dict(CAPACITY)
    if not switch:
        changes["visit_first_after_failed_face = true"] = "visit_first_after_failed_face = false"
    services = _services(database_url_factory(backend), policy_copy(tmp_path, changes),
                         tmp_path / "world")  # fmt: skip
    _run(services, AS_OF)
    tasks = _tasks(services)
    # F1 failed their face verification, F2 ignored theirs, F3 passed; V1 was visited: those
    # tasks are done, the others cancelled.
    outcomes = {"F1": "face_failed", "F2": "lapsed", "F3": "face_passed", "V1": "alive_confirmed"}
    with session_scope(services.sessions) as session:
        for ref, outcome in outcomes.items():
            session.execute(
                update(ReviewTask).where(ReviewTask.id == tasks[ref].id)
                .values(status=TaskStatus.DONE, outcome=outcome, closed_on=AS_OF)
            )  # fmt: skip
        session.execute(
            update(ReviewTask).where(ReviewTask.status == TaskStatus.OPEN)
            .values(status=TaskStatus.CANCELLED, closed_on=AS_OF)
        )  # fmt: skip
    later = AS_OF + dt.timedelta(days=20)
    # Medium and due: another request would come to nothing for F1 and F2, visited at once,
    # unless they now live outside the area, where nobody can visit (F2 here); F3 and V1
    # (whose visit followed no remote try) are asked to verify remotely.
    for outside in (frozenset(), frozenset({"F2"})):
        with session_scope(services.sessions) as session:
            session.execute(
                update(ReviewTask).where(ReviewTask.status == TaskStatus.OPEN)
                .values(status=TaskStatus.CANCELLED, closed_on=later)
            )  # fmt: skip
        kinds = _route_medium(services, ["F1", "F2", "F3", "V1"], day=later, outside=outside)
        face, visit = str(TaskKind.FACE_VERIFICATION), str(TaskKind.HOME_VISIT)
        expected = {"F1": visit, "F2": face if outside else visit, "F3": face, "V1": face}
        if not switch:
            expected = dict.fromkeys(expected, face)
        assert kinds == expected
        later += dt.timedelta(days=1)


def test_face_first_is_a_policy_switch(
    database_url_factory: Callable[[str], str], tmp_path: Path
) -> None:
    switched = {**CAPACITY, "face_first_for_weak = true": "face_first_for_weak = false"}
    services = _services(database_url_factory("sqlite"), policy_copy(tmp_path, switched),
                         tmp_path / "world")  # fmt: skip
    report = _run(services, AS_OF)
    assert report["tasks_opened"] == {"home_visit": 17, "death_review": 0}
    # Thirteen visits in G1: the phone owners' values (2001 .. 2003) come first.
    tasks = _tasks(services)
    assert {tasks[ref].planned_week for ref, *_ in G1_PHONES} == {
        MONDAY,
        MONDAY + dt.timedelta(weeks=1),
    }
    assert report["visits_over_capacity"] == 5


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_who_tried_in_vain_follows_any_history_of_tries_and_certifications(
    database_url_factory: Callable[[str], str], tmp_path: Path, backend: str
) -> None:
    """A state machine adds face tries and certifications; a model says who tried in vain."""
    services = _services(database_url_factory(backend), policy_copy(tmp_path, CAPACITY),
                         tmp_path / "world")  # fmt: skip
    refs = ["F1", "F2", "V1", "V2"]  # F: a phone on the roll; V: none
    with session_scope(services.sessions) as session:
        ids = {ref: pid for ref, pid in session.execute(select(Person.person_ref, Person.id))}
    persons = pd.Series([ids[ref] for ref in refs])
    days = st.integers(0, 400).map(lambda n: AS_OF + dt.timedelta(days=n))

    class Histories(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            # The model: per person, non-visit certification days and failed tries' days.
            self.certified: dict[str, list[dt.date]] = {ref: [] for ref in refs}
            self.failed: dict[str, list[dt.date]] = {ref: [] for ref in refs}
            with session_scope(services.sessions) as session:
                session.execute(delete(ReviewTask))
                session.execute(delete(Certification))

        @rule(ref=st.sampled_from(refs), source=st.sampled_from(list(CertificationSource)),
              day=days)  # fmt: skip
        def certify(self, ref: str, source: CertificationSource, day: dt.date) -> None:
            with session_scope(services.sessions) as session:
                session.add(
                    Certification(
                        person_id=ids[ref], source=source, mark="certified", certified_on=day,
                        valid_until=day + dt.timedelta(days=365),
                    )
                )  # fmt: skip
            if source != CertificationSource.VISIT:
                self.certified[ref].append(day)

        @rule(ref=st.sampled_from(refs),
              outcome=st.sampled_from(["face_failed", "lapsed", "face_passed"]), day=days)  # fmt: skip
        def face_try(self, ref: str, outcome: str, day: dt.date) -> None:
            with session_scope(services.sessions) as session:
                session.add(
                    ReviewTask(
                        person_id=ids[ref], kind=TaskKind.FACE_VERIFICATION,
                        status=TaskStatus.DONE, grid_code="G1", priority=0.0, opened_on=day,
                        due_on=day + dt.timedelta(days=15), closed_on=day, outcome=outcome,
                        cause="renewal",
                    )
                )  # fmt: skip
            if outcome != "face_passed":
                self.failed[ref].append(day)

        @invariant()
        def tried_in_vain_as_the_model_says(self) -> None:
            expected = {
                ref for ref in refs
                if any(not self.certified[ref] or tried >= max(self.certified[ref])
                       for tried in self.failed[ref])
            }  # fmt: skip
            with session_scope(services.sessions) as session:
                vain = face_failed_lately(session, persons=persons)
                first = face_first(session, persons=persons)
            assert {ref for ref in refs if ids[ref] in vain} == expected
            assert {ref for ref in refs if ids[ref] in first} == {"F1", "F2"} - expected

    run_state_machine_as_test(
        Histories,
        settings=settings(max_examples=25, stateful_step_count=12, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )  # fmt: skip
