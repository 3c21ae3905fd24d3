"""The certification workflow across runs: suspension, reinstatement, reviews and lapses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from liveness.access.gateways import mark_notice_sent
from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.ingest.runner import ingest_paths
from liveness.lists import ApprovalRefused, approve_entry
from liveness.review.outcomes import OutcomeInvalid, record_outcome
from liveness.services import Services
from models import (
    Benefit,
    Certification,
    DeathRecord,
    ListEntry,
    Notice,
    Person,
    RecordStatus,
    ReviewTask,
    Run,
    TaskKind,
)
from tests.liveness.ingest.test_ingest import CARDS, REGISTRY

Row = TypeVar("Row")

P1 = ("330702194501011230", "张三")  # 3000.00 a month
P2 = ("330702195002021228", "李四")  # 2500.50 a month
CREMATION = "record_id,id_number,name,sex,birth_date,died_on,cremated_on{extra}\n"
FACE = "record_id,id_number,verified_at,result,channel\n"


class City:
    """A three-person roll that a test drives through runs, deliveries and outcomes."""

    def __init__(self, services: Services, folder: Path) -> None:
        self.services = services
        self.folder = folder
        self.files = 0

    @classmethod
    def on_roll(cls, services: Services, folder: Path) -> City:
        """Return a city whose roll and cards are delivered."""
        place = cls(services, folder)
        place.deliver("registry", REGISTRY)
        place.deliver("cards", CARDS)
        return place

    def deliver(self, source: str, text: str, encoding: str = "utf-8") -> None:
        self.files += 1
        path = self.folder / f"{source}_{self.files}.csv"
        path.write_bytes(text.encode(encoding))
        (report,) = ingest_paths(self.services, source=source, paths=[path])
        assert report.error is None and report.quarantined == 0, report

    def cremation(self, *rows: str, correction: bool = False, voided: bool = False) -> None:
        extra = ",correction,voided" if voided else ",correction" if correction else ""
        self.deliver("cremation", CREMATION.format(extra=extra) + "".join(rows), "gb18030")

    def face(self, *rows: str) -> None:
        """Deliver face verifications: record_id,id_number,verified_at,result,channel rows."""
        self.deliver("face", FACE + "".join(rows))

    def run(self, day: str) -> int:
        run = execute_run(self.services, as_of=dt.date.fromisoformat(day))
        assert run.status == "published", run.report.get("guard")
        return run.id

    def report(self, run_id: int) -> dict[str, Any]:
        with session_scope(self.services.sessions) as session:
            return dict(session.get_one(Run, run_id).report)

    def send_notices(self, *, on: dt.date, ref: str | None = None, template: str | None = None,
                     channel: str | None = None) -> int:  # fmt: skip
        """Mark pending notices sent on a day, as the messaging gateway would."""
        with session_scope(self.services.sessions) as session:
            query = select(Notice.id).join(Person).where(Notice.status == "pending")
            if ref is not None:
                query = query.where(Person.person_ref == ref)
            if template is not None:
                query = query.where(Notice.template == template)
            ids = list(session.scalars(query))
            for notice_id in ids:
                mark_notice_sent(
                    session, notice_id=notice_id, channel=channel,
                    sent_at=dt.datetime.combine(on, dt.time(2), tzinfo=dt.UTC),
                )  # fmt: skip
        return len(ids)

    def outcome(self, ref: str, kind: TaskKind, outcome: str, on: str, **fields: Any) -> int:
        """Record the outcome of a person's latest task of a kind; return the task's id."""
        task = self.task(ref, kind)
        assert task is not None and task.status in ("open", "claimed"), task
        with session_scope(self.services.sessions) as session:
            record_outcome(session, task_id=task.id, outcome=outcome, actor="worker-1",
                           on=dt.date.fromisoformat(on), **fields)  # fmt: skip
        return task.id

    def benefit(self, ref: str) -> Benefit:
        with session_scope(self.services.sessions) as session:
            return session.scalars(
                select(Benefit).join(Person).where(Person.person_ref == ref)
            ).one()

    def entries(self, person_ref: str) -> list[ListEntry]:
        return self._of(ListEntry, person_ref, order=ListEntry.seq)

    def certifications(self, person_ref: str) -> list[Certification]:
        """Return a person's certifications, oldest first."""
        return self._of(Certification, person_ref, order=Certification.id)

    def _of(self, model: type[Row], person_ref: str, *, order: Any) -> list[Row]:
        """Return a person's rows of `model` (one with a person_id), in `order`."""
        with session_scope(self.services.sessions) as session:
            return list(
                session.scalars(
                    select(model)
                    .join(Person, Person.id == model.person_id)
                    .where(Person.person_ref == person_ref)
                    .order_by(order)
                )
            )

    def task(self, person_ref: str, kind: TaskKind) -> ReviewTask | None:
        with session_scope(self.services.sessions) as session:
            return session.scalars(
                select(ReviewTask)
                .join(Person, Person.id == ReviewTask.person_id)
                .where(Person.person_ref == person_ref, ReviewTask.kind == kind)
                .order_by(ReviewTask.id.desc())
            ).first()


