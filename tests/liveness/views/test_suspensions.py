"""The suspension forecast: what the next run would list, before it runs, writing nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from liveness.certification.runner import acquire_lock, release_lock
from liveness.db import session_scope
from liveness.views.suspensions import forecast_suspensions
from models import (
    Assessment,
    Benefit,
    Certification,
    DeathRecord,
    ListEntry,
    Notice,
    Person,
    ReviewTask,
    Run,
    TaskKind,
)
from tests.liveness.test_workflow import P2, City, city  # noqa: F401  (a fixture)

AS_OF = dt.date(2025, 5, 31)
COUNTED = (Run, Assessment, ListEntry, ReviewTask, Notice, Certification, DeathRecord)


def _state(place: City) -> dict[str, object]:
    """Return what a run would change: row counts, benefit states, task states."""
    with session_scope(place.services.sessions) as session:
        counts = {model.__name__: session.scalar(select(func.count()).select_from(model))
                  for model in COUNTED}  # fmt: skip
        benefits = sorted(session.execute(select(Benefit.id, Benefit.status)).all())
        tasks = sorted(
            session.execute(select(ReviewTask.id, ReviewTask.status, ReviewTask.closed_run_id))
        )
    return {"counts": counts, "benefits": benefits, "tasks": tasks}


# By ranges of 1 person too, as `liveness run` makes the run with LIVENESS_RUN_PARTITION_PERSONS.
@pytest.mark.parametrize("range_persons", [None, 1])
def test_the_forecast_lists_what_the_next_run_publishes_and_writes_nothing(
    city: City,  # noqa: F811
    range_persons: int | None,
) -> None:
    # Nobody leaves traces: everyone is weak and gets a visit in the first run.
    city.run("2025-04-30")
    city.outcome("P1", TaskKind.HOME_VISIT, "imprisoned", "2025-05-03")
    # P2 died on 05-10; the cremation record arrives before the next run.
    city.cremation(f"R9,{P2[0]},{P2[1]},女,1950-02-02,2025-05-10,2025-05-12\n")
    before = _state(city)

    with session_scope(city.services.sessions) as session:
        forecast = forecast_suspensions(
            session, as_of=AS_OF, store=city.services.store, policies=city.services.policies,
            timezone=city.services.settings.timezone, range_persons=range_persons,
        )  # fmt: skip
        scoped = forecast_suspensions(
            session, as_of=AS_OF, store=city.services.store, policies=city.services.policies,
            timezone=city.services.settings.timezone, regions=["4401"],
            range_persons=range_persons,
        )  # fmt: skip
    assert _state(city) == before  # the forecast wrote nothing, twice over
    assert not forecast.stopped_by_guard
    # Expected from the story alone: P1 imprisoned (visit outcome), P2 dead since 05-10.
    expected = {("P1", "imprisoned"), ("P2", "deceased")}
    assert {(line.person_ref, line.reason) for line in forecast.lines} == expected
    assert forecast.total == 2 and scoped.total == 0 and scoped.lines == []
    death = next(line for line in forecast.lines if line.person_ref == "P2")
    assert death.detail["source"] == "cremation" and death.detail["record_id"] == "R9"
    assert death.died_on == dt.date(2025, 5, 10)
    assert death.effective_on == dt.date(2025, 5, 11)
    assert forecast.amount == sum((line.amount for line in forecast.lines), Decimal("0"))

    run_id = city.run("2025-05-31")
    with session_scope(city.services.sessions) as session:
        published = session.execute(
            select(Person.person_ref, ListEntry.reason, ListEntry.amount, ListEntry.effective_on)
            .join(Person, Person.id == ListEntry.person_id)
            .where(ListEntry.run_id == run_id, ListEntry.action.in_(["suspend", "amend"]))
        ).all()
    assert {(ref, str(reason)) for ref, reason, _, _ in published} == expected
    assert {(ref, str(reason), amount, day) for ref, reason, amount, day in published} == {
        (line.person_ref, line.reason, line.amount, line.effective_on) for line in forecast.lines
    }


def test_a_forecast_pages_its_lines(city: City) -> None:  # noqa: F811
    city.run("2025-04-30")
    city.outcome("P1", TaskKind.HOME_VISIT, "imprisoned", "2025-05-03")
    city.outcome("P2", TaskKind.HOME_VISIT, "imprisoned", "2025-05-03")
    with session_scope(city.services.sessions) as session:
        first = forecast_suspensions(
            session, as_of=AS_OF, store=city.services.store, policies=city.services.policies,
            timezone=city.services.settings.timezone, limit=1,
        )  # fmt: skip
        second = forecast_suspensions(
            session, as_of=AS_OF, store=city.services.store, policies=city.services.policies,
            timezone=city.services.settings.timezone, limit=1, offset=1,
        )  # fmt: skip
    assert first.total == second.total == 2
    assert [line.person_ref for line in first.lines + second.lines] == ["P1", "P2"]


def test_no_forecast_runs_beside_a_run_that_holds_the_lock(city: City) -> None:  # noqa: F811
    city.run("2025-04-30")
    city.outcome("P1", TaskKind.HOME_VISIT, "imprisoned", "2025-05-03")
    acquire_lock(city.services, holder="nightly-job")
    try:
        before = _state(city)
        with session_scope(city.services.sessions) as session:
            forecast = forecast_suspensions(
                session, as_of=AS_OF, store=city.services.store,
                policies=city.services.policies, timezone=city.services.settings.timezone,
            )  # fmt: skip
        assert forecast.run_in_progress and forecast.lines == [] and forecast.total == 0
        assert _state(city) == before
    finally:
        release_lock(city.services, holder="nightly-job")
