"""A degraded source during a run: its silence lowers nobody, raises nobody, certifies nobody.

Issue 20: a city driven for a year certified the dead silently while its sources were taken
for degraded, on the credit of traces they left before they died.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

import liveness.certification.run
from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.ingest.runner import ingest_paths
from liveness.services import Services
from models import (
    Assessment,
    Certification,
    CertificationSource,
    Person,
    ReviewTask,
    SourceVolume,
    TaskKind,
    TaskStatus,
    assessments_as_of,
)

REGISTRY = (
    "person_ref,id_number,name,sex,birth_date,benefit_type,monthly_amount,benefit_start,"
    "region_code,grid_code,status,last_certified_on\n"
    + "".join(
        f"{ref},{number},{name},M,{number[6:10]}-{number[10:12]}-{number[12:14]},"
        "enterprise_pension,3000.00,2010-01-01,330702,G1,active,2024-06-01\n"
        for ref, number, name in (
            ("D", "330702194501011230", "张三"),
            ("M", "330702195002021228", "李四"),
            ("S", "330702194804041218", "王五"),
            ("H", "330702195205051312", "赵六"),
        )
    )
)
CARDS = "card_no,card_kind,id_number,issued_on,cancelled_on\n" + "".join(
    f"{kind[0].upper()}{ref},{kind},{number},2020-01-01,\n"
    for ref, number in (
        ("D", "330702194501011230"),
        ("M", "330702195002021228"),
        ("S", "330702194804041218"),
        ("H", "330702195205051312"),
    )
    for kind in ("transit_senior", "citizen")
)
FIRST_DAY = dt.date(2024, 8, 1)
OUTAGE = dt.date(2025, 7, 1)  # the transit and card feeds collapse from this day


def _weekly(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=7 * k) for k in range((last - first).days // 7 + 1)]


# Who leaves which traces, and until when.
TAPS = {
    "D": (FIRST_DAY, dt.date(2025, 3, 28)),  # died on 2025-03-29; no death record
    "M": (FIRST_DAY, dt.date(2024, 10, 15)),  # taps long ago only
    "S": (FIRST_DAY, dt.date(2025, 6, 30)),
    "H": (FIRST_DAY, dt.date(2025, 6, 30)),
}
PAYMENTS = {
    "D": (FIRST_DAY, dt.date(2025, 3, 28)),
    "M": (FIRST_DAY, dt.date(2025, 6, 30)),
    "S": (FIRST_DAY, dt.date(2025, 2, 28)),  # stopped paying by card in March
    "H": (FIRST_DAY, dt.date(2025, 6, 30)),
}


def _deliver(services: Services, folder: Path, source: str, text: str) -> None:
    path = folder / f"{source}.csv"
    path.write_text(text, encoding="utf-8")
    (report,) = ingest_paths(services, source=source, paths=[path])
    assert report.error is None and report.quarantined == 0, report


@pytest.fixture(params=["sqlite", "postgresql"])
def services(
    request: pytest.FixtureRequest, services_factory: Callable[[str], Services], tmp_path: Path
) -> Services:
    services = services_factory(request.param)
    with session_scope(services.sessions) as session:
        # The rest of the city: steady volumes until both feeds collapse.
        for source in ("transit", "card_txn"):
            day = FIRST_DAY
            while day < OUTAGE:
                session.add(SourceVolume(source=source, day=day, traces=1000))
                day += dt.timedelta(days=1)
    _deliver(services, tmp_path, "registry", REGISTRY)
    _deliver(services, tmp_path, "cards", CARDS)
    taps = "".join(
        f"T{ref}{day:%Y%m%d},T{ref},{day} 09:00:00,330702,true\n"
        for ref, (first, last) in TAPS.items()
        for day in _weekly(first, last)
    )
    _deliver(
        services, tmp_path, "transit", "record_id,card_no,tapped_at,city_code,face_match\n" + taps
    )
    payments = "".join(
        f"P{ref}{day:%Y%m%d},C{ref},{day} 10:00:00,pos_pin\n"
        for ref, (first, last) in PAYMENTS.items()
        for day in _weekly(first, last)
    )
    _deliver(services, tmp_path, "card_txn", "record_id,card_no,txn_at,channel\n" + payments)
    return services


def _assessments(services: Services, run_id: int) -> dict[str, Assessment]:
    with session_scope(services.sessions) as session:
        standing = assessments_as_of(run_id)
        rows = session.execute(
            select(Person.person_ref, standing).join(Person, Person.id == standing.person_id)
        ).all()
        session.expunge_all()
    return {ref: assessment for ref, assessment in rows}


def test_a_degraded_source_keeps_levels_and_certifies_nobody_on_its_credit(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[pd.DataFrame] = []
    workflow = liveness.certification.run.apply_workflow

    def spy(session: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["assessed"].copy())
        return workflow(session, **kwargs)

    monkeypatch.setattr(liveness.certification.run, "apply_workflow", spy)

    # Before the outage, all sources healthy, nobody's certification yet up for renewal (the
    # renewal window of 120 days before 06-01 opens on 02-01).
    before = execute_run(services, as_of=dt.date(2025, 1, 31))
    assert before.status == "published" and before.report["degraded_sources"] == {}
    levels = {ref: a.level for ref, a in _assessments(services, before.id).items()}
    assert levels == {"D": "strong", "M": "medium", "S": "strong", "H": "strong"}

    # A face check failed in June sent S and H on to a home visit, still open.
    with session_scope(services.sessions) as session:
        for ref in ("S", "H"):
            person = session.scalars(select(Person).where(Person.person_ref == ref)).one()
            session.add(
                ReviewTask(
                    person_id=person.id, kind=TaskKind.HOME_VISIT, status=TaskStatus.OPEN,
                    grid_code="G1", priority=0.0, opened_on=dt.date(2025, 6, 20),
                    due_on=dt.date(2025, 7, 20),
                )
            )  # fmt: skip

    # During the outage every certification is due (they ran out on 2025-06-01).
    run = execute_run(services, as_of=dt.date(2025, 7, 15))
    assert run.status == "published", run.report.get("guard")
    assert set(run.report["degraded_sources"]) == {"transit", "card_txn"}
    assert run.report["degraded_sources"]["transit"][0] == OUTAGE.isoformat()
    assert run.report["not_yet_due"]["transit"] == {
        "first": "2025-07-13", "last": "2025-07-15", "days": 3,
    }  # fmt: skip
    assert run.report["not_yet_due"]["medical"]["days"] == 38
    assessed = _assessments(services, run.id)
    # The dead man, silent since March: kept strong from his previous run, never certified.
    # Medium before the outage, with taps of last autumn to credit: still medium.
    # Strong before, a card feed to credit: kept strong, not certified by data.
    # Strong by the data alone: certified as on any day.
    assert {ref: a.level for ref, a in assessed.items()} == {
        "D": "strong", "M": "medium", "S": "strong", "H": "strong",
    }  # fmt: skip
    assert run.report["kept_by_credit"] == 2
    assert len(seen) == 2
    certifiable = dict(zip(seen[-1]["person_ref"], seen[-1]["certifiable"], strict=True))
    assert certifiable == {"D": False, "M": False, "S": False, "H": True}
    for ref in ("D", "S"):
        reasons = assessed[ref].reasons
        assert reasons["kept_from"] == "strong" and reasons["rule"] == "sources_strong"
    assert assessed["D"].reasons["degraded"] == ["transit", "card_txn"]
    assert assessed["S"].reasons["degraded"] == ["card_txn"]
    assert "kept_from" not in assessed["M"].reasons
    assert assessed["M"].reasons["sources"]["transit"]["agrees"] is False
    with session_scope(services.sessions) as session:
        certified = dict(
            session.execute(
                select(Person.person_ref, Certification.evidence)
                .join(Certification, Certification.person_id == Person.id)
                .where(Certification.source == CertificationSource.DATA_COMPARISON)
            ).all()
        )
    # Only H is certified on tonight's evidence. No run looked at the nights between 03-31 and
    # tonight: S was strong by the data alone on nights of his renewal window before the
    # outage (as a nightly run would have seen), and is certified for those nights; the
    # credit of a degraded source certifies nobody. D, strong by the data on such nights too,
    # is the dead man: his taps and payments stopped together in March, long before the
    # outage, an abrupt stop that no data certifies.
    assert set(certified) == {"S", "H"}
    assert "strong_on" not in certified["H"]
    assert dt.date.fromisoformat(certified["S"]["strong_on"]) < OUTAGE
    assert "degraded" not in certified["S"] and "kept_from" not in certified["S"]
    assert run.report["certified_earlier_night"] == 1
    with session_scope(services.sessions) as session:
        visits = {
            ref: (status, cause)
            for ref, status, cause in session.execute(
                select(Person.person_ref, ReviewTask.status, ReviewTask.cause)
                .join(Person, Person.id == ReviewTask.person_id)
                .where(ReviewTask.kind == TaskKind.HOME_VISIT)
            ).all()
        }
    # The credit resolves no review: S's visit closes on the data of an earlier night. D's
    # abrupt stop sends a grid worker before anything else would.
    assert {ref: status for ref, (status, _) in visits.items()} == {
        "D": TaskStatus.OPEN, "S": TaskStatus.CLOSED_BY_DATA, "H": TaskStatus.CLOSED_BY_DATA,
    }  # fmt: skip
    assert visits["D"][1] == "risk"
    assert run.report["risk_reviews"] == {"abrupt_stop": 1, "low_probability": 0, "opened": 1}
    assert run.report["tasks_closed_by_data"] == 2


def test_a_degraded_source_certifies_nobody_on_its_credit_on_a_night_between_runs(
    services: Services,
) -> None:
    # The previous run was on the eve of the outage: every night since lies in it.
    execute_run(services, as_of=dt.date(2025, 6, 30))
    run = execute_run(services, as_of=dt.date(2025, 7, 15))
    assert run.status == "published"
    with session_scope(services.sessions) as session:
        earlier = session.scalars(
            select(Person.person_ref)
            .join(Certification, Certification.person_id == Person.id)
            .where(Certification.run_id == run.id)
        ).all()
    # S, kept strong on credit tonight, was strong by the data alone on none of those nights.
    assert "S" not in earlier
    assert run.report["certified_earlier_night"] == 0


def test_without_a_previous_run_the_credit_counts_for_nothing(services: Services) -> None:
    run = execute_run(services, as_of=dt.date(2025, 7, 15))
    assert run.status == "published"
    levels = {ref: a.level for ref, a in _assessments(services, run.id).items()}
    # By the data alone: D has only last year's traces, S and M one recent source each.
    assert levels == {"D": "medium", "M": "medium", "S": "medium", "H": "strong"}
    assert run.report["kept_by_credit"] == 0
