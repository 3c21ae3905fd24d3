"""Request and response schemas: XCreate in, XRead / XPage out.

The reads the core assembles are defined in liveness.views.schemas and re-exported here.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from liveness.views.schemas import (  # noqa: F401  (re-exported: one definition, in the core)
    AssessmentRead,
    BenefitPaymentRead,
    BenefitRead,
    CertificationRead,
    HeldEntryRead,
    IndicatorsRead,
    OverdueGridRead,
    OverdueTaskRead,
    PaymentEntryRead,
    PersonRead,
    PersonTaskRead,
    Schema,
    TraceRead,
)
from models import LeadVerdict, VisitOutcome


def json_fields(schema: type[BaseModel]) -> tuple[tuple[str, Any], ...]:
    """Return a schema's fields as (name, type): the keys a one-statement read writes."""
    return tuple((name, field.annotation) for name, field in schema.model_fields.items())


class Page(Schema):
    """Where a page sits in the whole."""

    total: int
    limit: int
    offset: int


class RunCreate(Schema):
    """Ask for a certification run as of a date."""

    as_of: dt.date
    override_guard: bool = False


class RunAccepted(Schema):
    """A run started in the background."""

    id: int
    status: str


class RunRead(Schema):
    """A certification run, without its report."""

    id: int
    as_of: dt.date
    status: str
    policy_version: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    error: str | None


class RunDetailRead(RunRead):
    """A certification run with its report."""

    report: dict[str, Any]


class RunPage(Page):
    """A page of runs, newest first."""

    items: list[RunRead]


class TaskRead(Schema):
    """A task in a grid's queue."""

    id: int
    person_ref: str
    name: str
    id_number_masked: str
    region_code: str
    grid_code: str
    kind: str
    status: str
    priority: float
    opened_on: dt.date
    due_on: dt.date
    planned_week: dt.date | None = Field(
        None, description="A home visit's planned week (its Monday), within the grid's capacity."
    )
    claimed_by: str | None
    claim_expires_at: dt.datetime | None
    reasons: dict[str, Any]


class TaskPage(Page):
    """A page of a grid's queue: week by week (later planned visits last), then by priority."""

    items: list[TaskRead]


class OverduePage(Page):
    """Overdue reviews grouped by grid; total, limit and offset count tasks, oldest first."""

    as_of: dt.date
    grids_behind: int
    grids: list[OverdueGridRead]


class ClaimRead(Schema):
    """A claim on a task, and when it lapses."""

    id: int
    status: str
    claimed_by: str | None
    claim_expires_at: dt.datetime | None


class OutcomeCreate(Schema):
    """What a review found."""

    outcome: VisitOutcome
    on: dt.date | None = Field(
        default=None,
        description="Day of the visit (default: today): not after today, nor before the task "
        "opened.",
    )
    died_on: dt.date | None = Field(default=None, description="Required for `deceased`.")
    region: str | None = Field(
        default=None, description="6-digit region code, required for `moved_away`."
    )
    note: str | None = Field(default=None, max_length=500)


class OutcomeRead(Schema):
    """A task with its recorded outcome."""

    id: int
    status: str
    outcome: str | None
    outcome_detail: dict[str, Any]
    closed_on: dt.date | None


class FaceRequestRead(Schema):
    """A face verification the engine asks for."""

    request_id: int
    person_ref: str
    id_number: str
    name: str
    opened_on: dt.date
    due_on: dt.date


class FaceRequestPage(Page):
    """A page of pending face verification requests, oldest first."""

    items: list[FaceRequestRead]


class FaceCallbackCreate(Schema):
    """A verifier's result for one request."""

    request_id: int = Field(ge=1, le=2**31 - 1)
    result: Literal["pass", "fail", "no_liveness", "no_face"]
    verified_at: AwareDatetime
    channel: Literal["app", "kiosk", "assisted", "proxy"] | None = None
    score: float | None = Field(default=None, ge=0, le=1)
    face_id: str | None = Field(default=None, max_length=64)


