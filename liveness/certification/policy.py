"""The certification workflow policy, read from config/certification.toml."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from liveness.policy_files import PolicyModel, Texts, load_policy
from models import VisitOutcome

_CYCLE_KEYS = ("valid_months", "renewal_window_days", "notice_days")
# The notices the workflow sends, and the fields each text may use.
NOTICE_FIELDS = {"face": ("due",), "lapse": ("end", "deadline")}


@dataclass(frozen=True)
class CyclePolicy:
    """How long a certification lasts, when it renews, and the notice before a lapse."""

    valid_months: int
    renewal_window_days: int
    notice_days: int


@dataclass(frozen=True)
class GuardPolicy:
    """When a run stops before publishing because it would lower too many people at once."""

    max_downgrade_share: float
    max_new_deceased_share: float
    min_persons: int
    share_period_days: int
    # However long since the previous run, the allowances grow no further than these.
    max_downgrade_share_ceiling: float
    max_new_deceased_share_ceiling: float


@dataclass(frozen=True)
class LapsePolicy:
    """What counts as a review that happened and failed, before a lapse may suspend."""

    failed_visit_outcomes: tuple[str, ...]
    remote_after_visit_outcomes: tuple[str, ...]


@dataclass(frozen=True)
class RiskPolicy:
    """When a person's own traces stop abruptly: a review before their cycle is due."""

    enabled: bool = True
    # At least this many sources, each regular over the long window (summed weight at least
    # `regular_weight`) and each silent over its last `silent_days` due days.
    min_sources: int = 2
    regular_weight: float = 24.0
    silent_days: int = 30
    # Or every source the person used over the long window silent over its last `silent_days`
    # due days, where the person's own pace would have left at least this weight (0: off).
    expected_weight: float = 4.0
    # A lower bar that only holds back certification by data (no early review): the person's
    # pace makes their silence unusual, not yet alarming (0: off).
    hold_weight: float = 2.0
    # Nor certified by data: a person last seen (any trace of life) longer ago than this (0: off).
    last_seen_days: int = 0
    # A risk review is ranked as if the person's score were at most this.
    score: float = 0.3


@dataclass(frozen=True)
class CapacityPolicy:
    """How many home visits each grid can make a week, and who is offered a face check first."""

    visits_per_week: int
    grids: Mapping[str, int]
    face_first_for_weak: bool
    report_weeks: int
    # Medium people whose last face verification came to nothing are visited at once.
    visit_first_after_failed_face: bool

    def of(self, grid_code: str) -> int:
        """Return the visits `grid_code` can make in one week (Monday to Sunday)."""
        return self.grids.get(grid_code, self.visits_per_week)


@dataclass(frozen=True)
class CertificationPolicy:
    """The workflow numbers: cycles per benefit type, review deadlines, payment day."""

    version: str
    cycle: CyclePolicy
    face_due_days: int
    visit_due_days: int
    death_review_due_days: int
    # Days before a certification ends that its review opens (just in time): the face
    # verification's due days, the visit's and the notice's lead.
    review_lead_days: int
    payment_day: int
    guard: GuardPolicy
    lock_stale_after_s: int
    # A stored assessment older than this many days is stored again, changed or not.
    assessment_refresh_days: int
    # Assessments superseded before this many days ago are pruned.
    assessment_retention_days: int
    four_eyes_back_pay: float
    audit_share: float
    terminate_after_death_days: int
    suspend_when_imprisoned: tuple[str, ...]
    own_face_channels: tuple[str, ...]
    proxy_allowed: bool
    area_prefixes: tuple[str, ...]
    # The review queue's order: a renewal's or follow-up's priority per yuan at risk, and the
    # priority of a death review.
    priority_per_yuan_at_risk: float
    death_review_priority: float
    # The confidence stored with a death record matched on name, sex and birth date alone.
    demographic_confidence: float
    lapse: LapsePolicy
    notice_texts: Mapping[str, str]
    capacity: CapacityPolicy
    overrides: Mapping[str, CyclePolicy] = field(default_factory=dict)
    risk: RiskPolicy = field(default_factory=RiskPolicy)
    # Days within which a second, independent source must confirm a registry's death notice.
    notice_confirm_days: int = 30

    def cycle_for(self, benefit_type: str) -> CyclePolicy:
        """Return the cycle that applies to `benefit_type`."""
        return self.overrides.get(benefit_type, self.cycle)

    @property
    def longest_renewal_window(self) -> int:
        """Return the longest renewal window of any benefit type, in days."""
        cycles = [self.cycle, *self.overrides.values()]
        return max(cycle.renewal_window_days for cycle in cycles)


