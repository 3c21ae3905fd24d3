"""What every step of one run's workflow reads, and what the workflow reports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
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
