"""The reads the core assembles, as the API serves them and the pages show them.

Each is defined once, here: `api.schemas` re-exports them beside the schemas of its own, and
the views build them (a person's file, a benefit's payments, the indicators, overdue
reviews). Reads served as rows (the grid queue, the list feed) are defined by the API's
schemas alone; their selects label the columns by the schema's names.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Where a list entry stands (a held one awaits approval, was approved, rejected or superseded).
Standing = Literal["published", "awaiting_approval", "approved", "rejected", "superseded"]


class Schema(BaseModel):
    """Base of every schema: built from attributes, unknown input fields refused."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")


class BenefitRead(Schema):
    """One benefit a person draws."""

    benefit_type: str
    status: str
    monthly_amount: Decimal
    last_certified_on: dt.date | None


class AssessmentRead(Schema):
    """The level the latest published run gave, with its reasons."""

    run_id: int
    as_of: dt.date
    level: str
    score: float
    rule: str
    reasons: dict[str, Any]
    policy_version: str


class CertificationRead(Schema):
    """The person's latest certification."""

    source: str
    mark: str
    certified_on: dt.date
    valid_until: dt.date
    valid: bool
    run_id: int | None


class PersonTaskRead(Schema):
    """An open review of the person."""

    id: int
    kind: str
    status: str
    due_on: dt.date
    grid_code: str
    reasons: dict[str, Any]


class TraceRead(Schema):
    """One trace of the evidence timeline."""

    day: dt.date
    at: dt.datetime | None
    kind: str


class HeldEntryRead(Schema):
    """A reinstatement held for a second operator's approval: the benefit stays suspended."""

    entry_id: int
    seq: int
    action: str
    reason: str
    amount: Decimal
    effective_on: dt.date
    caused_by: str


class PaymentEntryRead(Schema):
    """One list entry of a benefit: the event, what it asked, from when, how much, on what."""

    id: int
    seq: int
    run_id: int
    run_as_of: dt.date
    action: str
    reason: str
    event: str | None
    effective_on: dt.date
    amount: Decimal
    status: str
    standing: Standing = Field(
        description="A held entry awaits approval, was approved (by a later entry), rejected "
        "(its suspension stands) or superseded by a later change of the benefit's state."
    )
    caused_by: str
    approved_by: str | None
    approved_at: dt.datetime | None
    rejected_by: str | None = None
    rejection_reason: str | None = None
    detail: dict[str, Any] = Field(description="The evidence cited; identity numbers masked.")


class BenefitPaymentRead(Schema):
    """A benefit's payment state and the list entries that made it, oldest first."""

    benefit_id: int
    benefit_type: str
    monthly_amount: Decimal
    status: str
    roll_status: str | None = Field(description="What the roll last said, apart from the list.")
    suspension_reason: str | None
    suspended_from: dt.date | None
    suspended_as_of: dt.date | None
    amended_from: str | None = Field(
        description="The suspension's reason before its latest amendment."
    )
    held: HeldEntryRead | None
    history: list[PaymentEntryRead]


class PersonRead(Schema):
    """A person's file: level, certification, open reviews, payments and recent evidence."""

    person_ref: str
    name: str
    id_number_masked: str
    birth_date: dt.date
    region_code: str
    grid_code: str
    benefits: list[BenefitRead]
    assessment: AssessmentRead | None
    certification: CertificationRead | None
    open_tasks: list[PersonTaskRead]
    timeline: dict[str, list[TraceRead]]
    payments: list[BenefitPaymentRead]
    # Each timeline source in words, per language (a declared source's label in sources.toml).
    source_labels: dict[str, dict[str, str]] = {}


class OverdueTaskRead(Schema):
    """A review past its due date: the agency's delay, which suspends nobody."""

    id: int
    kind: str
    status: str
    person_ref: str
    id_number_masked: str
    due_on: dt.date
    days_overdue: int
    cause: str | None
    claimed_by: str | None


class OverdueGridRead(Schema):
    """A grid behind: its overdue reviews counted, the oldest due date, its tasks of the page."""

    grid_code: str
    overdue: int
    oldest_due_on: dt.date
    days_behind: int
    tasks: list[OverdueTaskRead]


class IndicatorsRead(Schema):
    """The five indicators and the distribution of levels."""

    as_of: dt.date
    run_id: int | None
    region: str | None
    grid: str | None
    on_roll: int
    active_benefits: int
    certification_status: dict[str, int]
    mark: dict[str, int]
    source: dict[str, int]
    time: dict[str, int]
    levels: dict[str, int]