Positive = Annotated[int, Field(gt=0)]
Share = Annotated[float, Field(gt=0, le=1)]
PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class CycleOverride(PolicyModel):
    """A benefit type's deviations from the default cycle."""

    valid_months: Positive | None = None
    renewal_window_days: Positive | None = None
    notice_days: Positive | None = None


class CycleTable(PolicyModel):
    """The `[cycle]` table: the default cycle and its overrides per benefit type."""

    valid_months: Positive
    renewal_window_days: Positive
    notice_days: Positive
    overrides: dict[str, CycleOverride] = Field(default_factory=dict)


class FaceTable(PolicyModel):
    """The `[review.face]` table: which face channels count as the person's own."""

    own_channels: Texts = ()
    proxy_allowed: bool = False


class PriorityTable(PolicyModel):
    """The `[review.priority]` table: the order of the review queue."""

    per_yuan_at_risk: PositiveNumber = 1.0
    death_review: PositiveNumber = 1_000_000.0


class RiskTable(PolicyModel):
    """The `[review.risk]` table: when an abrupt stop of a person's traces opens a review."""

    enabled: bool = True
    min_sources: Positive = 2
    regular_weight: PositiveNumber = 24.0
    silent_days: Positive = 30
    expected_weight: Annotated[float, Field(ge=0)] = 4.0
    hold_weight: Annotated[float, Field(ge=0)] = 2.0
    last_seen_days: Annotated[int, Field(ge=0)] = 0
    score: Annotated[float, Field(ge=0, le=1)] = 0.3


class CapacityTable(PolicyModel):
    """The `[review.capacity]` table: home visits a week per grid, face checks first."""

    visits_per_week: Positive = 25
    grids: dict[str, Positive] = Field(default_factory=dict)
    face_first_for_weak: bool = True
    report_weeks: Positive = 8
    visit_first_after_failed_face: bool = True


class ReviewTable(PolicyModel):
    """The `[review]` table: deadlines of the reviews."""

    face_due_days: Positive
    visit_due_days: Positive
    death_review_due_days: Positive
    notice_lead_days: Positive = 5
    capacity: CapacityTable = CapacityTable()
    face: FaceTable = FaceTable()
    priority: PriorityTable = PriorityTable()
    risk: RiskTable = RiskTable()


class PaymentTable(PolicyModel):
    """The `[payment]` table."""

    day_of_month: int = Field(ge=1, le=28)


class GuardTable(PolicyModel):
    """The `[guard]` table: the mass-downgrade breaker."""

    max_downgrade_share: Share
    max_new_deceased_share: Share
    min_persons: Positive
    share_period_days: Positive
    max_downgrade_share_ceiling: Share
    max_new_deceased_share_ceiling: Share


class RunTable(PolicyModel):
    """The `[run]` table."""

    lock_stale_after_s: Positive
    assessment_refresh_days: Positive
    assessment_retention_days: Positive


class ListsTable(PolicyModel):
    """The `[lists]` table: four eyes, audit sample, termination, prison."""

    four_eyes_back_pay: float = Field(gt=0)
    audit_share: Share
    terminate_after_death_days: Positive
    suspend_when_imprisoned: Texts = ()


