"""Death records re-delivered, changed, corrected and voided by their source: never lost."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, update

from liveness.db import session_scope
from liveness.ingest.runner import ingest_paths
from liveness.services import Services
from models import DeathRecord, Deregistration, QuarantinedRow, RecordStatus

REGISTRY = """person_ref,id_number,name,sex,birth_date,benefit_type,monthly_amount,benefit_start,region_code,grid_code,status
P1,330702194501011230,张三,M,1945-01-01,enterprise_pension,3000.00,2005-01-01,330702,G1,active
P2,330702195002021228,李四,F,1950-02-02,enterprise_pension,2500.50,2010-02-01,330702,G1,active
"""
CREMATION = "record_id,id_number,name,died_on,cremated_on,correction,voided\n"
DEREGISTRATION = "record_id,id_number,name,deregistered_on,reason,died_on,correction,voided\n"
MEDICAL = (
    "record_id,id_number,visit_at,institution_code,visit_type,discharge_outcome,correction,voided\n"
)
P1 = "330702194501011230,张三"
P2 = "330702195002021228,李四"


@pytest.fixture(params=["sqlite", "postgresql"])
def services(
    request: pytest.FixtureRequest, services_factory: Callable[[str], Services], tmp_path: Path
) -> Services:
    services = services_factory(request.param)
    path = tmp_path / "registry.csv"
    path.write_text(REGISTRY, encoding="utf-8")
    ingest_paths(services, source="registry", paths=[path])
    return services


class Deliver:
    """Write and ingest one delivery of a source at a time; return its report."""

    def __init__(self, services: Services, folder: Path) -> None:
        self.services, self.folder, self.count = services, folder, 0

    def __call__(self, source: str, text: str) -> tuple[int, int, int]:
        self.count += 1
        path = self.folder / f"{source}_{self.count}.csv"
        encoding = "gb18030" if source == "cremation" else "utf-8"
        path.write_bytes(text.encode(encoding))
        (report,) = ingest_paths(self.services, source=source, paths=[path])
        assert report.error is None, report.error
        return report.loaded, report.redelivered, report.quarantined


@pytest.fixture
def deliver(services: Services, tmp_path: Path) -> Deliver:
    return Deliver(services, tmp_path)


def _deaths(services: Services) -> list[tuple[str, str, str, int | None, str | None]]:
    with session_scope(services.sessions) as session:
        rows = session.execute(
            select(
                DeathRecord.source, DeathRecord.record_id, DeathRecord.status,
                DeathRecord.person_id, DeathRecord.settled_by,
            ).order_by(DeathRecord.source, DeathRecord.record_id)
        ).all()  # fmt: skip
    return [(str(a), str(b), str(c), d, e) for a, b, c, d, e in rows]


def _person(services: Services, ref: str) -> int:
    from models import Person

    with session_scope(services.sessions) as session:
        return int(session.scalars(select(Person.id).where(Person.person_ref == ref)).one())


def _settle(services: Services, record_id: str) -> None:
    """A supervisor settles a record as refuted, as a death review would."""
    with session_scope(services.sessions) as session:
        session.execute(
            update(DeathRecord)
            .where(DeathRecord.record_id == record_id)
            .values(status=RecordStatus.REFUTED, settled_by="supervisor",
                    settled_on=dt.date(2025, 3, 1), settlement="not_a_death")
        )  # fmt: skip


def test_a_cremation_record_again_identical_or_changed(
    services: Services, deliver: Deliver
) -> None:
    assert deliver("cremation", CREMATION + f"R1,{P1},2025-01-05,2025-01-07,,\n") == (1, 0, 0)
    assert deliver("cremation", CREMATION + f"R1,{P1},2025-01-05,2025-01-07,,\n") == (0, 1, 0)
    # Another date of death without correction=true: a conflict, quarantined, naming both.
    assert deliver("cremation", CREMATION + f"R1,{P1},2025-01-04,2025-01-07,,\n") == (0, 0, 1)
    with session_scope(services.sessions) as session:
        (reason,) = session.scalars(select(QuarantinedRow.reason)).all()
        assert session.scalars(select(DeathRecord.died_on)).all() == [dt.date(2025, 1, 5)]
    assert "record_id R1 was delivered in delivery" in reason and "(cremation_1.csv)" in reason
    assert "(cremation_3.csv) changes it without correction=true" in reason
    # Twice in one file, the second time changed: the second row is the conflict.
    both = CREMATION + f"R2,{P2},2025-02-05,2025-02-07,,\nR2,{P2},2025-02-06,2025-02-07,,\n"
    assert deliver("cremation", both) == (1, 0, 1)


def test_a_correction_keeps_the_settlement_unless_it_names_another_person(
    services: Services, deliver: Deliver
) -> None:
    deliver("cremation", CREMATION + f"R1,{P1},2025-01-05,2025-01-07,,\n")
    _settle(services, "R1")
    with session_scope(services.sessions) as session:
        (record_id,) = session.scalars(select(DeathRecord.id)).all()
    # The same person, another date: corrected in place, still refuted, still settled.
    assert deliver("cremation", CREMATION + f"R1,{P1},2025-01-04,2025-01-07,true,\n") == (1, 0, 0)
    p1, p2 = _person(services, "P1"), _person(services, "P2")
    assert _deaths(services) == [("cremation", "R1", "refuted", p1, "supervisor")]
    with session_scope(services.sessions) as session:
        record = session.scalars(select(DeathRecord)).one()
        assert (record.id, record.died_on, record.settlement) == (
            record_id, dt.date(2025, 1, 4), "not_a_death"
        )  # fmt: skip
    # Corrected to another person: what was settled was settled of someone else.
    assert deliver("cremation", CREMATION + f"R1,{P2},2025-01-04,2025-01-07,true,\n") == (1, 0, 0)
    assert _deaths(services) == [("cremation", "R1", "active", p2, None)]


def test_a_voided_death_record_stays_voided(services: Services, deliver: Deliver) -> None:
    deliver("cremation", CREMATION + f"R1,{P1},2025-01-05,2025-01-07,,\n")
    _settle(services, "R1")
    assert deliver("cremation", CREMATION + f"R1,{P1},2025-01-05,2025-01-07,true,true\n") == (
        1, 0, 0,
    )  # fmt: skip
    # Kept for the audit, settlement and all; it acts no more.
    assert _deaths(services) == [("cremation", "R1", "voided", _person(services, "P1"),
                                  "supervisor")]  # fmt: skip
    # A void without correction=true withdraws nothing: it is quarantined.
    assert deliver("cremation", CREMATION + f"R2,{P2},2025-01-05,2025-01-07,,true\n") == (0, 0, 1)
    # A re-delivery of the voided record as first delivered changes nothing.
    assert deliver("cremation", CREMATION + f"R1,{P1},2025-01-05,2025-01-07,,\n") == (0, 1, 0)
    assert _deaths(services)[0][2] == "voided"


def test_deregistrations_are_voided_and_move_between_death_and_other_reasons(
    services: Services, deliver: Deliver
) -> None:
    assert deliver("deregistration", DEREGISTRATION + f"D1,{P1},2025-02-01,abroad,,,\n"
                   f"D2,{P2},2025-02-01,death,2025-01-30,,\n") == (2, 0, 0)  # fmt: skip
    # Re-delivered under another reason without a correction: a conflict.
    assert deliver("deregistration", DEREGISTRATION + f"D1,{P1},2025-02-01,death,,,\n") == (
        0, 0, 1,
    )  # fmt: skip
    assert deliver("deregistration", DEREGISTRATION + f"D1,{P1},2025-02-01,abroad,,true,true\n"
                   f"D2,{P2},2025-02-01,moved_out,,true,\n") == (2, 0, 0)  # fmt: skip
    with session_scope(services.sessions) as session:
        events = session.execute(
            select(Deregistration.record_id, Deregistration.reason, Deregistration.status)
            .order_by(Deregistration.record_id)
        ).all()  # fmt: skip
    assert [tuple(e) for e in events] == [("D1", "abroad", "voided"), ("D2", "moved_out", "active")]
    # D2 was a death: corrected to another reason, its death record is withdrawn, not deleted.
    assert [(d[1], d[2]) for d in _deaths(services)] == [("D2", "voided")]
    # And back to a death: the death record stands again, the event is withdrawn.
    assert deliver("deregistration", DEREGISTRATION + f"D2,{P2},2025-02-01,death,2025-01-30,"
                   "true,\n") == (1, 0, 0)  # fmt: skip
    assert [(d[1], d[2]) for d in _deaths(services)] == [("D2", "active")]
    with session_scope(services.sessions) as session:
        status = session.scalars(
            select(Deregistration.status).where(Deregistration.record_id == "D2")
        ).one()
    assert status == "voided"


def test_a_medical_correction_that_is_no_death_voids_the_death_record(
    services: Services, deliver: Deliver
) -> None:
    died = "inpatient_discharge,deceased"
    assert deliver("medical", MEDICAL + f"M1,{P1[:18]},2025-02-01 09:00:00,H1,{died},,\n"
                   f"M2,{P2[:18]},2025-02-01 09:00:00,H1,{died},,\n") == (2, 0, 0)  # fmt: skip
    assert [(d[1], d[2]) for d in _deaths(services)] == [("M1", "active"), ("M2", "active")]
    assert deliver("medical", MEDICAL + f"M1,{P1[:18]},2025-02-01 09:00:00,H1,"
                   "inpatient_discharge,alive,true,\n"
                   f"M2,{P2[:18]},2025-02-01 09:00:00,H1,{died},true,true\n") == (2, 0, 0)  # fmt: skip
    assert [(d[1], d[2]) for d in _deaths(services)] == [("M1", "voided"), ("M2", "voided")]
    with session_scope(services.sessions) as session:
        visits = services.store.read_table(session, source="medical", columns=["record_id", "kind"])
    # M1 was a discharge alive after all; M2 never happened.
    assert visits.to_pylist() == [{"record_id": "M1", "kind": "inpatient_discharge"}]
    # A death re-stated by a later correction stands again.
    assert deliver("medical", MEDICAL + f"M1,{P1[:18]},2025-02-01 09:00:00,H1,{died},true,\n") == (
        1, 0, 0,
    )  # fmt: skip
    assert [(d[1], d[2]) for d in _deaths(services)] == [("M1", "active"), ("M2", "voided")]
