"""List entries: immutable, sequenced lines the payment system applies in order.

A correction is a new entry, never an edit: a reinstatement undoes a suspension. The only
change an entry sees is a second operator's approval of one that was held.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from liveness.errors import LivenessError, NotFound
from models import (
    Benefit,
    BenefitStatus,
    ListAction,
    ListEntry,
    ListEntryStatus,
    ListReason,
    utcnow,
)


class ApprovalRefused(LivenessError):
    """An approval that separation of duties forbids, or of an entry not waiting for one."""

    exit_code = 8
    http_status = 409


def payment_days(*, after: dt.date, until: dt.date, payment_day: int) -> list[dt.date]:
    """Return the monthly payment days d with after < d <= until."""
    days: list[dt.date] = []
    year, month = after.year, after.month
    while True:
        day = dt.date(year, month, payment_day)
        if day > until:
            return days
        if day > after:
            days.append(day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def months_paid_after(*, died_on: dt.date, as_of: dt.date, payment_day: int) -> int:
    """Count monthly payments made for months after the month of death, up to `as_of`.

    Benefits are paid in advance on `payment_day`: the month of death is owed, each later
    month whose payment day has come by `as_of` was paid to nobody entitled.
    """
    first_month = died_on.year * 12 + died_on.month  # the month after the month of death
    last_month = as_of.year * 12 + as_of.month - 1 - (1 if as_of.day < payment_day else 0)
    return max(0, last_month - first_month + 1)


def next_payment_day(*, after: dt.date, payment_day: int) -> dt.date:
    """Return the first payment day strictly after `after`."""
    candidate = dt.date(after.year, after.month, payment_day)
    if candidate > after:
        return candidate
    year, month = (after.year + 1, 1) if after.month == 12 else (after.year, after.month + 1)
    return dt.date(year, month, payment_day)


def next_sequence(session: Session) -> int:
    """Return the next free list sequence number."""
    current = session.scalar(select(func.max(ListEntry.seq)))
    return 1 if current is None else int(current) + 1


def append_entries(session: Session, *, run_id: int, entries: list[dict[str, Any]]) -> int:
    """Append entries in order with the next sequence numbers; set their benefits' status."""
    if not entries:
        return 0
    sequence = next_sequence(session)
    rows = [
        {"run_id": run_id, "caused_by": "system", "detail": {}, **entry, "seq": sequence + offset}
        for offset, entry in enumerate(entries)
    ]
    session.execute(insert(ListEntry), rows)
    for status, action in (
        (BenefitStatus.SUSPENDED, ListAction.SUSPEND),
        (BenefitStatus.ACTIVE, ListAction.REINSTATE),
        (BenefitStatus.TERMINATED, ListAction.TERMINATE),
    ):
        ids = [row["benefit_id"] for row in rows if row["action"] == action]
        if ids:
            session.execute(update(Benefit).where(Benefit.id.in_(ids)).values(status=status))
    return len(rows)


def active_benefits(session: Session, person_ids: list[int]) -> pd.DataFrame:
    """Return the active benefits of persons: id, person_id, benefit_type, monthly_amount."""
    rows = session.execute(
        select(Benefit.id, Benefit.person_id, Benefit.benefit_type, Benefit.monthly_amount)
        .where(Benefit.status == BenefitStatus.ACTIVE, Benefit.person_id.in_(person_ids))
        .order_by(Benefit.person_id, Benefit.id)
    ).all()
    frame = pd.DataFrame(rows, columns=["benefit_id", "person_id", "benefit_type", "amount"])
    frame["benefit_type"] = frame["benefit_type"].astype(object).map(str)
    return frame


def suspensions_for_death(
    session: Session, *, deaths: dict[int, dt.date], as_of: dt.date, payment_day: int,
    caused_by: str = "system",
) -> list[dict[str, Any]]:  # fmt: skip
    """Return suspension entries from the day after death, with the overpayment to recover."""
    entries = []
    for row in active_benefits(session, list(deaths)).itertuples():
        died_on = deaths[row.person_id]
        months = months_paid_after(died_on=died_on, as_of=as_of, payment_day=payment_day)
        entries.append(
            {
                "person_id": row.person_id, "benefit_id": row.benefit_id,
                "action": ListAction.SUSPEND, "reason": ListReason.DECEASED,
                "effective_on": died_on + dt.timedelta(days=1),
                "amount": Decimal(row.amount) * months, "status": ListEntryStatus.PUBLISHED,
                "caused_by": caused_by,
                "detail": {"died_on": died_on.isoformat(), "months_overpaid": months},
            }
        )  # fmt: skip
    return entries


