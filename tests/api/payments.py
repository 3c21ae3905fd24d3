"""Payment histories written straight into the tables, as the payment state machine leaves them.

The workflow that writes them is being rewritten; these rows are what it is specified to
leave (README, "The money path"), so that the read side can be tested on its own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, func, insert, literal, select
from sqlalchemy.orm import Session

from liveness.db import session_scope
from liveness.services import Services
from models import (
    Assessment,
    Benefit,
    BenefitStatus,
    BenefitType,
    ListAction,
    ListEntry,
    ListEntryStatus,
    ListReason,
    PaymentEvent,
    Person,
    Run,
    RunStatus,
    utcnow,
)

# The runs of the story after the world's own (2025-05-30); the approval comes in the last.
AMENDED_ON = dt.date(2025, 6, 30)
REINSTATED_ON = dt.date(2025, 9, 30)
BACK_PAY = Decimal("12000.00")  # 4 payment days withheld (June to September) x 3,000.00


@dataclass
class Story:
    """The ids a payment history was written with."""

    person_ref: str
    benefit_id: int
    held_id: int
    held_seq: int
    run_id: int


def _next_seq(session: Session) -> int:
    return int(session.scalar(select(func.max(ListEntry.seq))) or 0) + 1


def _run(session: Session, *, as_of: dt.date, like: int) -> Run:
    """Add a published run, with the levels of run `like`, so that pages stay populated."""
    run = Run(as_of=as_of, status=RunStatus.PUBLISHED, policy_version="test", report={"x": 1})
    session.add(run)
    session.flush()
    columns = (Assessment.person_id, Assessment.level, Assessment.score, Assessment.rule,
               Assessment.reasons, Assessment.policy_version)  # fmt: skip
    session.execute(
        insert(Assessment).from_select(
            ["run_id", *(c.key for c in columns)],
            select(literal(run.id, Integer), *columns).where(Assessment.run_id == like),
        )
    )
    return run


def _entry(session: Session, **values: Any) -> ListEntry:
    entry = ListEntry(seq=_next_seq(session), **values)
    session.add(entry)
    session.flush()
    return entry


def suspend_amend_hold(services: Services, *, person_ref: str, run_id: int) -> Story:
    """Write a benefit suspended for a lapse, amended by a death, its reinstatement held.

    Run `run_id` (2025-05-30) suspends for the lapse from the next payment day; a cremation
    record amends it to a death on 2025-06-15 (nothing overpaid: payment already stopped);
    a visit finds the person alive, and the back pay of 12,000.00 waits for approval.
    """
    with session_scope(services.sessions) as session:
        person = session.scalars(select(Person).where(Person.person_ref == person_ref)).one()
        benefit = session.scalars(select(Benefit).where(Benefit.person_id == person.id)).first()
        assert benefit is not None
        common = {"person_id": person.id, "benefit_id": benefit.id}
        _entry(
            session, **common, run_id=run_id, action=ListAction.SUSPEND,
            reason=ListReason.LAPSED, event=PaymentEvent.LAPSE,
            effective_on=dt.date(2025, 6, 1), amount=Decimal("0.00"),
            status=ListEntryStatus.PUBLISHED,
            detail={"certification_ended": "2025-03-31", "notice_sent_on": "2025-04-02"},
        )  # fmt: skip
        amended = _run(session, as_of=AMENDED_ON, like=run_id)
        _entry(
            session, **common, run_id=amended.id, action=ListAction.AMEND,
            reason=ListReason.DECEASED, event=PaymentEvent.DEATH,
            effective_on=dt.date(2025, 6, 16), amount=Decimal("0.00"),
            status=ListEntryStatus.PUBLISHED,
            detail={"source": "cremation", "record_id": "HZ-2025-0042",
                    "died_on": "2025-06-15", "months_overpaid": 0},
        )  # fmt: skip
        reinstated = _run(session, as_of=REINSTATED_ON, like=run_id)
        held = _entry(
            session, **common, run_id=reinstated.id, action=ListAction.REINSTATE,
            reason=ListReason.PROOF_OF_LIFE, event=PaymentEvent.PROOF_OF_LIFE,
            effective_on=dt.date(2025, 10, 1), amount=BACK_PAY, status=ListEntryStatus.HELD,
            caused_by="grid_worker",
            detail={"outcome": "alive_confirmed", "suspended_for": "deceased",
                    "months_back_paid": 4,
                    "withheld_payments": ["2025-06-01", "2025-07-01", "2025-08-01",
                                          "2025-09-01"]},
        )  # fmt: skip
        benefit.status = BenefitStatus.SUSPENDED
        benefit.roll_status = BenefitStatus.ACTIVE
        benefit.suspension_reason = ListReason.DECEASED
        benefit.prior_reason = ListReason.LAPSED
        benefit.suspended_from = dt.date(2025, 6, 16)
        benefit.suspended_as_of = dt.date(2025, 5, 30)
        benefit.held_entry_id = held.id
        return Story(
            person_ref=person_ref, benefit_id=benefit.id, held_id=held.id, held_seq=held.seq,
            run_id=reinstated.id,
        )  # fmt: skip


def approve(services: Services, story: Story, *, operator: str) -> None:
    """Write a second operator's approval of the held reinstatement: the benefit is paid again."""
    with session_scope(services.sessions) as session:
        held = session.get_one(ListEntry, story.held_id)
        held.approved_by, held.approved_at = operator, utcnow()
        _entry(
            session, run_id=held.run_id, person_id=held.person_id, benefit_id=held.benefit_id,
            action=ListAction.REINSTATE, reason=held.reason, event=PaymentEvent.APPROVAL,
            effective_on=held.effective_on, amount=held.amount,
            status=ListEntryStatus.PUBLISHED, caused_by=held.caused_by, approved_by=operator,
            approved_at=held.approved_at, detail={"approves_seq": held.seq},
        )  # fmt: skip
        benefit = session.get_one(Benefit, story.benefit_id)
        benefit.status = BenefitStatus.ACTIVE
        benefit.suspension_reason = benefit.prior_reason = None
        benefit.suspended_from = benefit.suspended_as_of = None
        benefit.held_entry_id = None


