"""Death notices under random sequences: register, correct, void, in any order, repeated.

A model kept by the test follows each registry record (its content as last stored, whether it
stands, whether its content identifies the person positively) by the rules of corrections
and voids, and counts the back pay itself. After every run: nobody is suspended but on a
standing, positively identified notice; everyone else is paid, a withdrawn death paid back.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.ingest.notices import DeathNotice, receive_death_notices
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import Settings
from liveness.simulate.identity import compose_id17, full_id_numbers
from models import (
    Benefit,
    BenefitStatus,
    BenefitType,
    DeathMatch,
    DeathRecord,
    ListAction,
    ListEntry,
    Person,
    RecordStatus,
    Run,
)
from tests.liveness.conftest import REPO

REFS = ("P1", "P2", "P3")
MONTHLY = Decimal("3000.00")
RUNS = (dt.date(2025, 6, 30), dt.date(2025, 7, 31), dt.date(2025, 8, 31))
# How a notice identifies its person: positively (number, name, birth date), by number and
# name alone, without a number (name, sex, birth date), or by number under another name.
WAYS = ("positive", "number_and_name", "no_number", "wrong_name")


def _paid_after(after: dt.date, until: dt.date) -> int:
    """Count the payment days (the 1st) d with after < d <= until, day by day."""
    count, day = 0, after + dt.timedelta(days=1)
    while day <= until:
        count += day.day == 1
        day += dt.timedelta(days=1)
    return count


@dataclass
class Stored:
    """What the engine should hold of one registry record."""

    content: tuple[object, ...]
    positive: bool
    standing: bool


def _template() -> Path:
    """Migrate one SQLite database once; each example starts from a copy of it."""
    folder = Path(tempfile.mkdtemp(prefix="notices-"))
    path = folder / "template.sqlite"
    services = Services(_settings(path, folder))
    upgrade(services.engine)
    numbers = full_id_numbers(
        compose_id17(
            region=np.full(len(REFS), 110101, dtype=np.int64),
            birth_ymd=np.full(len(REFS), 19500101, dtype=np.int64),
            seq=np.arange(1, len(REFS) + 1, dtype=np.int64) * 2 + 1,
        )
    )
    with session_scope(services.sessions) as session:
        for ref, number in zip(REFS, numbers, strict=True):
            person = Person(
                person_ref=ref, id_number=str(number), id_status="valid", name=f"王{ref}",
                sex="M", birth_date=dt.date(1950, 1, 1), region_code="110101", grid_code="G1",
            )  # fmt: skip
            session.add(person)
            session.flush()
            session.add(
                Benefit(
                    person_id=person.id, benefit_type=BenefitType.ENTERPRISE_PENSION,
                    monthly_amount=MONTHLY, benefit_start=dt.date(2010, 1, 1),
                    status=BenefitStatus.ACTIVE,
                )
            )  # fmt: skip
    services.engine.dispose()
    return path


def _settings(path: Path, folder: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{path}", evidence_dir=folder / "evidence",
        config_dir=REPO / "config",
    )  # fmt: skip


TEMPLATE: list[Path] = []


class Notices(RuleBasedStateMachine):
    """Random registry events about three persons' deaths, and monthly runs."""

    def __init__(self) -> None:
        super().__init__()
        if not TEMPLATE:
            TEMPLATE.append(_template())
        self.folder = Path(tempfile.mkdtemp(prefix="notices-example-"))
        path = self.folder / "state.sqlite"
        shutil.copy(TEMPLATE[0], path)
        self.services = Services(_settings(path, self.folder))
        with session_scope(self.services.sessions) as session:
            self.numbers = {p.person_ref: p.id_number for p in session.scalars(select(Person))}
        self.model: dict[str, Stored] = {}
        self.runs = 0
        # Per person, the run that suspended them (None: paid).
        self.suspended_at: dict[str, dt.date | None] = dict.fromkeys(REFS)

    def teardown(self) -> None:
        """Close the example's database and remove its folder."""
        self.services.engine.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)

    @rule(
        ref=st.sampled_from(REFS),
        event=st.sampled_from(("registered", "corrected", "voided")),
        way=st.sampled_from(WAYS),
        died=st.integers(min_value=0, max_value=150),
    )
    def notify(self, ref: str, event: str, way: str, died: int) -> None:
        """Send one event about `ref`'s registry record."""
        died_on = dt.date(2025, 1, 1) + dt.timedelta(days=died)
        notice = DeathNotice(
            event=event, record_id=f"R-{ref}", died_on=died_on.isoformat(),
            registered_on=died_on + dt.timedelta(days=2),
            name=f"李{ref}" if way == "wrong_name" else f"王{ref}",
            id_number=None if way == "no_number" else self.numbers[ref],
            sex="M" if way == "no_number" else None,
            birth_date=None if way == "number_and_name" else dt.date(1950, 1, 1),
        )  # fmt: skip
        with session_scope(self.services.sessions) as session:
            [ack] = receive_death_notices(session, notices=[notice], demographic_confidence=0.9)
        content = (notice.id_number, notice.name, notice.birth_date, died_on)
        known = self.model.get(ref)
        positive = way == "positive"
        if event == "registered":
            if known is None:
                self.model[ref] = Stored(content, positive, standing=True)
            elif known.content != content:
                assert ack.status == "conflict"
        elif event == "corrected":
            self.model[ref] = Stored(content, positive, standing=True)
        elif known is None:
            self.model[ref] = Stored(content, positive, standing=False)
        else:
            known.standing = False
        stored = self.model[ref]
        if ack.status in ("accepted", "duplicate"):
            if not stored.standing:
                assert ack.outcome == "withdrawn"
            elif stored.positive:
                assert ack.outcome == "matched"
            else:
                assert ack.outcome == "ambiguous"

    @precondition(lambda self: self.runs < len(RUNS))
    @rule()
    def run(self) -> None:
        """Run the engine at the next month's end; check who is paid, and the back pay."""
        as_of = RUNS[self.runs]
        self.runs += 1
        execute_run(self.services, as_of=as_of)
        with session_scope(self.services.sessions) as session:
            for ref in REFS:
                person = session.scalars(select(Person).where(Person.person_ref == ref)).one()
                benefit = session.scalars(
                    select(Benefit).where(Benefit.person_id == person.id)
                ).one()
                stored = self.model.get(ref)
                dead = stored is not None and stored.standing and stored.positive
                assert (benefit.status == BenefitStatus.SUSPENDED) == dead, (ref, stored)
                entries = session.scalars(
                    select(ListEntry).where(ListEntry.person_id == person.id,
                                            ListEntry.run_id == _run_id(session, as_of))
                ).all()  # fmt: skip
                began = self.suspended_at[ref]
                if began is not None and not dead:
                    [back] = [e for e in entries if e.action == ListAction.REINSTATE]
                    assert back.amount == MONTHLY * _paid_after(began, as_of)
                self.suspended_at[ref] = (began or as_of) if dead else None

    @invariant()
    def nobody_acts_without_positive_identification(self) -> None:
        """Only a standing, positively identified notice may act as a death."""
        with session_scope(self.services.sessions) as session:
            acting = session.scalars(
                select(DeathRecord.record_id).where(
                    DeathRecord.match == DeathMatch.ID_NUMBER,
                    DeathRecord.status == RecordStatus.ACTIVE,
                )
            ).all()
        expected = {f"R-{ref}" for ref, s in self.model.items() if s.standing and s.positive}
        assert set(acting) == expected


def _run_id(session: Session, as_of: dt.date) -> int:
    return int(session.scalars(select(Run.id).where(Run.as_of == as_of)).one())


Notices.TestCase.settings = settings(
    max_examples=15, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow], database=None,
)  # fmt: skip
TestNotices = Notices.TestCase
