"""What every step of one run's workflow reads, and what the workflow reports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt
from sqlalchemy import ColumnElement, and_, true

from liveness.certification import CertificationPolicy
from liveness.estimator.config import EstimatorConfig
from liveness.evidence.store import EvidenceStore
from liveness.review import RoutingResult
from liveness.scoring import ScoringPolicy
from models import TaskKind

REVIEW_KINDS = (TaskKind.FACE_VERIFICATION, TaskKind.HOME_VISIT)


@dataclass
class WorkflowResult:
    """What the workflow did in one run, for the run report."""

    certified: dict[str, int] = field(default_factory=dict)
    # Of those certified silently, how many were strong on a night no run graded, and how
    # many the learned estimator certified (and what it did: `Estimate.report`).
    certified_earlier_night: int = 0
    certified_by_estimator: int = 0
    estimator: dict[str, Any] = field(default_factory=dict)
    # Risk reviews: how many persons each signal flagged tonight, and how many opened.
    risk_reviews: dict[str, int] = field(default_factory=dict)
    face_settled: dict[str, int] = field(default_factory=dict)
    outcomes_applied: dict[str, int] = field(default_factory=dict)
    routing: RoutingResult | None = None
    death_reviews: int = 0
    death_records_settled: int = 0
    notices: dict[str, int] = field(default_factory=dict)
    refuted_death_records: int = 0
    events: dict[str, int] = field(default_factory=dict)
    lapse_waiting: dict[str, int] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    # The home visits planned per grid and week after routing (liveness.review.plan).
    visit_plan: dict[str, Any] = field(default_factory=dict)

    def add(self, part: WorkflowResult) -> None:
        """Add what the workflow did for one partition of the run's persons to this result.

        Counts add up, by key where they are counted by key; the estimator's artifact and
        notes are the run's (every partition's alike), its counts add up. The list's entries
        follow the partition's (a run by partitions puts them in the list's order itself), and
        the visit plan, made once for the run, is not a partition's to add.
        """
        for name in _COUNTED_BY_KEY:
            add_counts(getattr(self, name), getattr(part, name))
        for name in _COUNTED:
            setattr(self, name, getattr(self, name) + getattr(part, name))
        for key, value in part.estimator.items():
            if isinstance(value, int) and not isinstance(value, bool):
                self.estimator[key] = self.estimator.get(key, 0) + value
            else:
                self.estimator.setdefault(key, value)
        if part.routing is not None:
            routing = self.routing or RoutingResult(opened={}, closed_by_data=0, cancelled=0)
            opened = dict(routing.opened)
            add_counts(opened, part.routing.opened)
            self.routing = RoutingResult(
                opened=opened, closed_by_data=routing.closed_by_data + part.routing.closed_by_data,
                cancelled=routing.cancelled + part.routing.cancelled,
                visits_late=routing.visits_late + part.routing.visits_late,
            )  # fmt: skip
        self.entries.extend(part.entries)


def add_counts(total: dict[str, int], part: Mapping[str, int]) -> None:
    """Add counts by key (a partition's) to `total`, in place."""
    for key, value in part.items():
        total[key] = total.get(key, 0) + value


# The fields of `WorkflowResult` that are counts per key, and those that are plain counts.
_COUNTED_BY_KEY = (
    "certified", "risk_reviews", "face_settled", "outcomes_applied", "notices", "events",
    "lapse_waiting",
)  # fmt: skip
_COUNTED = (
    "certified_earlier_night", "certified_by_estimator", "death_reviews",
    "death_records_settled", "refuted_death_records",
)  # fmt: skip


@dataclass(frozen=True)
class Context:
    """What every step of one run's workflow reads."""

    run_id: int
    as_of: dt.date
    store: EvidenceStore
    policy: CertificationPolicy
    timezone: str
    scoring: ScoringPolicy
    # Whether and how the learned estimator may certify and flag (None: it may not).
    estimator: EstimatorConfig | None = None
    # Builds the reasons of the run's persons whose reasons are cited (by their `row`).
    explain: Callable[[npt.ArrayLike], list[dict[str, Any]]] | None = None
    # The run's partition (docs/PARTITIONED_RUN.md): the person ids [lo, hi) whose rows the
    # workflow reads and changes; None for everyone.
    persons: tuple[int, int] | None = None

    def in_partition(self, person_id: Any) -> ColumnElement[bool]:
        """Return the condition that a person id column lies in the run's partition."""
        if self.persons is None:
            return true()
        lo, hi = self.persons
        condition: ColumnElement[bool] = and_(person_id >= lo, person_id < hi)
        return condition
