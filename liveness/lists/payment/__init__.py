"""A benefit's payment status as one state machine: a transition table and one pure function.

`transition(state, occurrence, ...)` maps a benefit's state and one event to its next state and
the list entry the event makes (or none). Nothing else decides a suspension or a reinstatement:
the run gathers events and folds them through it, an approval goes through it too. A pair that
is not in `TRANSITIONS` changes nothing, so a suspended benefit is never suspended again and an
active one never reinstated. Money follows the README's rules ("The money path"): benefits are
paid monthly in advance on the payment day, and a suspension decided by the run as of R
withholds the payment days after R.
"""

from __future__ import annotations

from liveness.lists.payment.days import months_paid_after, next_payment_day, payment_days
from liveness.lists.payment.states import (
    ACTIVE,
    BenefitTerms,
    Handler,
    Occurrence,
    Outcome,
    PaymentState,
    PlannedEntry,
    RunTerms,
    state_key,
)
from liveness.lists.payment.transitions import TRANSITIONS

__all__ = [
    "ACTIVE",
    "TRANSITIONS",
    "BenefitTerms",
    "Handler",
    "Occurrence",
    "Outcome",
    "PaymentState",
    "PlannedEntry",
    "RunTerms",
    "fold",
    "months_paid_after",
    "next_payment_day",
    "payment_days",
    "state_key",
    "transition",
]


def transition(
    state: PaymentState, occurrence: Occurrence, *, benefit: BenefitTerms, run: RunTerms
) -> Outcome:
    """Return the state after `occurrence` and the list entry it makes (None: no change)."""
    handler = TRANSITIONS.get((state_key(state), occurrence.event))
    if handler is None:
        return state, None
    return handler(state, occurrence, benefit, run)


def fold(
    state: PaymentState, occurrences: list[Occurrence], *, benefit: BenefitTerms, run: RunTerms
) -> tuple[PaymentState, list[PlannedEntry]]:
    """Apply a run's occurrences for one benefit in order; return the end state and entries."""
    entries: list[PlannedEntry] = []
    for occurrence in occurrences:
        state, entry = transition(state, occurrence, benefit=benefit, run=run)
        if entry is not None:
            entries.append(entry)
    return state, entries
