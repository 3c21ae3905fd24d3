"""Pruning keeps what stood at every run within the retention period, on random histories."""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liveness.certification.assessments import prune_assessments
from models import Assessment, Person, Run, RunStatus, assessments_as_of

START = dt.date(2024, 1, 1)
PEOPLE = 4
_refs = itertools.count()

# A run: days after the previous one, whether it was published, and per person what it
# stored: nothing (None), a level, or that the person left the graded roll ("gone").
runs = st.lists(
    st.tuples(
        st.integers(1, 200),
        st.booleans(),
        st.lists(st.sampled_from([None, None, "strong", "weak", "gone"]), min_size=PEOPLE,
                 max_size=PEOPLE),
    ),
    min_size=1, max_size=8,
)  # fmt: skip


def _standing(history: list[tuple[int, dict[int, str]]], run_id: int) -> dict[int, str]:
    """The model: each person's latest stored level at or before the run, unless gone."""
    stood: dict[int, str] = {}
    for rid, stored in history:
        if rid > run_id:
            break
        for person, level in stored.items():
            if level == "gone":
                stood.pop(person, None)
            else:
                stood[person] = level
    return stood


def _read(session: Session, run_id: int) -> dict[int, str]:
    standing = assessments_as_of(run_id)
    return {
        int(p): str(level)
        for p, level in session.execute(select(standing.person_id, standing.level))
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=runs, retention=st.integers(0, 600), today_after=st.integers(0, 400))
def test_pruning_keeps_what_stood_within_the_period(
    session: Session, history: list[tuple[int, bool, list[str | None]]], retention: int,
    today_after: int,
) -> None:  # fmt: skip
    # Each example in a savepoint of its own, rolled back: the next starts from nothing.
    savepoint = session.begin_nested()
    try:
        _check(session, history, retention, today_after)
    finally:
        savepoint.rollback()


def _check(
    session: Session, history: list[tuple[int, bool, list[str | None]]], retention: int,
    today_after: int,
) -> None:  # fmt: skip
    people = []
    for _ in range(PEOPLE):
        person = Person(
            person_ref=f"PR{next(_refs)}", id_number="330702194501011230", id_status="valid",
            name="张三", sex="M", birth_date=dt.date(1945, 1, 1), region_code="330702",
            grid_code="G1",
        )  # fmt: skip
        session.add(person)
        people.append(person)
    session.flush()
    day, published = START, []
    model: list[tuple[int, dict[int, str]]] = []
    for gap, is_published, stored in history:
        day += dt.timedelta(days=gap)
        status = RunStatus.PUBLISHED if is_published else RunStatus.STOPPED_BY_GUARD
        run = Run(as_of=day, status=status, policy_version="p")
        session.add(run)
        session.flush()
        if not is_published:
            continue  # a stopped run stores nothing
        published.append((run.id, day))
        rows = {people[i].id: level for i, level in enumerate(stored) if level is not None}
        model.append((run.id, rows))
        session.add_all(
            Assessment(run_id=run.id, person_id=pid, level="weak" if level == "gone" else level,
                       score=0.5, rule="r", reasons={}, policy_version="p",
                       graded=level != "gone")
            for pid, level in rows.items()
        )  # fmt: skip
    session.flush()
    today = day + dt.timedelta(days=today_after)
    mine = {p.id for p in people}
    before = {rid: _read(session, rid) for rid, _ in published}
    assert {rid: {p: v for p, v in s.items() if p in mine} for rid, s in before.items()} == {
        rid: _standing(model, rid) for rid, _ in published
    }
    pruned = prune_assessments(session, today=today, retention_days=retention)
    inside = [rid for rid, as_of in published if as_of > today - dt.timedelta(days=retention)]
    older = [rid for rid, as_of in published if as_of <= today - dt.timedelta(days=retention)]
    # The boundary (the latest run before the period) and every run after it stand whole.
    kept = inside + older[-1:]
    for rid in kept:
        assert {p: v for p, v in _read(session, rid).items() if p in mine} == _standing(
            model, rid
        ), rid
    # Only superseded rows went: as many as stored at or before the boundary, less what stood.
    if older:
        boundary = older[-1]
        stored_before = sum(len(rows) for rid, rows in model if rid <= boundary)
        assert pruned == stored_before - len(_standing(model, boundary))
    else:
        assert pruned == 0
    remaining = session.scalar(
        select(func.count()).select_from(Assessment).where(Assessment.person_id.in_(mine))
    )
    assert remaining == sum(len(rows) for _, rows in model) - pruned
