"""A face verification in a grid worker's hands: assisted (passed or failed) or turned into a visit.

The three-person roll of `test_workflow`: nobody leaves a trace, so P1 and P2 (certified until
2025-06-01) are weak and visited; a visit that finds nobody leads to a face verification.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from liveness.db import session_scope
from liveness.review.outcomes import (
    OUTCOMES_BY_KIND,
    OutcomeInvalid,
    correct_outcome,
    record_outcome,
)
from models import (
    Certification,
    Person,
    ReviewTask,
    TaskKind,
    TaskStatus,
    VisitOutcome,
)
from tests.liveness import test_workflow as workflow
from tests.liveness.test_workflow import City

city = workflow.city  # the fixture: the three-person roll, on both backends


def face_tasks_after_visits(city: City) -> None:
    """Bring P1 and P2 to an open face verification: their visits found nobody."""
    city.run("2025-04-30")
    city.outcome("P1", TaskKind.HOME_VISIT, "not_found", "2025-05-05")
    city.outcome("P2", TaskKind.HOME_VISIT, "not_found", "2025-05-05")
    city.run("2025-05-31")


def test_a_face_task_offers_what_a_worker_does_and_other_kinds_keep_theirs() -> None:
    assert OUTCOMES_BY_KIND[TaskKind.FACE_VERIFICATION] == {
        VisitOutcome.FACE_PASSED, VisitOutcome.FACE_FAILED, VisitOutcome.VISIT_NEEDED,
    }  # fmt: skip
    for kind in (TaskKind.HOME_VISIT, TaskKind.DEATH_REVIEW):
        assert not OUTCOMES_BY_KIND[kind] & {
            VisitOutcome.FACE_PASSED, VisitOutcome.FACE_FAILED, VisitOutcome.VISIT_NEEDED,
        }  # fmt: skip


def test_an_assisted_pass_certifies_and_a_visit_asked_for_opens_one(city: City) -> None:
    face_tasks_after_visits(city)
    p1 = city.outcome("P1", TaskKind.FACE_VERIFICATION, "face_passed", "2025-06-03")
    p2 = city.outcome("P2", TaskKind.FACE_VERIFICATION, "visit_needed", "2025-06-03")
    refused = pytest.raises(OutcomeInvalid, match="outcome: not_found is not an outcome")
    with refused, session_scope(city.services.sessions) as session:
        record_outcome(session, task_id=p1, outcome="not_found", actor="w",
                           on=dt.date(2025, 6, 3))  # fmt: skip
    city.run("2025-06-30")

    with session_scope(city.services.sessions) as session:
        latest = session.scalars(
            select(Certification).join(Person, Person.id == Certification.person_id)
            .where(Person.person_ref == "P1").order_by(Certification.id.desc())
        ).first()  # fmt: skip
        assert latest is not None
        assert latest.source == "face" and latest.certified_on == dt.date(2025, 6, 30)
        assert {k: latest.evidence.get(k) for k in ("face_task", "channel", "proof_day")} == {
            "face_task": p1, "channel": "assisted", "proof_day": "2025-06-03",
        }  # fmt: skip
        assert session.get_one(ReviewTask, p1).closed_run_id is not None
        assert session.get_one(ReviewTask, p2).closed_run_id is not None
    # P1 is certified: no review follows. P2 is visited, and the visit says why.
    visit = city.task("P2", TaskKind.HOME_VISIT)
    assert visit is not None and visit.status == TaskStatus.OPEN and visit.cause == "visit_asked"
    assert city.task("P1", TaskKind.HOME_VISIT).status == TaskStatus.DONE  # type: ignore[union-attr]
    assert city.entries("P1") == [] and city.entries("P2") == []


def test_an_assisted_failure_sends_a_visit_and_a_machine_result_is_never_corrected(
    city: City,
) -> None:
    city.run("2025-04-30")
    # P1 is offered a face verification on renewal (as a medium person would be).
    with session_scope(city.services.sessions) as session:
        p1 = session.scalar(select(Person.id).where(Person.person_ref == "P1"))
        session.execute(
            update(ReviewTask).where(ReviewTask.person_id == p1)
            .values(kind=TaskKind.FACE_VERIFICATION, cause="renewal")
        )  # fmt: skip
    face = city.outcome("P1", TaskKind.FACE_VERIFICATION, "face_failed", "2025-05-05")
    city.run("2025-05-31")
    visit = city.task("P1", TaskKind.HOME_VISIT)
    assert visit is not None and visit.status == TaskStatus.OPEN and visit.cause == "face_failed"

    # A supervisor may correct what a worker recorded; never what the service found.
    with session_scope(city.services.sessions) as session:
        correct_outcome(session, task_id=face, outcome="face_passed", actor="supervisor",
                        on=dt.date(2025, 6, 2), note="the terminal misread")  # fmt: skip
        session.execute(update(ReviewTask).where(ReviewTask.id == face).values(outcome_detail={}))
    refused = pytest.raises(OutcomeInvalid, match="settled by its face verification result")
    with refused, session_scope(city.services.sessions) as session:
        correct_outcome(session, task_id=face, outcome="face_failed", actor="supervisor",
                            on=dt.date(2025, 6, 2), note="no")  # fmt: skip
