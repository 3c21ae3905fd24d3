"""The suspension and reinstatement list for the payment system."""

from liveness.lists.service import (
    ApprovalRefused,
    append_entries,
    approve_entry,
    months_paid_after,
    next_payment_day,
    next_sequence,
    open_suspensions,
    payment_days,
    reinstatements,
    suspensions_for_death,
    suspensions_from_next_payment,
    terminations,
)

__all__ = [
    "ApprovalRefused",
    "append_entries",
    "approve_entry",
    "months_paid_after",
    "next_payment_day",
    "next_sequence",
    "open_suspensions",
    "payment_days",
    "reinstatements",
    "suspensions_for_death",
    "suspensions_from_next_payment",
    "terminations",
]
