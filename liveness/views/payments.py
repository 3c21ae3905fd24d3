"""A person's benefits as the payment system sees them: the payment state and its history.

Read only. The state is what the payment state machine stored on each benefit; the history is
every list entry of the benefit in sequence order, each naming its event and citing its
evidence (identity numbers masked).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.views.masking import mask_evidence
from liveness.views.schemas import BenefitPaymentRead, HeldEntryRead, PaymentEntryRead, Standing
from models import (
    Benefit,
    BenefitStatus,
    ListAction,
    ListEntry,
    ListEntryStatus,
    ListReason,
    Run,
)

# The reasons a benefit can be suspended for (the others end a suspension).
SUSPENSION_REASONS = frozenset(
    {ListReason.DECEASED, ListReason.LAPSED, ListReason.IMPRISONED, ListReason.DUPLICATE_IDENTITY}
)
# Where an entry can stand (PaymentEntryRead.standing).
STANDINGS: tuple[Standing, ...] = get_args(Standing)
# Entries after which a held reinstatement can no longer be approved as it stood.
SUPERSEDING = frozenset({ListAction.SUSPEND, ListAction.AMEND, ListAction.TERMINATE})


def _standing(entry: ListEntry, later: list[ListEntry], held_entry_id: int | None) -> Standing:
    """Say where an entry stands: published, awaiting approval, approved or superseded.

    A benefit names the reinstatement it holds; without that name (entries written before
    the payment state existed) a held entry is superseded once a later entry of the benefit
    changed its suspension, or a reinstatement was published.
    """
    if entry.status == ListEntryStatus.PUBLISHED:
        return "published"
    if entry.approved_by is not None:
        return "approved"
    if entry.rejected_by is not None:
        return "rejected"
    if held_entry_id is not None:
        return "awaiting_approval" if entry.id == held_entry_id else "superseded"
    for after in later:
        if after.action in SUPERSEDING or (
            after.action == ListAction.REINSTATE and after.status == ListEntryStatus.PUBLISHED
        ):
            return "superseded"
    return "awaiting_approval"


def _amended_from(benefit: Benefit, entries: list[ListEntry]) -> str | None:
    """Return the reason the current suspension had before its latest amendment, if any.

    The benefit keeps the reason a death amended (restored if the death is withdrawn); other
    amendments are read from the history: the suspension's reason before its latest `amend`.
    """
    if benefit.status != BenefitStatus.SUSPENDED:
        return None
    if benefit.prior_reason is not None:
        return str(benefit.prior_reason)
    reason: str | None = None
    before: str | None = None
    for entry in entries:
        if entry.status != ListEntryStatus.PUBLISHED:
            continue  # a held entry changes nothing until approved (by a new entry)
        if entry.action == ListAction.SUSPEND:
            reason, before = str(entry.reason), None
        elif entry.action == ListAction.AMEND:
            before = reason
            reason = str(entry.reason) if entry.reason in SUSPENSION_REASONS else None
        else:
            reason, before = None, None
    current = None if benefit.suspension_reason is None else str(benefit.suspension_reason)
    return before if before is not None and before != current else None


def _held(entry: ListEntry) -> HeldEntryRead:
    """Return a held reinstatement as the benefit's state shows it."""
    return HeldEntryRead(
        entry_id=entry.id, seq=entry.seq, action=str(entry.action), reason=str(entry.reason),
        amount=entry.amount, effective_on=entry.effective_on, caused_by=entry.caused_by,
    )  # fmt: skip


def _text(value: StrEnum | None) -> str | None:
    """Return an enum's value as text, None as None."""
    return None if value is None else str(value)


def benefit_payments(session: Session, *, person_id: int) -> list[BenefitPaymentRead]:
    """Return each benefit of a person with its payment state and its list entries in order."""
    benefits = session.scalars(
        select(Benefit).where(Benefit.person_id == person_id).order_by(Benefit.id)
    ).all()
    rows = session.execute(
        select(ListEntry, Run.as_of)
        .join(Run, Run.id == ListEntry.run_id)
        .where(ListEntry.person_id == person_id)
        .order_by(ListEntry.seq)
    ).all()
    by_benefit: dict[int, list[tuple[ListEntry, Any]]] = {}
    for entry, run_as_of in rows:
        by_benefit.setdefault(entry.benefit_id, []).append((entry, run_as_of))
    payments: list[BenefitPaymentRead] = []
    for benefit in benefits:
        found = by_benefit.get(benefit.id, [])
        entries = [entry for entry, _ in found]
        standing = [
            _standing(entry, entries[index + 1 :], benefit.held_entry_id)
            for index, entry in enumerate(entries)
        ]
        held = [
            entry for entry, where in zip(entries, standing, strict=True)
            if where == "awaiting_approval"
        ]  # fmt: skip
        payments.append(
            BenefitPaymentRead(
                benefit_id=benefit.id, benefit_type=str(benefit.benefit_type),
                monthly_amount=benefit.monthly_amount, status=str(benefit.status),
                roll_status=_text(benefit.roll_status),
                suspension_reason=_text(benefit.suspension_reason),
                suspended_from=benefit.suspended_from, suspended_as_of=benefit.suspended_as_of,
                amended_from=_amended_from(benefit, entries),
                held=_held(held[-1]) if held else None,
                history=[
                    PaymentEntryRead(
                        id=entry.id, seq=entry.seq, run_id=entry.run_id, run_as_of=run_as_of,
                        action=str(entry.action), reason=str(entry.reason),
                        event=_text(entry.event), effective_on=entry.effective_on,
                        amount=entry.amount, status=str(entry.status), standing=where,
                        caused_by=entry.caused_by, approved_by=entry.approved_by,
                        approved_at=entry.approved_at, rejected_by=entry.rejected_by,
                        rejection_reason=entry.rejection_reason,
                        detail=mask_evidence(entry.detail),
                    )
                    for (entry, run_as_of), where in zip(found, standing, strict=True)
                ],
            )
        )  # fmt: skip
    return payments
