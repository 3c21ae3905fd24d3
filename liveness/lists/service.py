"""List entries: immutable, sequenced lines the payment system applies in order."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from models import Benefit, BenefitStatus, ListAction, ListEntry, ListEntryStatus, ListReason


def months_paid_after(*, died_on: dt.date, as_of: dt.date, payment_day: int) -> int:
    """Count monthly payments made for months after the month of death, up to `as_of`.

    Benefits are paid in advance on `payment_day`: the month of death is owed, each later
    month whose payment day has come by `as_of` was paid to nobody entitled.
    """
    first_month = died_on.year * 12 + died_on.month  # the month after the month of death
    last_month = as_of.year * 12 + as_of.month - 1 - (1 if as_of.day < payment_day else 0)
    return max(0, last_month - first_month + 1)


def next_sequence(session: Session) -> int:
    """Return the next free list sequence number."""
    current = session.scalar(select(func.max(ListEntry.seq)))
    return 1 if current is None else int(current) + 1


def suspend_deceased(
    session: Session,
    *,
    run_id: int,
    deaths: pd.DataFrame,
    as_of: dt.date,
    payment_day: int,
) -> list[ListEntry]:
    """Suspend every active benefit of the dead from the day after death, with the overpayment.

    `deaths` has person_id and died_on (a date) per person; benefits already suspended or
    terminated are left alone, so a person is suspended once.
    """
    if deaths.empty:
        return []
    died_on = dict(zip(deaths["person_id"].astype(int), deaths["died_on"], strict=True))
    benefits = session.execute(
        select(Benefit.id, Benefit.person_id, Benefit.monthly_amount)
        .where(Benefit.status == BenefitStatus.ACTIVE, Benefit.person_id.in_(list(died_on)))
        .order_by(Benefit.person_id, Benefit.id)
    ).all()
    sequence = next_sequence(session)
    rows = []
    for offset, (benefit_id, person_id, monthly_amount) in enumerate(benefits):
        death = died_on[person_id]
        months = months_paid_after(died_on=death, as_of=as_of, payment_day=payment_day)
        rows.append(
            {
                "seq": sequence + offset,
                "run_id": run_id,
                "person_id": person_id,
                "benefit_id": benefit_id,
                "action": ListAction.SUSPEND,
                "reason": ListReason.DECEASED,
                "effective_on": death + dt.timedelta(days=1),
                "amount": Decimal(monthly_amount) * months,
                "status": ListEntryStatus.PUBLISHED,
                "detail": {"died_on": death.isoformat(), "months_overpaid": months},
            }
        )
    if not rows:
        return []
    session.execute(insert(ListEntry), rows)
    session.execute(
        update(Benefit)
        .where(Benefit.id.in_([row["benefit_id"] for row in rows]))
        .values(status=BenefitStatus.SUSPENDED)
    )
    return list(
        session.scalars(select(ListEntry).where(ListEntry.run_id == run_id).order_by(ListEntry.seq))
    )
