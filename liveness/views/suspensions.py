"""Who the next run would suspend, and why, before it happens.

The forecast is the run itself (`liveness.certification.run.certify`), done inside a savepoint
that is always rolled back: the same code decides, so the preview cannot drift from the rules, and
nothing it wrote survives. Only the suspensions it would list are read back before the
rollback. Evidence not yet delivered is not in it: the nightly run ingests first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from liveness.certification.partitioned import certify_by_partitions
from liveness.certification.run import RunPolicies, certify
from liveness.certification.runner import LOCK_NAME
from liveness.evidence.store import EvidenceStore
from liveness.views.masking import mask_id_number
from models import (
    Benefit,
    DeathRecord,
    ListAction,
    ListEntry,
    Person,
    RunLock,
    RunStatus,
)

# A new suspension, or a suspended benefit's reason changing (a death found during a lapse).
SUSPENDING = (ListAction.SUSPEND, ListAction.AMEND)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class ForecastLine:
    """One suspension the next run would list: whose benefit, why, from when, how much."""

    person_ref: str
    name: str
    id_number_masked: str
    region_code: str
    grid_code: str
    benefit_type: str
    action: str
    reason: str
    event: str
    effective_on: dt.date
    amount: Decimal
    held: bool
    detail: dict[str, Any]
    died_on: dt.date | None


@dataclass(frozen=True)
class SuspensionForecast:
    """The suspensions a run as of `as_of` would list (a page of them), or why it would not."""

    as_of: dt.date
    lines: list[ForecastLine]
    total: int
    amount: Decimal
    # The mass-downgrade guard would stop the run: it would publish nothing.
    stopped_by_guard: bool = False
    guard: dict[str, Any] | None = None
    # A run holds the lock now: trying another beside it would only wait for it.
    run_in_progress: bool = False


def _in_regions(regions: Sequence[str] | None) -> ColumnElement[bool]:
    """Return the condition of a person in one of `regions` (codes or prefixes); None: all."""
    if regions is None:
        return and_(True)
    return or_(False, *(Person.region_code.startswith(prefix) for prefix in regions))


# Long by design: a dry run in a savepoint, read back, then rolled back; one unit.
def forecast_suspensions(
    session: Session, *, as_of: dt.date, store: EvidenceStore, policies: RunPolicies,
    timezone: str, regions: Sequence[str] | None = None, limit: int | None = None,
    offset: int = 0, range_persons: int | None = None,
) -> SuspensionForecast:  # fmt: skip
    """Return who a run as of `as_of` would suspend and why, writing nothing.

    `regions` scopes the lines (None: every region); `limit` pages them (None: all), ordered by
    region, grid and person. `range_persons`: try the run by ranges of that many person ids,
    as `liveness run` makes it (`LIVENESS_RUN_PARTITION_PERSONS`).
    """
    if session.get(RunLock, LOCK_NAME) is not None:
        return SuspensionForecast(
            as_of=as_of, lines=[], total=0, amount=CENT * 0, run_in_progress=True
        )
    savepoint = session.begin_nested()
    try:
        if range_persons is None:
            run = certify(session, as_of=as_of, store=store, policies=policies, timezone=timezone)
        else:
            run = certify_by_partitions(
                session, as_of=as_of, store=store, policies=policies, timezone=timezone,
                range_persons=range_persons,
            )  # fmt: skip
        if run.status != RunStatus.PUBLISHED:
            guard = dict((run.report or {}).get("guard") or {})
            return SuspensionForecast(
                as_of=as_of, lines=[], total=0, amount=CENT * 0, stopped_by_guard=True,
                guard=guard,
            )  # fmt: skip
        where = (
            ListEntry.run_id == run.id,
            ListEntry.action.in_(SUSPENDING),
            _in_regions(regions),
        )
        total, amount = session.execute(
            select(func.count(ListEntry.id), func.coalesce(func.sum(ListEntry.amount), 0))
            .join(Person, Person.id == ListEntry.person_id)
            .where(*where)
        ).one()  # fmt: skip
        query = (
            select(
                Person.person_ref, Person.name, Person.id_number, Person.region_code,
                Person.grid_code, Benefit.benefit_type, ListEntry.action, ListEntry.reason,
                ListEntry.event, ListEntry.effective_on, ListEntry.amount, ListEntry.status,
                ListEntry.detail,
            )
            .join(Person, Person.id == ListEntry.person_id)
            .join(Benefit, Benefit.id == ListEntry.benefit_id)
            .where(*where)
            .order_by(Person.region_code, Person.grid_code, Person.person_ref, ListEntry.seq)
            .offset(offset)
        )  # fmt: skip
        if limit is not None:
            query = query.limit(limit)
        rows = session.execute(query).all()
        died = _died_on(session, [row.detail or {} for row in rows])
        lines = [
            ForecastLine(
                person_ref=row.person_ref, name=row.name,
                id_number_masked=mask_id_number(row.id_number), region_code=row.region_code,
                grid_code=row.grid_code, benefit_type=str(row.benefit_type),
                action=str(row.action), reason=str(row.reason), event=str(row.event),
                effective_on=row.effective_on, amount=Decimal(row.amount),
                held=str(row.status) == "held", detail=dict(row.detail or {}),
                died_on=died.get(_record_key(row.detail or {}) or ("", "")),
            )
            for row in rows
        ]  # fmt: skip
        return SuspensionForecast(
            as_of=as_of,
            lines=lines,
            total=int(total),
            amount=Decimal(amount).quantize(Decimal("0.01")),
        )
    finally:
        # Whatever the run wrote (its row, assessments, tasks, notices, entries) goes.
        savepoint.rollback()


def forecast_page(
    forecast: SuspensionForecast, *, regions: Sequence[str] | None, limit: int | None,
    offset: int,
) -> SuspensionForecast:  # fmt: skip
    """Return a whole forecast's lines in `regions` (None: all), a page of them, and totals."""
    lines = [
        line for line in forecast.lines
        if regions is None or line.region_code.startswith(tuple(regions))
    ]  # fmt: skip
    amount = sum((line.amount for line in lines), Decimal(0)).quantize(CENT)
    shown = lines[offset:] if limit is None else lines[offset : offset + limit]
    return dataclasses.replace(forecast, lines=shown, total=len(lines), amount=amount)


def _record_key(detail: dict[str, Any]) -> tuple[str, str] | None:
    """Return the (source, record id) of the death record an entry cites, if it cites one."""
    if "source" in detail and "record_id" in detail:
        return str(detail["source"]), str(detail["record_id"])
    return None


def _died_on(session: Session, details: list[dict[str, Any]]) -> dict[tuple[str, str], dt.date]:
    """Return the date of death of each death record the entries cite (a page's worth)."""
    keys = {key for key in map(_record_key, details) if key is not None}
    if not keys:
        return {}
    rows = session.execute(
        select(DeathRecord.source, DeathRecord.record_id, DeathRecord.died_on).where(
            DeathRecord.record_id.in_(sorted({record for _, record in keys}))
        )
    ).all()
    return {(r.source, r.record_id): r.died_on for r in rows if (r.source, r.record_id) in keys}