@pytest.fixture(params=["sqlite", "postgresql"])
def city(
    request: pytest.FixtureRequest, services_factory: Callable[[str], Services], tmp_path: Path
) -> City:
    return City.on_roll(services_factory(request.param), tmp_path)


def hold_back_pay(city: City) -> ListEntry:
    """Suspend P1 on a death record, prove them alive in June; return the held reinstatement."""
    city.cremation(f"R1,{P1[0]},{P1[1]},男,1945-01-01,2025-01-10,2025-01-12\n")
    city.run("2025-01-31")
    city.face(f"V1,{P1[0]},2025-06-15 10:00:00,pass,kiosk\n")
    city.run("2025-06-30")
    held = city.entries("P1")[-1]
    assert held.status == "held" and held.amount == Decimal("15000.00")  # Feb to June
    return held


def test_a_death_is_suspended_in_the_first_run_after_its_record_arrives(city: City) -> None:
    # P2 died on 01-20; the cremation record only reaches the agency dated 03-05.
    city.run("2025-02-28")
    city.cremation(f"R1,{P2[0]},{P2[1]},女,1950-02-02,2025-01-20,2025-03-05\n")
    city.run("2025-03-04")
    assert city.entries("P2") == []
    city.run("2025-03-31")
    (entry,) = city.entries("P2")
    assert (entry.action, entry.reason) == ("suspend", "deceased")
    assert entry.effective_on == dt.date(2025, 1, 21)
    # February and March were paid in advance on the 1st to nobody entitled.
    assert entry.amount == Decimal("5001.00")
    city.run("2025-04-30")
    assert len(city.entries("P2")) == 1
    # Uncontested for the policy's 180 days after the suspending run, the benefit ends.
    city.run("2025-08-31")
    assert len(city.entries("P2")) == 1
    city.run("2025-09-30")
    _, termination = city.entries("P2")
    assert (termination.action, termination.effective_on) == ("terminate", dt.date(2025, 1, 21))
    city.run("2025-10-31")
    assert len(city.entries("P2")) == 2


def test_a_face_pass_after_a_suspension_reinstates_with_back_pay_and_refutes_the_record(
    city: City,
) -> None:
    city.cremation(f"R1,{P1[0]},{P1[1]},男,1945-01-01,2025-01-10,2025-01-12\n")
    city.run("2025-01-31")
    (suspension,) = city.entries("P1")
    assert suspension.reason == "deceased"
    # The person is alive after all and passes a face verification on their own phone.
    city.deliver(
        "face",
        "record_id,id_number,verified_at,result,channel,score\n"
        f"V1,{P1[0]},2025-03-15 10:00:00,pass,app,0.95\n",
    )
    city.run("2025-03-31")
    suspension, reinstatement = city.entries("P1")
    assert (reinstatement.action, reinstatement.reason) == ("reinstate", "proof_of_life")
    # Withheld: the payments of 02-01 and 03-01, after the suspending run of 01-31.
    assert reinstatement.amount == Decimal("6000.00")
    assert reinstatement.status == "published"
    with session_scope(city.services.sessions) as session:
        record = session.scalars(select(DeathRecord)).one()
        benefit = session.scalars(
            select(Benefit).join(Person).where(Person.person_ref == "P1")
        ).one()
    assert record.status == RecordStatus.REFUTED and benefit.status == "active"
    city.run("2025-04-30")
    assert len(city.entries("P1")) == 2


def test_a_large_back_pay_waits_for_a_second_operator(city: City) -> None:
    held = hold_back_pay(city)
    with session_scope(city.services.sessions) as session:
        with pytest.raises(ApprovalRefused):
            approve_entry(session, entry_id=held.id, operator=held.caused_by)
        approval = approve_entry(session, entry_id=held.id, operator="operator-2")
    assert approval.seq > held.seq and approval.status == "published"
    assert approval.detail["approves_seq"] == held.seq


def test_a_death_record_voided_by_its_source_reinstates(city: City) -> None:
    city.cremation(f"R1,{P2[0]},{P2[1]},女,1950-02-02,2025-01-20,2025-01-22\n")
    city.run("2025-01-31")
    # The funeral home corrects its record: it was someone else, not on the roll.
    city.cremation(
        "R1,110101195001011230,王某,女,1950-02-02,2025-01-20,2025-01-22,true\n", correction=True
    )
    city.run("2025-02-28")
    _, reinstatement = city.entries("P2")
    assert (reinstatement.action, reinstatement.reason) == ("reinstate", "death_withdrawn")
    assert reinstatement.amount == Decimal("2500.50")  # the payment of 02-01


