"""The scheduled jobs: the nightly ingest and run, and the pull of a registry's death notices."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from liveness.certification.assessments import prune_assessments
from liveness.certification.runner import execute_run, local_today
from liveness.db import session_scope
from liveness.evidence.compaction import compact_store
from liveness.ingest import DeliveryReport
from liveness.ingest.notices import NOTICE_SOURCE
from liveness.ingest.runner import ingest_all
from liveness.ingest.service import ingest_pull
from liveness.services import Services
from models import RunStatus


@dataclass(frozen=True)
class NightlyResult:
    """What one night did: its deliveries and its run."""

    as_of: dt.date
    deliveries: list[DeliveryReport]
    run_id: int
    run_status: str
    refused: int

    @property
    def ok(self) -> bool:
        """Return whether the night published and refused no delivery."""
        return self.run_status == RunStatus.PUBLISHED and self.refused == 0


def nightly_job(services: Services, *, as_of: dt.date | None = None) -> NightlyResult:
    """Ingest every configured source, then certify as of `as_of` (default: yesterday)."""
    day = as_of or local_today(services) - dt.timedelta(days=1)
    deliveries = ingest_all(services)
    # Yesterday's small parts join their month's part: reads stay one file per month.
    compact_store(services.sessions, store=services.store)
    run = execute_run(services, as_of=day)
    # Assessments superseded before the retention period go (they are a night's rows).
    with session_scope(services.sessions) as session:
        prune_assessments(
            session, today=day,
            retention_days=services.policies.certification.assessment_retention_days,
        )  # fmt: skip
    return NightlyResult(
        as_of=day,
        deliveries=deliveries,
        run_id=run.id,
        run_status=str(run.status),
        refused=sum(report.status == "refused" for report in deliveries),
    )


def notice_pull_job(services: Services) -> DeliveryReport:
    """Pull the civil registry's death notices since the watermark, in a transaction of its own."""
    services.require_schema()
    with session_scope(services.sessions) as session:
        return ingest_pull(
            session, source=NOTICE_SOURCE, context=services.ingest_context(),
            secrets=services.settings.secret_values(),
        )  # fmt: skip
