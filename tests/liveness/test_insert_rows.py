"""Rows written column by column past the ORM read back as the ORM's own rows, on both backends."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.db import insert_rows
from models import Assessment, Base, Certification, CertificationSource, Person, Run, RunStatus

ASSESSMENTS = Base.metadata.tables["assessments"]
CERTIFICATIONS = Base.metadata.tables["certifications"]

texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | texts
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
reasons = st.dictionaries(texts, json_values, max_size=4)


def _person_and_run(session: Session) -> tuple[int, int]:
    person = Person(
        person_ref=f"P{dt.datetime.now().timestamp()}", id_number="330702194501011230",
        id_status="valid", name="张三", sex="M", birth_date=dt.date(1945, 1, 1),
        region_code="330702", grid_code="G1",
    )  # fmt: skip
    run = Run(as_of=dt.date(2025, 7, 1), status=RunStatus.PUBLISHED, policy_version="p")
    session.add_all([person, run])
    session.flush()
    return person.id, run.id


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["strong", "medium", "weak", "deceased"]),
            st.floats(0, 1, allow_nan=False), st.sampled_from(["x", "长"]), reasons,
            st.none() | st.integers(-(2**63), 2**63 - 1), st.booleans(),
        ),
        min_size=1, max_size=6,
    )
)  # fmt: skip
def test_assessments_read_back_as_the_orms(session: Session, rows: list[tuple[Any, ...]]) -> None:
    person_id, first_run = _person_and_run(session)
    runs = [Run(as_of=dt.date(2025, 7, 2), status=RunStatus.PUBLISHED, policy_version="p")
            for _ in rows]  # fmt: skip
    session.add_all(runs)
    session.flush()
    # One row per run each way: through the ORM for the first person's runs, and past it.
    session.add_all(
        Assessment(run_id=run.id, person_id=person_id, level=level, score=score, rule=rule,
                   reasons=why, policy_version="p", gist=gist, graded=graded)
        for run, (level, score, rule, why, gist, graded) in zip(runs, rows, strict=True)
    )  # fmt: skip
    session.flush()
    other, _ = _person_and_run(session)
    written = insert_rows(
        session, ASSESSMENTS,
        {
            "run_id": [run.id for run in runs], "person_id": [other] * len(rows),
            "level": [r[0] for r in rows], "score": [r[1] for r in rows],
            "rule": [r[2] for r in rows], "reasons": [r[3] for r in rows],
            "policy_version": ["p"] * len(rows), "gist": [r[4] for r in rows],
            "graded": [r[5] for r in rows],
        },
    )  # fmt: skip
    assert written == len(rows)
    session.expire_all()

    def read(pid: int) -> list[tuple[Any, ...]]:
        return [
            (a.run_id, str(a.level), a.score, a.rule, a.reasons, a.policy_version, a.gist,
             a.graded, a.created_at.tzinfo is not None)
            for a in session.scalars(
                select(Assessment).where(Assessment.person_id == pid).order_by(Assessment.run_id)
            )
        ]  # fmt: skip

    assert read(other) == read(person_id)
    assert first_run < runs[0].id


def test_defaults_and_dates_fill_as_the_orm_fills_them(session: Session) -> None:
    person_id, run_id = _person_and_run(session)
    before = dt.datetime.now(dt.UTC)
    insert_rows(
        session, CERTIFICATIONS,
        {
            "person_id": [person_id, person_id],
            "source": [CertificationSource.DATA_COMPARISON, "home_visit"],
            "mark": ["certified", "certified"],
            "certified_on": [dt.date(2025, 7, 1), dt.date(2024, 2, 29)],
            "valid_until": [dt.date(2026, 7, 1), dt.date(2025, 2, 28)],
            "run_id": [run_id, None], "policy_version": ["p", None],
        },
    )  # fmt: skip
    session.expire_all()
    got = session.scalars(
        select(Certification).where(Certification.person_id == person_id).order_by(Certification.id)
    ).all()
    assert [(str(c.source), c.certified_on, c.valid_until, c.run_id, c.policy_version, c.evidence)
            for c in got] == [
        ("data_comparison", dt.date(2025, 7, 1), dt.date(2026, 7, 1), run_id, "p", {}),
        ("home_visit", dt.date(2024, 2, 29), dt.date(2025, 2, 28), None, None, {}),
    ]  # fmt: skip
    assert all(c.created_at >= before - dt.timedelta(seconds=1) for c in got)
    assert insert_rows(session, CERTIFICATIONS, {"person_id": []}) == 0
