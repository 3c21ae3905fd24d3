"""The suspension and reinstatement list for the payment system."""

from liveness.lists.service import months_paid_after, next_sequence, suspend_deceased

__all__ = ["months_paid_after", "next_sequence", "suspend_deceased"]
