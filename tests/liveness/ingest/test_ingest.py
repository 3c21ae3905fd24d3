"""Ingest through the domain: re-deliveries, quarantine, refusals, linking and death matching."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from liveness.certification.run import certify
from liveness.db import session_scope
from liveness.ingest.runner import ingest_paths
from liveness.services import Services
from models import (
    DeathMatch,
    DeathRecord,
    Delivery,
    EvidencePart,
    ListEntry,
    QuarantinedRow,
    ReviewTask,
    TaskKind,
)

REGISTRY = """person_ref,id_number,name,sex,birth_date,benefit_type,monthly_amount,benefit_start,region_code,grid_code,status,last_certified_on
P1,330702194501011230,张三,M,1945-01-01,enterprise_pension,3000.00,2005-01-01,330702,G1,active,2024-06-01
P2,330702195002021228,李四,F,1950-02-02,enterprise_pension,2500.50,2010-02-01,330702,G1,active,2024-06-01
P3,330702195503031213,王五,M,1955-03-03,resident_pension,300.00,2015-03-01,330702,G2,active,
"""
CARDS = """card_no,card_kind,id_number,issued_on,cancelled_on
C1,transit_senior,330702194501011230,2020-01-01,2025-03-01
C2,transit_senior,330702194501011230,2025-03-01,
C3,citizen,330702195002021228,2020-01-01,
"""


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    """Write a delivery file into a folder and return its path."""
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def on_roll(services: Services, folder: Path, registry: str, cards: str) -> Services:
    """Deliver a roll and its cards; return the services."""
    ingest_paths(services, source="registry", paths=[write(folder, "registry.csv", registry)])
    ingest_paths(services, source="cards", paths=[write(folder, "cards.csv", cards)])
    return services


@pytest.fixture(params=["sqlite", "postgresql"])
def services(
    request: pytest.FixtureRequest, services_factory: Callable[[str], Services], tmp_path: Path
) -> Services:
    return on_roll(services_factory(request.param), tmp_path, REGISTRY, CARDS)


def test_a_file_delivered_twice_is_recognised(services: Services, tmp_path: Path) -> None:
    transit = write(
        tmp_path,
        "transit_1.csv",
        "record_id,card_no,tapped_at,city_code,face_match\n"
        "T1,C1,2025-02-01 08:00:00,330700,true\n"
        "T2,C3,2025-02-01 09:00:00,330700,\n",
    )
    copy = write(tmp_path, "transit_1.resend.csv", transit.read_text())
    first, second = ingest_paths(services, source="transit", paths=[transit, copy])
    assert (first.status, first.loaded) == ("loaded", 2)
    assert (second.status, second.loaded, second.redelivered) == ("duplicate", 0, 2)


def test_record_ids_delivered_again_change_nothing(services: Services, tmp_path: Path) -> None:
    header = "record_id,card_no,tapped_at,city_code\n"
    one = write(tmp_path, "a.csv", header + "T1,C1,2025-02-01 08:00:00,330700\n")
    two = write(
        tmp_path,
        "b.csv",
        header + "T1,C1,2025-02-01 08:00:00,330700\nT3,C3,2025-02-02 08:00:00,330700\n",
    )
    reports = ingest_paths(services, source="transit", paths=[one, two])
    assert [(r.loaded, r.redelivered) for r in reports] == [(1, 0), (1, 1)]


def test_bad_rows_are_quarantined_with_line_and_reason(services: Services, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "transit_bad.csv",
        "record_id,card_no,tapped_at,city_code\n"
        "T1,C1,2025-02-01 08:00:00,330700\n"
        "T2,C1,not a time,330700\n"
        "T3,C1\n",
    )
    (report,) = ingest_paths(services, source="transit", paths=[path])
    assert (report.rows_read, report.loaded, report.quarantined) == (3, 1, 2)
    with session_scope(services.sessions) as session:
        rows = session.scalars(select(QuarantinedRow).order_by(QuarantinedRow.line)).all()
    assert [(r.file_name, r.line) for r in rows] == [("transit_bad.csv", 3), ("transit_bad.csv", 4)]
    assert "tapped_at" in rows[0].reason and "not a time" in rows[0].raw


def test_a_nul_character_quarantines_its_row_not_the_delivery(
    services: Services, tmp_path: Path
) -> None:
    # PostgreSQL stores no text holding a NUL: a roll row naming one failed the whole file.
    roll = REGISTRY.replace("王五", "王\x00五")
    (report,) = ingest_paths(services, source="registry", paths=[write(tmp_path, "r.csv", roll)])
    assert (report.status, report.loaded + report.redelivered, report.quarantined) == (
        "loaded", 2, 1,
    )  # fmt: skip
    taps = write(
        tmp_path, "transit_nul.csv",
        "record_id,card_no,tapped_at,city_code\nT\x009,C1,2025-02-01 08:00:00,330700\n",
    )  # fmt: skip
    (trace,) = ingest_paths(services, source="transit", paths=[taps])
    assert (trace.loaded, trace.quarantined) == (0, 1)
    with session_scope(services.sessions) as session:
        rows = session.scalars(select(QuarantinedRow).order_by(QuarantinedRow.id)).all()
    assert [r.reason for r in rows] == [
        "name 王\\x00五 holds a NUL character", "record_id T\\x009 holds a NUL character",
    ]  # fmt: skip
    assert "王\\x00五" in rows[0].raw and "\x00" not in rows[0].raw


def test_an_undecodable_file_is_refused_whole(services: Services, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cremation.csv",
        "record_id,id_number,name,died_on,cremated_on\nR1,330702194501011230,张三,2025-01-05,2025-01-07\n",
        encoding="gb18030",
    )
    (report,) = ingest_paths(services, source="cremation", paths=[path], encoding="utf-8")
    assert report.status == "refused"
    assert "byte" in (report.error or "") and "cremation.csv" in (report.error or "")
    with session_scope(services.sessions) as session:
        assert session.scalar(select(func.count()).select_from(DeathRecord)) == 0
        delivery = session.scalars(select(Delivery).where(Delivery.source == "cremation")).one()
        assert delivery.status == "refused" and delivery.rows_loaded == 0


def test_cards_link_only_while_valid(services: Services, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "transit.csv",
        "record_id,card_no,tapped_at,city_code\n"
        "T1,C1,2025-02-28 08:00:00,330700\n"  # C1 valid until its cancellation on 03-01
        "T2,C1,2025-03-02 08:00:00,330700\n"  # cancelled: a relative, or a lost card
        "T3,C2,2025-03-02 08:00:00,330700\n"
        "T4,C9,2025-03-02 08:00:00,330700\n",  # no such card: kept, unmatched
    )
    (report,) = ingest_paths(services, source="transit", paths=[path])
    assert (report.loaded, report.unmatched) == (4, 2)
    with session_scope(services.sessions) as session:
        table = services.store.read_table(
            session, source="transit", columns=["record_id", "person_id", "link_key"]
        ).to_pandas()
    linked = dict(zip(table["record_id"], table["person_id"], strict=True))
    assert linked["T1"] == linked["T3"] > 0
    assert linked["T2"] == linked["T4"] == -1


def test_a_death_record_naming_someone_else_opens_a_review_and_suspends_nobody(
    services: Services, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "cremation.csv",
        "record_id,id_number,name,sex,birth_date,died_on,cremated_on\n"
        # P1's number with another name: a typo or a wrong report, never a suspension.
        "R1,330702194501011230,赵六,男,1944-01-01,2025-01-05,2025-01-07\n"
        # No number: name, sex and birth date identify P2 unambiguously.
        "R2,,李四,女,1950-02-02,2025-02-10,2025-02-12\n",
        encoding="gb18030",
    )
    (report,) = ingest_paths(services, source="cremation", paths=[path])
    assert report.loaded == 2
    with session_scope(services.sessions) as session:
        matches = dict(session.execute(select(DeathRecord.record_id, DeathRecord.match)).all())
        assert matches == {"R1": DeathMatch.NAME_MISMATCH, "R2": DeathMatch.DEMOGRAPHIC}
        run = certify(
            session, as_of=dt.date(2025, 4, 15), store=services.store, policies=services.policies
        )
        entries = session.execute(
            select(ListEntry.person_id, ListEntry.effective_on, ListEntry.amount)
        ).all()
        reviews = session.scalars(
            select(ReviewTask).where(ReviewTask.kind == TaskKind.DEATH_REVIEW)
        ).all()
    assert run.report["levels"]["deceased"] == 1
    assert len(entries) == 1
    # P2 died on 02-10: March and April were paid in advance on the 1st, to nobody entitled.
    assert entries[0].effective_on == dt.date(2025, 2, 11)
    assert float(entries[0].amount) == pytest.approx(2 * 2500.50)
    assert len(reviews) == 1 and reviews[0].reasons["record"]["record_id"] == "R1"


def test_evidence_parts_appear_only_with_their_delivery(services: Services, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "transit.csv",
        "record_id,card_no,tapped_at,city_code\nT1,C1,2025-01-31 23:30:00,330700\n"
        "T2,C1,2025-02-01 00:30:00,330700\n",
    )
    ingest_paths(services, source="transit", paths=[path])
    with session_scope(services.sessions) as session:
        months = sorted(session.scalars(select(EvidencePart.month)))
    # Timestamps are local (+08:00): the two taps fall in two months and two partitions.
    assert months == ["2025-01", "2025-02"]
