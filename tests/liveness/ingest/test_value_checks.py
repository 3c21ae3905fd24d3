"""Issue 13, finding 5: bad values are quarantined with their field named, never loaded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from liveness.db import session_scope
from liveness.ingest.runner import ingest_paths
from liveness.services import Services
from models import Benefit, DeathRecord, Person, QuarantinedRow

HEADER = (
    "person_ref,id_number,name,sex,birth_date,benefit_type,monthly_amount,benefit_start,"
    "region_code,grid_code,status\n"
)
NEXT_YEAR = dt.date.today().year + 1


@pytest.fixture(params=["sqlite", "postgresql"])
def services(
    request: pytest.FixtureRequest, services_factory: Callable[[str], Services]
) -> Services:
    return services_factory(request.param)


def _reasons(services: Services) -> dict[int, str]:
    with session_scope(services.sessions) as session:
        rows = session.execute(select(QuarantinedRow.line, QuarantinedRow.reason)).all()
    return {int(line): str(reason) for line, reason in rows}


def test_bad_roll_values_are_quarantined_naming_the_field(
    services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "registry.csv"
    path.write_text(
        HEADER
        + "P1,330702194501011230,张三,M,1945-01-01,enterprise_pension,3000.00,2005-01-01,330702,G1,active\n"
        + "P2,330702195002021228,李四,F,1950-02-02,enterprise_pension,-3000,2010-02-01,330702,G1,active\n"
        + "P3,330702195503031213,王五,M,1955-03-03,enterprise_pension,99999999999.99,2015-03-01,330702,G1,active\n"
        + "P4,330702209001011234,赵六,M,2090-01-01,survivor_pension,800.00,2020-01-01,330702,G1,active\n"
        + "P5,330702195503031213,钱七,M,1955-03-03,enterprise_pension,3000.123,2015-03-01,330702,G1,active\n"
        + "P6,330702202301011234,孙八,F,2023-01-01,resident_pension,300.00,2024-01-01,330702,G1,active\n"
        + "P7,330702195503031213,周九,M,1955-03-03,enterprise_pension,3000.10,1950-01-01,330702,G1,active\n",
        encoding="utf-8",
    )
    (report,) = ingest_paths(services, source="registry", paths=[path])
    assert (report.rows_read, report.loaded, report.quarantined) == (7, 1, 6)
    reasons = _reasons(services)
    assert "monthly_amount -3000.00 is not positive" in reasons[3]
    assert "monthly_amount 99999999999.99 is above the ceiling" in reasons[4]
    assert "birth_date 2090-01-01 is after the delivery arrived" in reasons[5]
    assert "bad money value in monthly_amount: '3000.123'" in reasons[6]
    assert "younger than the minimum age 60 for resident_pension" in reasons[7]
    assert "benefit_start 1950-01-01 is before birth_date 1955-03-03" in reasons[8]
    with session_scope(services.sessions) as session:
        assert session.scalars(select(Person.person_ref)).all() == ["P1"]
        assert session.scalars(select(Benefit.monthly_amount)).all() == [Decimal("3000.00")]


def test_future_visits_never_become_evidence(services: Services, tmp_path: Path) -> None:
    path = tmp_path / "medical.csv"
    path.write_text(
        "record_id,id_number,visit_at,institution_code,visit_type\n"
        "M1,330702194501011230,2025-02-01 09:00:00,H1,outpatient\n"
        f"M2,330702194501011230,{NEXT_YEAR + 3}-01-01 09:00:00,H1,outpatient\n"
        "M3,330702194501011230,2099-01-01 09:00:00,H1,outpatient\n"
        "M4,330702194501011230,1899-12-31 09:00:00,H1,outpatient\n",
        encoding="utf-8",
    )
    (report,) = ingest_paths(services, source="medical", paths=[path])
    assert (report.loaded, report.quarantined) == (1, 3)
    reasons = _reasons(services)
    assert f"visit_at {NEXT_YEAR + 3}-01-01 09:00 is after the delivery arrived" in reasons[3]
    assert "visit_at 2099-01-01 09:00 is after the delivery arrived" in reasons[4]
    assert "visit_at 1899-12-31 09:00 is before 1900-01-01" in reasons[5]
    with session_scope(services.sessions) as session:
        days = services.store.read_table(session, source="medical", columns=["record_id", "day"])
    assert days["record_id"].to_pylist() == ["M1"]


def test_death_records_keep_their_dates_in_order(services: Services, tmp_path: Path) -> None:
    cremation = tmp_path / "cremation.csv"
    cremation.write_bytes(
        (
            "record_id,id_number,name,died_on,cremated_on\n"
            "R1,330702194501011230,张三,2025-01-05,2025-01-07\n"
            "R2,330702194501011230,张三,2025-01-09,2025-01-07\n"
        ).encode("gb18030")
    )
    deregistration = tmp_path / "deregistration.csv"
    deregistration.write_text(
        "record_id,id_number,name,deregistered_on,reason,died_on\n"
        "D1,330702195002021228,李四,2025-01-07,death,2025-01-09\n",
        encoding="utf-8",
    )
    reports = ingest_paths(services, source="cremation", paths=[cremation])
    reports += ingest_paths(services, source="deregistration", paths=[deregistration])
    assert [(r.loaded, r.quarantined) for r in reports] == [(1, 1), (0, 1)]
    with session_scope(services.sessions) as session:
        assert session.scalars(select(DeathRecord.record_id)).all() == ["R1"]
        reasons = sorted(session.scalars(select(QuarantinedRow.reason)))
    assert reasons == [
        "cremated_on 2025-01-07 is before died_on 2025-01-09",
        "deregistered_on 2025-01-07 is before died_on 2025-01-09",
    ]
