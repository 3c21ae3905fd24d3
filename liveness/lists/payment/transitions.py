"""The transition table of the money path and the handler of each transition."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any

from liveness.lists.payment.days import month_end, next_payment_day, payment_days
from liveness.lists.payment.states import (
    ACTIVE,
    BenefitTerms,
    Handler,
    Occurrence,
    Outcome,
    PaymentState,
    PlannedEntry,
    RunTerms,
)
from models import BenefitStatus, ListAction, ListReason, PaymentEvent


def _paid(benefit: BenefitTerms, *, after: dt.date, until: dt.date, run: RunTerms) -> list[dt.date]:
    """Return the payment days in (after, until] that were paid: none before the benefit began."""
    days = payment_days(after=after, until=until, payment_day=run.payment_day)
    return [day for day in days if day >= benefit.benefit_start and day not in benefit.unpaid]


def _entry(
    action: ListAction, reason: ListReason, occurrence: Occurrence, *, effective_on: dt.date,
    amount: Decimal = Decimal("0.00"), held: bool = False, detail: dict[str, Any] | None = None,
) -> PlannedEntry:  # fmt: skip
    return PlannedEntry(
        action=action, reason=reason, event=occurrence.event, effective_on=effective_on,
        amount=amount, held=held, detail={**occurrence.evidence, **(detail or {})},
        caused_by=occurrence.caused_by,
    )  # fmt: skip


def _death(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Suspend from the day after death, or amend a suspension to it, with the overpayment."""
    died_on = occurrence.day
    if died_on is None or died_on > run.as_of:
        return state, None
    active = state.status == BenefitStatus.ACTIVE
    # Paid up to this run if it was paid; up to the run that stopped it if suspended.
    bound = run.as_of if active or state.suspended_as_of is None else state.suspended_as_of
    overpaid = _paid(benefit, after=month_end(died_on), until=bound, run=run)
    if state.reason == ListReason.DUPLICATE_IDENTITY:
        # The duplicate's recovery already claims every payment it drew: not twice.
        overpaid = []
    detail: dict[str, Any] = {
        "died_on": died_on.isoformat(),
        "months_overpaid": len(overpaid),
        "overpaid_payments": [day.isoformat() for day in overpaid],
    }
    prior = None
    if not active:
        prior = state.prior_reason if state.reason == ListReason.DECEASED else state.reason
        detail["amends"] = str(state.reason)
        if state.held:
            detail["supersedes_held_reinstatement"] = True
    entry = _entry(
        ListAction.SUSPEND if active else ListAction.AMEND, ListReason.DECEASED, occurrence,
        effective_on=died_on + dt.timedelta(days=1),
        amount=benefit.monthly_amount * len(overpaid), detail=detail,
    )  # fmt: skip
    after = PaymentState(
        BenefitStatus.SUSPENDED, ListReason.DECEASED, suspended_from=entry.effective_on,
        suspended_as_of=run.as_of if active else state.suspended_as_of, prior_reason=prior,
        unpaid_after=None if active else state.unpaid_after,
    )  # fmt: skip
    return after, entry


