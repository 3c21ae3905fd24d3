"""The suspension and reinstatement list for the payment system, and its state machine."""

from liveness.lists.payment import (
    BenefitTerms,
    Occurrence,
    PaymentState,
    RunTerms,
    months_paid_after,
    next_payment_day,
    payment_days,
    transition,
)
from liveness.lists.service import (
    ApprovalRefused,
    append_entries,
    apply_occurrences,
    approve_entry,
    next_sequence,
    reject_entry,
    reorder_entries,
    suspended_benefits,
)

__all__ = [
    "ApprovalRefused",
    "BenefitTerms",
    "Occurrence",
    "PaymentState",
    "RunTerms",
    "append_entries",
    "apply_occurrences",
    "approve_entry",
    "months_paid_after",
    "next_payment_day",
    "next_sequence",
    "payment_days",
    "reject_entry",
    "reorder_entries",
    "suspended_benefits",
    "transition",
]
