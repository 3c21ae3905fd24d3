"""The snapshot's roll: read in bulk, exact whatever its text holds, and never left running."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from liveness.db import FIELD_SEP
from liveness.errors import RollMissing
from liveness.evidence.health import load_health_policy
from liveness.evidence.roll import roll_frame
from liveness.evidence.snapshot import take_snapshot
from liveness.evidence.store import EvidenceStore
from liveness.scoring import load_policy
from models import Benefit, BenefitStatus, BenefitType, Person
from tests.liveness.conftest import REPO


def person(session: Session, ref: str, grid: str, *benefits: tuple[str, str, str]) -> int:
    """Add a person with benefits (type, amount, status); return their id."""
    row = Person(
        person_ref=ref, id_number=f"N{ref}", id_status="valid", name="张", sex="F",
        birth_date=dt.date(1950, 1, 1), region_code="330102", grid_code=grid,
    )  # fmt: skip
    session.add(row)
    session.flush()
    for kind, amount, status in benefits:
        session.add(
            Benefit(
                person_id=row.id, benefit_type=BenefitType(kind), monthly_amount=Decimal(amount),
                benefit_start=dt.date(2010, 1, 1), status=BenefitStatus(status),
            )
        )  # fmt: skip
    session.flush()
    return row.id


def test_the_roll_holds_each_drawing_person_once_with_their_total(session: Session) -> None:
    a = person(session, "A", "G1", ("enterprise_pension", "3000.50", "active"),
               ("survivor_pension", "500.25", "active"))  # fmt: skip
    person(session, "B", "G2", ("resident_pension", "200.00", "terminated"))
    c = person(session, "C", "G1", ("resident_pension", "210.10", "suspended"))
    roll = roll_frame(session)
    assert roll["person_id"].tolist() == [a, c]
    assert roll["person_ref"].tolist() == ["A", "C"]
    assert roll["grid_code"].tolist() == ["G1", "G1"]
    assert roll["benefit_type"].tolist() == ["enterprise_pension", "resident_pension"]
    assert roll["monthly_amount"].tolist() == pytest.approx([3500.75, 210.10])
    assert roll["benefit_status"].tolist() == ["active", "suspended"]


@pytest.mark.parametrize("odd", [FIELD_SEP, "\n", "a\nb" + FIELD_SEP, ""])
def test_text_that_would_break_the_bulk_read_is_read_exactly(session: Session, odd: str) -> None:
    person(session, "A", "G1", ("enterprise_pension", "1.00", "active"))
    person(session, f"B{odd}x", f"G{odd}", ("enterprise_pension", "2.00", "active"))
    person(session, "C", "G3", ("enterprise_pension", "3.00", "active"))
    roll = roll_frame(session)
    assert roll["person_ref"].tolist() == ["A", f"B{odd}x", "C"]
    assert roll["grid_code"].tolist() == ["G1", f"G{odd}", "G3"]


def test_a_carriage_return_ending_a_line_is_kept(session: Session) -> None:
    # The region is the last field of a person's line: "\r\n" would read as one line break.
    first = person(session, "A", "G1", ("enterprise_pension", "1.00", "active"))
    person(session, "B", "G2", ("enterprise_pension", "2.00", "active"))
    session.execute(update(Person).where(Person.id == first).values(region_code="33010\r"))
    assert roll_frame(session)["region_code"].tolist() == ["33010\r", "330102"]


def test_an_empty_roll_is_refused_and_stops_the_reading(session: Session, tmp_path: Path) -> None:
    with pytest.raises(RollMissing):
        take_snapshot(
            session, as_of=dt.date(2025, 6, 30), store=EvidenceStore(tmp_path / "evidence"),
            scoring=load_policy(REPO / "config" / "scoring.toml"),
            health=load_health_policy(REPO / "config" / "health.toml"),
        )  # fmt: skip