def test_visit_outcomes_certify_suspend_and_reinstate(city: City) -> None:
    # No traces at all: everyone is weak; certifications end on 2025-06-01.
    city.run("2025-04-30")
    visit = city.task("P1", TaskKind.HOME_VISIT)
    assert visit is not None and visit.status == "open"
    with session_scope(city.services.sessions) as session:
        with pytest.raises(OutcomeInvalid, match="died_on"):
            record_outcome(session, task_id=visit.id, outcome="deceased", actor="w1",
                           on=dt.date(2025, 5, 3))  # fmt: skip
        # A review after today, or before its task opened (2025-04-30), is a mistyped day.
        with pytest.raises(OutcomeInvalid, match="on: the review day 2999-05-03 is after today"):
            record_outcome(session, task_id=visit.id, outcome="deceased", actor="w1",
                           on=dt.date(2999, 5, 3), died_on=dt.date(2999, 5, 1),
                           today=dt.date(2025, 5, 5))  # fmt: skip
        with pytest.raises(OutcomeInvalid, match="before the task opened \\(2025-04-30\\)"):
            record_outcome(session, task_id=visit.id, outcome="imprisoned", actor="w1",
                           on=dt.date(2025, 4, 29))  # fmt: skip
        record_outcome(session, task_id=visit.id, outcome="imprisoned", actor="w1",
                       on=dt.date(2025, 5, 3))  # fmt: skip
        # The same outcome again changes nothing; another one is refused.
        record_outcome(session, task_id=visit.id, outcome="imprisoned", actor="w1",
                       on=dt.date(2025, 5, 3))  # fmt: skip
        with pytest.raises(OutcomeInvalid):
            record_outcome(session, task_id=visit.id, outcome="refused", actor="w1",
                           on=dt.date(2025, 5, 3))  # fmt: skip
        other = city.task("P2", TaskKind.HOME_VISIT)
        assert other is not None
        record_outcome(session, task_id=other.id, outcome="alive_confirmed", actor="w1",
                       on=dt.date(2025, 5, 4))  # fmt: skip
    city.run("2025-05-31")
    (prison,) = city.entries("P1")
    assert (prison.reason, prison.effective_on) == ("imprisoned", dt.date(2025, 6, 1))
    assert city.entries("P2") == []
    with session_scope(city.services.sessions) as session:
        sources = session.execute(
            select(Person.person_ref, Certification.source).join(Person)
        ).all()
    assert ("P2", "visit") in [(ref, str(source)) for ref, source in sources]


def test_a_death_dated_before_1970_suspends_and_one_before_birth_is_refused(city: City) -> None:
    """Day numbers count from 1970 (-1: no death): an early date of death is still a death."""
    city.run("2025-04-30")
    visit = city.task("P1", TaskKind.HOME_VISIT)
    assert visit is not None
    before_birth = r"died_on: .*1925-03-01 is before .*1945-01-01"
    with (
        session_scope(city.services.sessions) as session,
        pytest.raises(OutcomeInvalid, match=before_birth),
    ):
        record_outcome(session, task_id=visit.id, outcome="deceased", actor="w1",
                       on=dt.date(2025, 5, 3), died_on=dt.date(1925, 3, 1))  # fmt: skip
    # A year typed wrong, or a pension drawn in a dead man's name since it began.
    city.outcome("P1", TaskKind.HOME_VISIT, "deceased", "2025-05-03", died_on=dt.date(1965, 3, 1))
    # The household registry's record of a death as early: graded deceased like any other.
    city.deliver("deregistration", "record_id,id_number,name,deregistered_on,reason,died_on,"
                 f"new_id_number\nD1,{P2[0]},{P2[1]},2025-05-10,death,1969-12-31,\n")  # fmt: skip
    run_id = city.run("2025-05-31")
    # P2 graded deceased by the record, their visit cancelled (not weak, a grid worker sent to
    # a dead woman's door); P1's death applies through its task.
    assert city.report(run_id)["levels"]["deceased"] == 1
    p2_visit = city.task("P2", TaskKind.HOME_VISIT)
    assert p2_visit is not None and p2_visit.status == "cancelled"
    for ref, monthly, start in (("P1", "3000.00", 2005), ("P2", "2500.50", 2010)):
        (entry,) = city.entries(ref)
        assert (entry.action, entry.reason) == ("suspend", "deceased"), ref
        assert city.benefit(ref).status == "suspended"
        # Every monthly payment from the benefit's start (P1 2005-01, P2 2010-02) to the
        # run's month was owed to nobody.
        paid = (2025 - start) * 12 + 5 - (1 if ref == "P2" else 0)
        assert entry.amount == Decimal(monthly) * paid, ref


def test_nobody_is_suspended_for_the_agencys_own_overdue_review(city: City) -> None:
    # Nobody leaves a trace; certifications lapse on 06-01; the visits stay unrecorded. Even
    # with every lapse notice sent and its period long past, the overdue visit is the
    # agency's delay: it escalates, it never suspends.
    for day in ("2025-04-30", "2025-05-31", "2025-06-15"):
        city.run(day)
    city.send_notices(on=dt.date(2025, 6, 16))
    for day in ("2025-06-30", "2025-07-31", "2025-09-30"):
        run_id = city.run(day)
    assert all(city.entries(ref) == [] for ref in ("P1", "P2", "P3"))
    report = city.report(run_id)
    assert report["lapse_waiting"]["review_pending"] == 2
    assert report["overdue_reviews"]["total"] == 3
    assert report["overdue_reviews"]["grids"][0]["oldest_due_on"] == "2025-05-30"
