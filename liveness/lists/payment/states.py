"""A benefit's payment state, the terms its money depends on, and the events and entries
of its state machine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from models import BenefitStatus, ListAction, ListReason, PaymentEvent


@dataclass(frozen=True)
class PaymentState:
    """Where a benefit's payment stands, and what its money depends on.

    `suspended_as_of` is the run whose later payment days the suspension withholds;
    `unpaid_after` the run after which withheld payments are not paid back (prison);
    `prior_reason` the suspension a death amended (it returns if the death is withdrawn);
    `held` a reinstatement waiting for a second operator's approval.
    """

    status: BenefitStatus
    reason: ListReason | None = None
    suspended_from: dt.date | None = None
    suspended_as_of: dt.date | None = None
    prior_reason: ListReason | None = None
    unpaid_after: dt.date | None = None
    held: bool = False


ACTIVE = PaymentState(BenefitStatus.ACTIVE)


@dataclass(frozen=True)
class BenefitTerms:
    """What one benefit's money depends on: its amount, its start, the payments never made."""

    monthly_amount: Decimal
    benefit_start: dt.date
    # Payment days withheld in prison and never paid back (from earlier reinstatements).
    unpaid: frozenset[dt.date] = frozenset()
    # The day of the evidence a second operator rejected with the benefit's latest
    # reinstatement: only a proof of life dated after it reinstates again.
    rejected_on: dt.date | None = None


@dataclass(frozen=True)
class RunTerms:
    """What the run deciding a transition contributes: its date and the policy's numbers."""

    as_of: dt.date
    payment_day: int
    four_eyes_back_pay: Decimal
    terminate_after_death_days: int


@dataclass(frozen=True)
class Occurrence:
    """One event for one benefit: its day (of death, of the proof of life) and its evidence."""

    event: PaymentEvent
    day: dt.date | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    caused_by: str = "system"


@dataclass(frozen=True)
class PlannedEntry:
    """A list entry a transition makes, before it gets its sequence number."""

    action: ListAction
    reason: ListReason
    event: PaymentEvent
    effective_on: dt.date
    amount: Decimal
    held: bool
    detail: dict[str, Any]
    caused_by: str


Outcome = tuple[PaymentState, PlannedEntry | None]


Handler = Callable[[PaymentState, Occurrence, BenefitTerms, RunTerms], Outcome]


def state_key(state: PaymentState) -> str:
    """Name a state as the transition table does: `active`, `suspended:<reason>`, ..."""
    if state.status == BenefitStatus.ACTIVE:
        return "active"
    if state.status == BenefitStatus.TERMINATED:
        return "terminated held" if state.held else "terminated"
    if state.held:
        return "held"
    return f"suspended:{state.reason}"