class FaceCallbackRead(Schema):
    """A result received: it becomes a face trace, and the next run settles the request."""

    request_id: int
    result: str
    record_id: str
    received_at: dt.datetime


class DeathEventCreate(Schema):
    """One civil-registration event on a death (OpenCRVS-style), as a registry notifies it."""

    event_type: Literal["registered", "corrected", "voided"]
    record_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    id_number: str | None = Field(default=None, max_length=32)
    name: str | None = Field(default=None, max_length=64)
    sex: Literal["M", "F"] | None = None
    birth_date: dt.date | None = None
    region_code: str | None = Field(default=None, pattern=r"^\d{6}$")
    # A full date, or only the month or year when that is all the registry knows.
    died_on: str = Field(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$")
    registered_on: dt.date


class DeathNotifyHeader(Schema):
    """The notify envelope's header (SPDCI civil registration)."""

    message_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    message_ts: AwareDatetime
    action: Literal["notify"]
    sender_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    receiver_id: str = Field(max_length=64)
    total_count: int = Field(ge=0, le=1000)


class DeathNotifyMessage(Schema):
    """The notify envelope's message: the events, at most 1000."""

    events: list[DeathEventCreate] = Field(max_length=1000)


class DeathNotifyCreate(Schema):
    """A registry's signed notify message: signature over the canonical header and message."""

    signature: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    header: DeathNotifyHeader
    message: DeathNotifyMessage


class DeathEventAck(Schema):
    """What became of one event: its match outcome and what happens next."""

    record_id: str
    event: str
    status: Literal["accepted", "duplicate", "conflict"]
    outcome: Literal["matched", "ambiguous", "unknown", "withdrawn"]
    next: str
    died_on: dt.date | None = None
    died_on_precision: Literal["day", "month", "year"] | None = None


class DeathNotifyRead(Schema):
    """The acknowledgement of a notify message, per event in order."""

    message_id: str
    replayed: bool
    received: int
    acknowledgements: list[DeathEventAck]


class NoticeRead(Schema):
    """A notice waiting for the messaging gateway."""

    id: int
    person_ref: str
    phone: str | None
    channel: str
    template: str
    body: str
    created_on: dt.date
    task_id: int | None


class NoticePage(Page):
    """A page of pending notices, oldest first."""

    items: list[NoticeRead]


class NoticeSentRead(Schema):
    """A notice marked sent."""

    id: int
    status: str
    sent_at: dt.datetime | None


class ListEntryRead(Schema):
    """A published list entry for the payment system."""

    id: int
    seq: int
    run_id: int
    person_ref: str
    id_number: str
    name: str
    benefit_id: int
    benefit_type: str
    action: str
    reason: str
    effective_on: dt.date
    amount: Decimal
    approves_seq: int | None


class ListFeedRead(Schema):
    """Entries after a cursor; poll again with after=next_after."""

    entries: list[ListEntryRead]
    next_after: int
    high_water: int


class ListAckCreate(Schema):
    """The last sequence number the payment system applied."""

    last_seq: int = Field(ge=0)


class ListAckRead(Schema):
    """A payment client's acknowledged position."""

    client: str
    last_seq: int
    acked_at: dt.datetime


class ListApprovalRead(Schema):
    """The published entry that carries out an approved held entry."""

    id: int
    seq: int
    approves_seq: int
    approved_by: str
    approved_at: dt.datetime


class ListRejectionCreate(Schema):
    """Why a second operator rejects a held entry."""

    reason: str = Field(min_length=1, max_length=500, description="Why, in words; on record.")


class ListRejectionRead(Schema):
    """A held entry rejected: never published, its benefit's suspension stands."""

    id: int
    seq: int
    rejected_by: str
    rejected_at: dt.datetime
    rejection_reason: str


class AuditRead(Schema):
    """One audit entry."""

    id: int
    at: dt.datetime
    actor: str
    action: str
    target_type: str
    target_ref: str | None
    detail: dict[str, Any]
    remote_addr: str | None


class AuditPage(Page):
    """A page of the audit log, newest first."""

    items: list[AuditRead]


# A county's 6-digit code, or the 2- or 4-digit prefix of a province or city.
RegionScope = Annotated[str, StringConstraints(pattern=r"^(\d{2}|\d{4}|\d{6})$")]


class LeadAnswerRead(Schema):
    """An inspector's answer to a lead, and the issuing level's review of it."""

    verdict: str
    amount_to_recover: Decimal
    note: str | None
    answered_by: str
    answered_at: dt.datetime
    review: str | None
    reviewed_by: str | None
    reviewed_at: dt.datetime | None
    return_reason: str | None = None


class LeadRead(Schema):
    """An integrity lead: the rule, the persons involved, the evidence, where it stands."""

    id: int
    rule: str
    region_code: str
    person_refs: list[str]
    evidence: dict[str, Any]
    amount_at_risk: Decimal | None
    status: str
    order_id: int | None
    policy_version: str
    found_on: dt.date
    answer: LeadAnswerRead | None = None


class LeadPage(Page):
    """A page of integrity leads, oldest first."""

    items: list[LeadRead]


class OrderCreate(Schema):
    """Package open leads into one inspection order per region."""

    due_on: dt.date | None = Field(
        default=None, description="Day the answers are due (default: the policy's due_days)."
    )
    rule: str | None = Field(default=None, max_length=32, description="Only leads of this rule.")
    regions: list[RegionScope] | None = Field(
        default=None, max_length=100, description="Only leads of these region codes or prefixes."
    )


class OrderRead(Schema):
    """An inspection order, with its leads counted by status."""

    id: int
    region_code: str
    status: str
    due_on: dt.date
    issued_by: str
    created_at: dt.datetime
    closed_at: dt.datetime | None
    lead_counts: dict[str, int]


class OrderBatchRead(Schema):
    """The orders just created (none when no open lead was left to package)."""

    orders: list[OrderRead]


class OrderPage(Page):
    """A page of inspection orders, oldest first."""

    items: list[OrderRead]


class OrderDetailRead(OrderRead):
    """An inspection order with its leads and their answers."""

    leads: list[LeadRead]


class AnswerCreate(Schema):
    """What the inspection of a lead found."""

    verdict: LeadVerdict
    amount_to_recover: Decimal = Field(
        default=Decimal(0), ge=0, max_digits=12, decimal_places=2,
        description="Yuan to recover; only a confirmed lead has any.",
    )  # fmt: skip
    note: str | None = Field(default=None, max_length=2000)

    @field_validator("amount_to_recover")
    @classmethod
    def _only_confirmed_recovers(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        """Refuse an amount to recover on a lead that was explained or a data error."""
        verdict = info.data.get("verdict")
        if amount > 0 and verdict is not None and verdict != LeadVerdict.CONFIRMED:
            raise ValueError(f"only a confirmed lead has an amount to recover, not {verdict}")
        return amount


class AnswerRead(LeadAnswerRead):
    """A lead's answer as it now stands, with the lead's and its order's status."""

    lead_id: int
    order_id: int
    lead_status: str


class ReviewCreate(Schema):
    """The issuing level's decision on an answer."""

    decision: Literal["accept", "return"] = Field(
        description="accept: the lead closes; return: the region answers again."
    )
    reason: str | None = Field(
        default=None, max_length=500, description="Why the answer is returned (required then)."
    )


class PrecisionRow(Schema):
    """One rule's reviewed answers (in one month, if asked by month)."""

    rule: str
    month: str | None
    reviewed: int
    confirmed: int
    explained: int
    data_error: int
    precision: float = Field(description="Share of the reviewed leads confirmed.")
    recovered: Decimal = Field(description="Amount to recover of the confirmed leads, yuan.")


class PrecisionRead(Schema):
    """Each rule's precision and recovered amounts, from accepted answers."""

    by_month: bool
    rules: list[PrecisionRow]
