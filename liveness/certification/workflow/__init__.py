"""The certification workflow of one run: from levels and review outcomes to certifications,
reviews, notices and the events of the money path.

Every effect here is written in the run's transaction. The order matters and is fixed, so a
rerun of the same date does the same: settle face verifications from their results, apply
review outcomes recorded since the last run (a review's death becomes a death record), weigh
proofs of life against death records, certify, route new reviews, then gather each benefit's
events and fold them through the payment state machine (`liveness.lists.payment`), which
alone makes list entries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy.orm import Session

from liveness.certification import CertificationPolicy
from liveness.certification.kept_ends import keep_ends
from liveness.certification.service import read_ends
from liveness.certification.workflow.context import REVIEW_KINDS, Context, WorkflowResult
from liveness.certification.workflow.estimate import alive_estimate
from liveness.certification.workflow.payments import EVENT_ORDER, PaymentFolding
from liveness.certification.workflow.proofs import (
    ACTING,
    ALIVE_OUTCOMES,
    PROOF_SOURCES,
    certify,
    gather_proofs,
)
from liveness.certification.workflow.risk import abrupt_stops
from liveness.certification.workflow.routing import route
from liveness.certification.workflow.settle import (
    ASSISTED_CHANNEL,
    OPEN_TASK_STATUSES,
    settle_reviews,
)
from liveness.estimator.config import EstimatorConfig
from liveness.evidence.snapshot import EvidenceSnapshot
from liveness.evidence.store import EvidenceStore
from liveness.review.plan import visit_plan
from liveness.review.service import VisitPlanning
from liveness.scoring import ScoringPolicy

__all__ = [
    "ACTING",
    "ALIVE_OUTCOMES",
    "ASSISTED_CHANNEL",
    "EVENT_ORDER",
    "OPEN_TASK_STATUSES",
    "PROOF_SOURCES",
    "REVIEW_KINDS",
    "WorkflowByPartition",
    "WorkflowResult",
    "apply_workflow",
]


def apply_workflow(
    session: Session,
    *,
    run_id: int,
    as_of: dt.date,
    snapshot: EvidenceSnapshot,
    assessed: pd.DataFrame,
    store: EvidenceStore,
    scoring: ScoringPolicy,
    policy: CertificationPolicy,
    timezone: str = "Asia/Shanghai",
    estimator: EstimatorConfig | None = None,
    explain: Callable[[npt.ArrayLike], list[dict[str, Any]]] | None = None,
) -> WorkflowResult:
    """Turn a run's levels and the reviews' outcomes into certifications, reviews and the list."""
    workflow = WorkflowByPartition(
        session, run_id=run_id, as_of=as_of, store=store, scoring=scoring, policy=policy,
        timezone=timezone, estimator=estimator, roll_certified=snapshot.roll_certified,
    )  # fmt: skip
    workflow.partition(session, snapshot=snapshot, assessed=assessed, explain=explain)
    return workflow.finish(session)


class WorkflowByPartition:
    """The workflow of one run, a partition of person ids at a time (or everyone at once).

    What couples partitions is done once (docs/PARTITIONED_RUN.md): the certification ends
    are read before the first partition and kept after the last, the duplicate identities
    found before the first, the new home visits planned and the list put in order after the
    last, and the partitions' results added up.
    """

    def __init__(
        self, session: Session, *, run_id: int, as_of: dt.date, store: EvidenceStore,
        scoring: ScoringPolicy, policy: CertificationPolicy, timezone: str = "Asia/Shanghai",
        estimator: EstimatorConfig | None = None, roll_certified: pd.DataFrame | None = None,
    ) -> None:  # fmt: skip
        self.context = Context(
            run_id=run_id, as_of=as_of, store=store, policy=policy, timezone=timezone,
            scoring=scoring, estimator=estimator,
        )  # fmt: skip
        self.ends = read_ends(session, policy=policy, roll_certified=roll_certified)
        self.planning = VisitPlanning()
        self.folding = PaymentFolding(session)
        self.result = WorkflowResult()
        self._recorded: list[pd.Series] = []

    def partition(
        self, session: Session, *, snapshot: EvidenceSnapshot, assessed: pd.DataFrame,
        explain: Callable[[npt.ArrayLike], list[dict[str, Any]]] | None = None,
    ) -> WorkflowResult:  # fmt: skip
        """Run the workflow for a snapshot's persons (its `person_range`, or everyone)."""
        persons = snapshot.person_range
        context = dataclasses.replace(self.context, explain=explain, persons=persons)
        policy, scoring = context.policy, context.scoring
        result = WorkflowResult()
        settled = settle_reviews(session, context, result)
        findings = gather_proofs(session, context, settled, roll=snapshot.roll, result=result)
        # Whose own traces stopped abruptly, or fell silent longer than their pace makes
        # usual: no data certifies them, and no data closes their review, until they resume.
        stops = abrupt_stops(snapshot, policy=policy.risk, scoring=scoring)
        assessed = assessed.assign(
            stopped=stops.held, certifiable=assessed["certifiable"].to_numpy() & ~stops.held
        )
        estimate = alive_estimate(session, context, snapshot=snapshot)
        certified = certify(
            session, context, findings, assessed=assessed, roll=snapshot.roll,
            estimate=estimate, result=result,
            partition_ends=self.ends if persons is None else self.ends.between(*persons),
        )  # fmt: skip
        self._recorded.append(certified.recorded)
        # What the run now knows of the dead is their death: reviews and lapses see them so.
        levels = assessed.assign(
            level=np.where(assessed["person_id"].isin(findings.dead), "deceased",
                           assessed["level"])
        )  # fmt: skip
        route(
            session, context, settled, findings, certified, snapshot=snapshot, levels=levels,
            stops=stops, estimate=estimate, result=result, planning=self.planning,
        )  # fmt: skip
        self.folding.fold(
            session, context, settled, findings, certified, levels=levels, result=result
        )
        self.result.add(result)
        return result

    def finish(self, session: Session) -> WorkflowResult:
        """Do once what couples the partitions; return the run's result."""
        context, result = self.context, self.result
        keep_ends(session, pd.concat(self._recorded).sort_index())
        late = self.planning.plan(
            session, run_id=context.run_id, as_of=context.as_of, policy=context.policy
        )
        if result.routing is not None:
            result.routing = dataclasses.replace(result.routing, visits_late=late)
        result.visit_plan = visit_plan(
            session, today=context.as_of, capacity=context.policy.capacity
        )
        self.folding.finish(session, context, result=result)
        return result