class LapseTable(PolicyModel):
    """The `[lapse]` table: which visit outcomes fail a review."""

    failed_visit_outcomes: Texts = ()
    remote_after_visit_outcomes: Texts = ()

    @field_validator("failed_visit_outcomes", "remote_after_visit_outcomes")
    @classmethod
    def _outcomes(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(values) - {str(outcome) for outcome in VisitOutcome}
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]} is not an outcome")
        return values

    @field_validator("failed_visit_outcomes")
    @classmethod
    def _alive_never_fails(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if set(values) & {"alive_confirmed", "in_hospital"}:
            raise ValueError("a visit that found the person alive never fails")
        return values


class NoticesTable(PolicyModel):
    """The `[notices]` table: texts the messaging gateway sends."""

    face: str
    lapse: str

    @field_validator("face", "lapse")
    @classmethod
    def _fields_known(cls, text: str, info: ValidationInfo) -> str:
        fields = NOTICE_FIELDS[str(info.field_name)]
        if not text.strip():
            raise ValueError("must be a text")
        try:
            text.format(**{name: "x" for name in fields})
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                "may use only " + ", ".join("{" + name + "}" for name in fields)
            ) from None
        return text


class LinkingTable(PolicyModel):
    """The `[linking]` table: how sure a death record's match to a person is."""

    demographic_confidence: Share = 0.9
    notice_confirm_days: Positive = 30


class AreaTable(PolicyModel):
    """The `[area]` table: the agency's own region prefixes."""

    region_prefixes: Texts = ()


class CertificationFile(PolicyModel):
    """The tables of config/certification.toml."""

    cycle: CycleTable
    review: ReviewTable
    payment: PaymentTable
    guard: GuardTable
    run: RunTable
    lists: ListsTable
    lapse: LapseTable = LapseTable()
    notices: NoticesTable
    area: AreaTable = AreaTable()
    linking: LinkingTable = LinkingTable()


def load_certification_policy(path: Path) -> CertificationPolicy:
    """Read and validate the certification policy file."""
    loaded = load_policy(path, CertificationFile, what="certification policy")
    values = loaded.model
    cycle = CyclePolicy(*(getattr(values.cycle, key) for key in _CYCLE_KEYS))
    overrides = {
        benefit_type: CyclePolicy(
            *(
                getattr(table, key) if getattr(table, key) is not None else getattr(cycle, key)
                for key in _CYCLE_KEYS
            )
        )
        for benefit_type, table in values.cycle.overrides.items()
    }
    lists, review = values.lists, values.review
    return CertificationPolicy(
        version=loaded.version,
        cycle=cycle,
        face_due_days=review.face_due_days,
        visit_due_days=review.visit_due_days,
        death_review_due_days=review.death_review_due_days,
        review_lead_days=review.face_due_days + review.visit_due_days + review.notice_lead_days,
        payment_day=values.payment.day_of_month,
        guard=GuardPolicy(**values.guard.model_dump()),
        lock_stale_after_s=values.run.lock_stale_after_s,
        assessment_refresh_days=values.run.assessment_refresh_days,
        assessment_retention_days=values.run.assessment_retention_days,
        four_eyes_back_pay=lists.four_eyes_back_pay,
        audit_share=lists.audit_share,
        terminate_after_death_days=lists.terminate_after_death_days,
        suspend_when_imprisoned=lists.suspend_when_imprisoned,
        own_face_channels=review.face.own_channels,
        proxy_allowed=review.face.proxy_allowed,
        area_prefixes=values.area.region_prefixes,
        priority_per_yuan_at_risk=review.priority.per_yuan_at_risk,
        death_review_priority=review.priority.death_review,
        demographic_confidence=values.linking.demographic_confidence,
        lapse=LapsePolicy(
            failed_visit_outcomes=values.lapse.failed_visit_outcomes,
            remote_after_visit_outcomes=values.lapse.remote_after_visit_outcomes,
        ),
        notice_texts=values.notices.model_dump(),
        capacity=CapacityPolicy(**review.capacity.model_dump()),
        overrides=overrides,
        risk=RiskPolicy(**review.risk.model_dump()),
        notice_confirm_days=values.linking.notice_confirm_days,
    )