# A benefit per other type, in each state the machine leaves one in: (type, status, reason).
STATES = [
    (BenefitType.RESIDENT_PENSION, BenefitStatus.SUSPENDED, ListReason.IMPRISONED),
    (BenefitType.SURVIVOR_PENSION, BenefitStatus.SUSPENDED, ListReason.DUPLICATE_IDENTITY),
    (BenefitType.UNEMPLOYMENT, BenefitStatus.SUSPENDED, ListReason.LAPSED),
    (BenefitType.INSTITUTION_PENSION, BenefitStatus.TERMINATED, ListReason.DECEASED),
    (BenefitType.WORK_INJURY_LONG_TERM, BenefitStatus.SUSPENDED, ListReason.DECEASED),
]


def every_value(services: Services, *, person_ref: str, run_id: int) -> None:
    """Give a person a history naming every action, reason and event, and a benefit per state.

    The entries cycle through each enumeration (as many as the longest has values); the
    values do not tell one story, they make the page say every word it may have to.
    """
    actions, reasons, events = list(ListAction), list(ListReason), list(PaymentEvent)
    with session_scope(services.sessions) as session:
        person = session.scalars(select(Person).where(Person.person_ref == person_ref)).one()
        first = session.scalars(select(Benefit).where(Benefit.person_id == person.id)).one()
        first.roll_status = BenefitStatus.SUSPENDED  # the roll disagrees with the list
        benefits = [first]
        for kind, status, reason in STATES:
            benefit = Benefit(
                person_id=person.id, benefit_type=kind, monthly_amount=Decimal("1500.00"),
                benefit_start=dt.date(2015, 1, 1), status=status, roll_status=status,
                suspension_reason=reason, suspended_from=dt.date(2025, 5, 1),
                suspended_as_of=dt.date(2025, 4, 30),
                prior_reason=ListReason.LAPSED if kind == BenefitType.WORK_INJURY_LONG_TERM
                else None,
            )  # fmt: skip
            session.add(benefit)
            benefits.append(benefit)
        session.flush()
        for index in range(max(len(actions), len(reasons), len(events))):
            benefit = benefits[index % len(benefits)]
            entry = _entry(
                session, run_id=run_id, person_id=person.id, benefit_id=benefit.id,
                action=actions[index % len(actions)], reason=reasons[index % len(reasons)],
                event=events[index % len(events)], effective_on=dt.date(2025, 6, 1),
                amount=Decimal("4500.00"),
                status=ListEntryStatus.HELD if index % 3 == 0 else ListEntryStatus.PUBLISHED,
                caused_by="review" if index % 2 else "system",
                detail={"source": "deregistration", "record_id": f"D{index}",
                        "new_id_number": "110101195001010015", "died_on": "2025-05-01",
                        "unknown_key": {"nested": [1, 2]}},
            )  # fmt: skip
            if benefit.status == BenefitStatus.SUSPENDED and entry.status == ListEntryStatus.HELD:
                benefit.held_entry_id = entry.id