def _redate_death(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Move a death suspension to a corrected date of death: an `amend`, the overpayment anew.

    The entry carries the whole overpayment as it now stands (it replaces the earlier
    entry's), and in its detail the earlier date and amount and the change between them.
    """
    died_on, suspended_from = occurrence.day, state.suspended_from
    if died_on is None or died_on > run.as_of or suspended_from is None:
        return state, None
    effective_on = died_on + dt.timedelta(days=1)
    if effective_on == suspended_from:
        return state, None
    before = suspended_from - dt.timedelta(days=1)
    bound = state.suspended_as_of or run.as_of
    overpaid = _paid(benefit, after=month_end(died_on), until=bound, run=run)
    earlier = _paid(benefit, after=month_end(before), until=bound, run=run)
    if state.prior_reason == ListReason.DUPLICATE_IDENTITY:
        overpaid, earlier = [], []  # the duplicate's recovery claims every payment already
    amount = benefit.monthly_amount * len(overpaid)
    earlier_amount = benefit.monthly_amount * len(earlier)
    entry = _entry(
        ListAction.AMEND, ListReason.DECEASED, occurrence, effective_on=effective_on,
        amount=amount,
        detail={
            "died_on": died_on.isoformat(), "months_overpaid": len(overpaid),
            "overpaid_payments": [day.isoformat() for day in overpaid],
            "amends": str(state.reason), "redates_death_of": before.isoformat(),
            "overpayment_before": str(earlier_amount),
            "overpayment_change": str(amount - earlier_amount),
        },
    )  # fmt: skip
    return replace(state, suspended_from=effective_on), entry


def _reinstate(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Reinstate from the next payment day, paying back what was withheld (not in prison).

    After a rejected reinstatement only new evidence reinstates: a proof of life dated after
    what was rejected, never the same evidence again at the next run.
    """
    if benefit.rejected_on is not None and not (
        occurrence.event == PaymentEvent.PROOF_OF_LIFE
        and occurrence.day is not None
        and occurrence.day > benefit.rejected_on
    ):
        return state, None
    start = state.suspended_as_of or run.as_of
    withheld = payment_days(after=start, until=run.as_of, payment_day=run.payment_day)
    in_prison = [d for d in withheld if state.unpaid_after is not None and d > state.unpaid_after]
    back_paid = [d for d in withheld if d not in in_prison]
    amount = benefit.monthly_amount * len(back_paid)
    held = amount > run.four_eyes_back_pay
    reason = {
        PaymentEvent.DEATH_WITHDRAWN: ListReason.DEATH_WITHDRAWN,
        PaymentEvent.DUPLICATE_WITHDRAWN: ListReason.DUPLICATE_WITHDRAWN,
    }.get(occurrence.event, ListReason.PROOF_OF_LIFE)
    entry = _entry(
        ListAction.REINSTATE, reason, occurrence,
        effective_on=next_payment_day(after=run.as_of, payment_day=run.payment_day),
        amount=amount, held=held,
        detail={
            "suspended_for": str(state.reason), "months_back_paid": len(back_paid),
            "withheld_payments": [d.isoformat() for d in withheld],
            "unpaid_payments": [d.isoformat() for d in in_prison],
        },
    )  # fmt: skip
    return (replace(state, held=True) if held else ACTIVE), entry


def _after_death(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Reinstate on proof of life dated after the death, else change nothing."""
    died_after = state.suspended_from
    if occurrence.day is None or died_after is None or occurrence.day < died_after:
        return state, None
    return _reinstate(state, occurrence, benefit, run)


def _withdraw_death(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Undo a withdrawn death: back to the suspension it amended, or reinstate."""
    if state.prior_reason is None or state.suspended_as_of is None:
        return _reinstate(state, occurrence, benefit, run)
    back_from = next_payment_day(after=state.suspended_as_of, payment_day=run.payment_day)
    entry = _entry(
        ListAction.AMEND, state.prior_reason, occurrence, effective_on=back_from,
        detail={"amends": str(state.reason), "cancels_recovery": True},
    )  # fmt: skip
    after = replace(state, reason=state.prior_reason, suspended_from=back_from, prior_reason=None)
    return after, entry


def _forget_prior(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Forget a withdrawn duplicate under a death: if the death goes too, nothing is left."""
    if state.prior_reason != ListReason.DUPLICATE_IDENTITY:
        return state, None
    return replace(state, prior_reason=None), None


def _suspend_next_payment(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Suspend from the next payment day (a lapse, a prison sentence, a duplicate identity)."""
    reason = {
        PaymentEvent.LAPSE: ListReason.LAPSED,
        PaymentEvent.IMPRISONMENT: ListReason.IMPRISONED,
        PaymentEvent.DUPLICATE_IDENTITY: ListReason.DUPLICATE_IDENTITY,
    }[occurrence.event]
    effective = next_payment_day(after=run.as_of, payment_day=run.payment_day)
    active = state.status == BenefitStatus.ACTIVE
    amount = Decimal("0.00")
    detail: dict[str, Any] = {} if active else {"amends": str(state.reason)}
    if occurrence.event == PaymentEvent.DUPLICATE_IDENTITY:
        # Everything the duplicate drew since its first payment: one person, paid twice.
        bound = run.as_of if active or state.suspended_as_of is None else state.suspended_as_of
        paid = _paid(benefit, after=benefit.benefit_start - dt.timedelta(days=1), until=bound,
                     run=run)  # fmt: skip
        amount = benefit.monthly_amount * len(paid)
        detail |= {"months_overpaid": len(paid), "overpaid_payments": [d.isoformat() for d in paid]}
    entry = _entry(
        ListAction.SUSPEND if active else ListAction.AMEND, reason, occurrence,
        effective_on=effective, amount=amount, detail=detail,
    )  # fmt: skip
    prison = occurrence.event == PaymentEvent.IMPRISONMENT
    after = PaymentState(
        BenefitStatus.SUSPENDED, reason, suspended_from=effective,
        suspended_as_of=run.as_of if active else state.suspended_as_of,
        unpaid_after=run.as_of if prison else state.unpaid_after,
    )  # fmt: skip
    return after, entry


def _terminate(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """End a benefit whose death stood uncontested for the policy's days.

    The days count from the run that found the death (`occurrence.day`), which for a death
    amending another suspension is later than the suspension itself.
    """
    found = occurrence.day
    if found is None or (run.as_of - found).days < run.terminate_after_death_days:
        return state, None
    entry = _entry(
        ListAction.TERMINATE, ListReason.DECEASED, occurrence,
        effective_on=state.suspended_from or run.as_of,
        detail={"death_found_as_of": found.isoformat()},
    )  # fmt: skip
    return replace(state, status=BenefitStatus.TERMINATED), entry


def _supersede(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Drop a reinstatement held for a terminated benefit: a death stands again.

    The payment system never saw the held entry, so nothing changes for it: the benefit
    stays terminated and the held entry can no longer be approved.
    """
    return replace(state, held=False), None


def _approve(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Carry out a held reinstatement, as a new published entry citing the held one."""
    held = occurrence.evidence
    entry = PlannedEntry(
        action=ListAction.REINSTATE, reason=ListReason(held["reason"]), event=occurrence.event,
        effective_on=dt.date.fromisoformat(held["effective_on"]),
        amount=Decimal(str(held["amount"])), held=False, detail=dict(held["detail"]),
        caused_by=occurrence.caused_by,
    )  # fmt: skip
    return ACTIVE, entry


def _reject(
    state: PaymentState, occurrence: Occurrence, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Drop a held reinstatement a second operator rejected: the suspension stands.

    The payment system never saw the held entry, so no entry tells it anything: the benefit
    stays as it was before the reinstatement, and a later proof of life may make a new one.
    """
    return replace(state, held=False), None


_SUSPENDED = {reason: f"suspended:{reason}" for reason in ListReason}


_OTHER_SUSPENSIONS = (ListReason.LAPSED, ListReason.IMPRISONED, ListReason.DUPLICATE_IDENTITY)


# The whole money path: (state, event) -> handler. Every other pair changes nothing.
TRANSITIONS: dict[tuple[str, PaymentEvent], Handler] = {
    ("active", PaymentEvent.DEATH): _death,
    **{(_SUSPENDED[r], PaymentEvent.DEATH): _death for r in _OTHER_SUSPENSIONS},
    ("held", PaymentEvent.DEATH): _death,
    # A standing date of death other than the one the suspension took (a corrected record).
    (_SUSPENDED[ListReason.DECEASED], PaymentEvent.DEATH): _redate_death,
    (_SUSPENDED[ListReason.DECEASED], PaymentEvent.DEATH_WITHDRAWN): _withdraw_death,
    ("terminated", PaymentEvent.DEATH_WITHDRAWN): _reinstate,
    (_SUSPENDED[ListReason.DECEASED], PaymentEvent.PROOF_OF_LIFE): _after_death,
    ("terminated", PaymentEvent.PROOF_OF_LIFE): _after_death,
    (_SUSPENDED[ListReason.LAPSED], PaymentEvent.PROOF_OF_LIFE): _reinstate,
    (_SUSPENDED[ListReason.IMPRISONED], PaymentEvent.PROOF_OF_LIFE): _reinstate,
    (_SUSPENDED[ListReason.LAPSED], PaymentEvent.RECERTIFIED): _reinstate,
    ("active", PaymentEvent.LAPSE): _suspend_next_payment,
    ("active", PaymentEvent.IMPRISONMENT): _suspend_next_payment,
    (_SUSPENDED[ListReason.LAPSED], PaymentEvent.IMPRISONMENT): _suspend_next_payment,
    ("active", PaymentEvent.DUPLICATE_IDENTITY): _suspend_next_payment,
    (_SUSPENDED[ListReason.LAPSED], PaymentEvent.DUPLICATE_IDENTITY): _suspend_next_payment,
    (_SUSPENDED[ListReason.IMPRISONED], PaymentEvent.DUPLICATE_IDENTITY): _suspend_next_payment,
    (_SUSPENDED[ListReason.DUPLICATE_IDENTITY], PaymentEvent.DUPLICATE_WITHDRAWN): _reinstate,
    (_SUSPENDED[ListReason.DECEASED], PaymentEvent.DUPLICATE_WITHDRAWN): _forget_prior,
    (_SUSPENDED[ListReason.DECEASED], PaymentEvent.DEATH_STOOD): _terminate,
    ("held", PaymentEvent.APPROVAL): _approve,
    ("held", PaymentEvent.REJECTION): _reject,
    ("terminated held", PaymentEvent.DEATH): _supersede,
    ("terminated held", PaymentEvent.APPROVAL): _approve,
    ("terminated held", PaymentEvent.REJECTION): _reject,
}