def suspensions_from_next_payment(
    session: Session, *, person_ids: list[int], reason: ListReason, as_of: dt.date,
    payment_day: int, benefit_types: tuple[str, ...] | None = None, caused_by: str = "system",
    detail: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Return suspension entries effective the next payment day (a lapse, a prison sentence)."""
    effective = next_payment_day(after=as_of, payment_day=payment_day)
    entries = []
    for row in active_benefits(session, person_ids).itertuples():
        if benefit_types is not None and row.benefit_type not in benefit_types:
            continue
        entries.append(
            {
                "person_id": row.person_id, "benefit_id": row.benefit_id,
                "action": ListAction.SUSPEND, "reason": reason, "effective_on": effective,
                "amount": Decimal("0.00"), "status": ListEntryStatus.PUBLISHED,
                "caused_by": caused_by, "detail": (detail or {}).get(row.person_id, {}),
            }
        )  # fmt: skip
    return entries


def open_suspensions(session: Session) -> pd.DataFrame:
    """Return each suspended benefit's latest suspension: who, why, since when, at which run."""
    latest = (
        select(ListEntry.benefit_id, func.max(ListEntry.seq).label("seq"))
        .group_by(ListEntry.benefit_id)
        .subquery()
    )
    from models import Run  # local: only this query needs the run's date

    rows = session.execute(
        select(
            ListEntry.person_id, ListEntry.benefit_id, ListEntry.reason, ListEntry.effective_on,
            Run.as_of, Benefit.monthly_amount,
        )
        .join(
            latest,
            (latest.c.benefit_id == ListEntry.benefit_id) & (latest.c.seq == ListEntry.seq),
        )
        .join(Run, Run.id == ListEntry.run_id)
        .join(Benefit, Benefit.id == ListEntry.benefit_id)
        .where(ListEntry.action == ListAction.SUSPEND, Benefit.status == BenefitStatus.SUSPENDED)
    ).all()  # fmt: skip
    frame = pd.DataFrame(
        rows,
        columns=["person_id", "benefit_id", "reason", "effective_on", "suspended_as_of",
                 "amount"],
    )  # fmt: skip
    frame["reason"] = frame["reason"].astype(object).map(str)
    return frame


def reinstatements(
    suspended: pd.DataFrame, *, person_ids: set[int], reason: ListReason, as_of: dt.date,
    payment_day: int, four_eyes_back_pay: float, caused_by: dict[int, str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Return reinstatement entries with back pay for the payments withheld while suspended.

    Months in prison earn no back pay. A back pay above the four-eyes amount is held for a
    second operator's approval.
    """
    entries = []
    for row in suspended[suspended["person_id"].isin(person_ids)].itertuples():
        withheld = payment_days(after=row.suspended_as_of, until=as_of, payment_day=payment_day)
        months = 0 if row.reason == ListReason.IMPRISONED else len(withheld)
        back_pay = Decimal(row.amount) * months
        held = back_pay > Decimal(str(four_eyes_back_pay))
        entries.append(
            {
                "person_id": int(row.person_id), "benefit_id": int(row.benefit_id),
                "action": ListAction.REINSTATE, "reason": reason,
                "effective_on": next_payment_day(after=as_of, payment_day=payment_day),
                "amount": back_pay,
                "status": ListEntryStatus.HELD if held else ListEntryStatus.PUBLISHED,
                "caused_by": (caused_by or {}).get(int(row.person_id), "system"),
                "detail": {
                    "suspended_for": row.reason, "months_back_paid": months,
                    "withheld_payments": [day.isoformat() for day in withheld],
                },
            }
        )  # fmt: skip
    return entries


def approve_entry(session: Session, *, entry_id: int, operator: str) -> ListEntry:
    """Approve a held entry as a second operator: a new, published entry carries it out.

    The held entry stays as it was (entries are immutable) but records its approver, and the
    payment system sees the approval as the next entry of the feed, never as a change behind
    its cursor. The operator who caused the entry may not approve it.
    """
    held = session.get(ListEntry, entry_id)
    if held is None:
        raise NotFound(f"no list entry {entry_id}")
    if held.status != ListEntryStatus.HELD or held.approved_by is not None:
        raise ApprovalRefused(f"list entry {entry_id} is not waiting for approval")
    if operator == held.caused_by:
        raise ApprovalRefused(
            f"{operator} caused list entry {entry_id} and may not approve it: a second "
            "operator must"
        )
    held.approved_by = operator
    held.approved_at = utcnow()
    approval = ListEntry(
        seq=next_sequence(session), run_id=held.run_id, person_id=held.person_id,
        benefit_id=held.benefit_id, action=held.action, reason=held.reason,
        effective_on=held.effective_on, amount=held.amount, status=ListEntryStatus.PUBLISHED,
        detail={**held.detail, "approves_seq": held.seq}, caused_by=held.caused_by,
        approved_by=operator, approved_at=held.approved_at,
    )  # fmt: skip
    session.add(approval)
    session.flush()
    return approval


def terminations(
    suspended: pd.DataFrame, *, person_ids: set[int], as_of: dt.date, after_days: int
) -> list[dict[str, Any]]:
    """Return terminations of benefits suspended for a death that stood for `after_days`."""
    due = suspended[
        (suspended["reason"] == ListReason.DECEASED)
        & suspended["person_id"].isin(person_ids)
        & (
            pd.to_datetime(suspended["suspended_as_of"])
            <= pd.Timestamp(as_of - dt.timedelta(days=after_days))
        )
    ]
    return [
        {
            "person_id": int(row.person_id), "benefit_id": int(row.benefit_id),
            "action": ListAction.TERMINATE, "reason": ListReason.DECEASED,
            "effective_on": row.effective_on,
            "amount": Decimal("0.00"), "status": ListEntryStatus.PUBLISHED,
            "detail": {"suspended_as_of": row.suspended_as_of.isoformat()},
        }
        for row in due.itertuples()
    ]  # fmt: skip
