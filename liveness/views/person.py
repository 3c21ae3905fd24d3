"""What the engine knows about one person: level, certification, reviews, payments, evidence."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors import TraceSpec
from liveness.errors import NotFound
from liveness.evidence.parts import day_from_number
from liveness.evidence.store import EvidenceStore
from liveness.ingest.traces import TRACE_SOURCES
from liveness.sources import BUILTIN_TRACES
from liveness.views.masking import mask_id_number
from liveness.views.payments import benefit_payments
from liveness.views.schemas import (
    AssessmentRead,
    BenefitRead,
    CertificationRead,
    PersonRead,
    PersonTaskRead,
    TraceRead,
)
from models import (
    LIVE_TASK_STATUSES,
    Assessment,
    Benefit,
    Certification,
    EvidencePart,
    Person,
    ReviewTask,
    Run,
    RunStatus,
)


def stored_sources(session: Session) -> tuple[str, ...]:
    """Return the trace sources the evidence store holds: the built-in ones, then the others."""
    held = set(session.scalars(select(EvidencePart.source).distinct()))
    return (*TRACE_SOURCES, *sorted(held - set(TRACE_SOURCES)))


def _timeline(
    session: Session, *, store: EvidenceStore, person_id: int, since: dt.date, per_source: int
) -> dict[str, list[TraceRead]]:
    """Return each source's latest traces of a person since a day, newest first.

    Every built-in source has its lane, and every declared source the store holds traces of.
    """
    timeline: dict[str, list[TraceRead]] = {}
    for source in stored_sources(session):
        found = []
        for mine in store.scan(
            session, source=source, columns=["day", "event_at", "kind"], first_day=since,
            persons=(person_id, person_id + 1),
        ):  # fmt: skip
            if mine.num_rows:
                found.extend(mine.to_pylist())
        found.sort(key=lambda row: (row["day"], row["event_at"]), reverse=True)
        timeline[source] = [
            TraceRead(day=day_from_number(row["day"]), at=row["event_at"], kind=str(row["kind"]))
            for row in found[:per_source]
        ]
    return timeline


# Long by design: a person's file gathered from a handful of reads into one view.
def person_view(
    session: Session,
    *,
    store: EvidenceStore,
    person_ref: str,
    today: dt.date,
    window_days: int = 90,
    per_source: int = 20,
    traces: Mapping[str, TraceSpec] | None = None,
) -> PersonRead:
    """Return a person's file: the evidence timeline covers `window_days` before the last run.

    `traces` (the configured trace sources, `Services.traces`) gives declared sources their
    words; the built-in sources have theirs.
    """
    person = session.scalars(select(Person).where(Person.person_ref == person_ref)).first()
    if person is None:
        raise NotFound(no_person(person_ref))
    assessment = session.execute(
        select(Assessment, Run.as_of)
        .join(Run, Run.id == Assessment.run_id)
        .where(
            Assessment.person_id == person.id,
            Assessment.graded,
            Run.status == RunStatus.PUBLISHED,
        )
        # The latest stored: later runs confirmed it without storing it again.
        .order_by(Assessment.run_id.desc())
        .limit(1)
    ).first()
    certification = session.scalars(
        select(Certification)
        .where(Certification.person_id == person.id)
        .order_by(Certification.valid_until.desc(), Certification.id.desc())
        .limit(1)
    ).first()
    tasks = session.scalars(
        select(ReviewTask)
        .where(
            ReviewTask.person_id == person.id,
            ReviewTask.status.in_(LIVE_TASK_STATUSES),
        )
        .order_by(ReviewTask.id)
    ).all()
    benefits = session.scalars(
        select(Benefit).where(Benefit.person_id == person.id).order_by(Benefit.id)
    ).all()
    reference = today if assessment is None else min(today, assessment.as_of)
    return PersonRead(
        person_ref=person.person_ref, name=person.name,
        id_number_masked=mask_id_number(person.id_number), birth_date=person.birth_date,
        region_code=person.region_code, grid_code=person.grid_code,
        benefits=[
            BenefitRead(
                benefit_type=str(b.benefit_type), status=str(b.status),
                monthly_amount=b.monthly_amount, last_certified_on=b.last_certified_on,
            )
            for b in benefits
        ],
        assessment=None if assessment is None else AssessmentRead(
            run_id=assessment.Assessment.run_id, as_of=assessment.as_of,
            level=str(assessment.Assessment.level), score=assessment.Assessment.score,
            rule=assessment.Assessment.rule, reasons=assessment.Assessment.reasons,
            policy_version=assessment.Assessment.policy_version,
        ),
        certification=None if certification is None else CertificationRead(
            source=str(certification.source), mark=certification.mark,
            certified_on=certification.certified_on, valid_until=certification.valid_until,
            valid=certification.valid_until >= today, run_id=certification.run_id,
        ),
        open_tasks=[
            PersonTaskRead(
                id=t.id, kind=str(t.kind), status=str(t.status), due_on=t.due_on,
                grid_code=t.grid_code, reasons=t.reasons,
            )
            for t in tasks
        ],
        timeline=_timeline(
            session, store=store, person_id=person.id,
            since=reference - dt.timedelta(days=window_days), per_source=per_source,
        ),
        payments=benefit_payments(session, person_id=person.id),
        source_labels={
            name: dict(spec.label) for name, spec in {**BUILTIN_TRACES, **(traces or {})}.items()
        },
    )  # fmt: skip


def no_person(person_ref: str) -> str:
    """Return what the absence of a person says (the same for one outside a caller's scope)."""
    return f"no person {person_ref!r} on the roll"
