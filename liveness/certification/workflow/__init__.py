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

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy.orm import Session

from liveness.certification import CertificationPolicy
from liveness.certification.workflow.context import REVIEW_KINDS, Context, WorkflowResult
from liveness.certification.workflow.estimate import alive_estimate
from liveness.certification.workflow.payments import EVENT_ORDER, fold_payments
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
from liveness.scoring import ScoringPolicy

__all__ = [
    "ACTING",
    "ALIVE_OUTCOMES",
    "ASSISTED_CHANNEL",
    "EVENT_ORDER",
    "OPEN_TASK_STATUSES",
    "PROOF_SOURCES",
    "REVIEW_KINDS",
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
    context = Context(
        run_id=run_id, as_of=as_of, store=store, policy=policy, timezone=timezone,
        scoring=scoring, estimator=estimator, explain=explain,
    )  # fmt: skip
    result = WorkflowResult()
    settled = settle_reviews(session, context, result)
    findings = gather_proofs(session, context, settled, roll=snapshot.roll, result=result)
    # Whose own traces stopped abruptly, or fell silent longer than their pace makes usual:
    # no data certifies them, and no data closes their review, until the traces resume.
    stops = abrupt_stops(snapshot, policy=policy.risk, scoring=scoring)
    assessed = assessed.assign(
        stopped=stops.held, certifiable=assessed["certifiable"].to_numpy() & ~stops.held
    )
    estimate = alive_estimate(session, context, snapshot=snapshot)
    certified = certify(
        session, context, findings, assessed=assessed, roll=snapshot.roll, estimate=estimate,
        result=result, roll_certified=snapshot.roll_certified,
    )  # fmt: skip
    # What the run now knows of the dead is their death: reviews and lapses see them deceased.
    levels = assessed.assign(
        level=np.where(assessed["person_id"].isin(findings.dead), "deceased", assessed["level"])
    )
    route(
        session, context, settled, findings, certified, snapshot=snapshot, levels=levels,
        stops=stops, estimate=estimate, result=result,
    )  # fmt: skip
    result.visit_plan = visit_plan(session, today=as_of, capacity=policy.capacity)
    fold_payments(session, context, settled, findings, certified, levels=levels, result=result)
    return result
