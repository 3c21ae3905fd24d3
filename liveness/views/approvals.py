"""The approvals inbox: held reinstatements waiting for a second operator, oldest first.

Read only. An entry waits while its benefit still holds it (`Benefit.held_entry_id`, as
`liveness.lists.approve_entry` checks): one a later death superseded, or already approved or
rejected, is not listed. Identity numbers are masked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liveness.views.masking import mask_id_number
from models import Benefit, ListEntry, ListEntryStatus, Person, Run


@dataclass(frozen=True)
class WaitingApproval:
    """One held reinstatement waiting for a decision, with whose benefit it is."""

    entry_id: int
    seq: int
    person_ref: str
    name: str
    id_number_masked: str
    benefit_type: str
    amount: Decimal
    effective_on: dt.date
    reason: str
    caused_by: str
    run_id: int
    run_as_of: dt.date
    held_since: dt.datetime


def _waiting() -> list[object]:
    """Return the conditions of a held entry that still waits for a decision."""
    return [
        ListEntry.status == ListEntryStatus.HELD,
        ListEntry.approved_by.is_(None),
        ListEntry.rejected_by.is_(None),
    ]


def waiting_approvals(
    session: Session, *, limit: int | None, offset: int
) -> tuple[list[WaitingApproval], int]:
    """Return a page of the held reinstatements waiting for approval (oldest first), and a count."""
    joined = (
        select(ListEntry.id).join(Benefit, Benefit.held_entry_id == ListEntry.id).where(*_waiting())  # type: ignore[arg-type]
    )
    total = session.scalar(select(func.count()).select_from(joined.subquery())) or 0
    rows = session.execute(
        select(
            ListEntry.id, ListEntry.seq, Person.person_ref, Person.name, Person.id_number,
            Benefit.benefit_type, ListEntry.amount, ListEntry.effective_on, ListEntry.reason,
            ListEntry.caused_by, ListEntry.run_id, Run.as_of, ListEntry.created_at,
        )
        .join(Benefit, Benefit.held_entry_id == ListEntry.id)
        .join(Person, Person.id == ListEntry.person_id)
        .join(Run, Run.id == ListEntry.run_id)
        .where(*_waiting())  # type: ignore[arg-type]
        .order_by(ListEntry.seq)
        .limit(limit)
        .offset(offset)
    ).all()  # fmt: skip
    return [
        WaitingApproval(
            entry_id=row.id, seq=row.seq, person_ref=row.person_ref, name=row.name,
            id_number_masked=mask_id_number(row.id_number),
            benefit_type=str(row.benefit_type), amount=row.amount,
            effective_on=row.effective_on, reason=str(row.reason), caused_by=row.caused_by,
            run_id=row.run_id, run_as_of=row.as_of, held_since=row.created_at,
        )
        for row in rows
    ], int(total)  # fmt: skip
