"""The five certification indicators and the distribution of levels, by region or grid."""

from __future__ import annotations

import datetime as dt
from typing import TypeVarTuple

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from liveness.views.schemas import IndicatorsRead
from models import (
    Benefit,
    BenefitStatus,
    Certification,
    Person,
    Run,
    RunStatus,
    assessments_as_of,
)

Ts = TypeVarTuple("Ts")


def _scoped(query: Select[*Ts], *, region: str | None, grid: str | None) -> Select[*Ts]:
    """Restrict a query joined to persons to a region (prefix) and a grid."""
    if region:
        query = query.where(Person.region_code.startswith(region))
    if grid:
        query = query.where(Person.grid_code == grid)
    return query


# Long by design: a few grouped queries, then their rows folded into the indicator counts.
def indicators(
    session: Session, *, region: str | None, grid: str | None, today: dt.date
) -> IndicatorsRead:
    """Count the indicators over the persons of a region (code prefix) and/or grid."""
    run = session.execute(
        select(Run.id, Run.as_of)
        .where(Run.status == RunStatus.PUBLISHED)
        .order_by(Run.id.desc())
        .limit(1)
    ).first()
    as_of = today if run is None else run.as_of
    on_roll = session.scalar(
        _scoped(select(func.count()).select_from(Person), region=region, grid=grid)
    )
    active = session.scalar(
        _scoped(
            select(func.count())
            .select_from(Benefit)
            .join(Person, Person.id == Benefit.person_id)
            .where(Benefit.status == BenefitStatus.ACTIVE),
            region=region,
            grid=grid,
        )
    )
    # Each person's latest certification is the one that counts.
    latest = (
        select(func.max(Certification.id).label("id")).group_by(Certification.person_id).subquery()
    )
    valid = (Certification.valid_until >= as_of).label("valid")
    # Grouped in the database: a handful of (mark, source, day, valid) combinations come back,
    # not a row per person.
    groups = session.execute(
        _scoped(
            select(
                Certification.mark, Certification.source, Certification.certified_on, valid,
                func.count(),
            )
            .join(latest, latest.c.id == Certification.id)
            .join(Person, Person.id == Certification.person_id)
            .group_by(Certification.mark, Certification.source, Certification.certified_on, valid),
            region=region,
            grid=grid,
        )
    ).all()  # fmt: skip
    status = {"certified": 0, "lapsed": 0, "never": 0}
    mark: dict[str, int] = {}
    source: dict[str, int] = {}
    time: dict[str, int] = {}
    certified = 0
    for row_mark, row_source, certified_on, is_valid, count in groups:
        certified += count
        status["certified" if is_valid else "lapsed"] += count
        mark[row_mark] = mark.get(row_mark, 0) + count
        source[str(row_source)] = source.get(str(row_source), 0) + count
        month = f"{certified_on:%Y-%m}"
        time[month] = time.get(month, 0) + count
    status["never"] = max(0, int(on_roll or 0) - certified)
    levels: dict[str, int] = {}
    if run is not None:
        standing = assessments_as_of(run.id)
        levels = {
            str(level): int(count)
            for level, count in session.execute(
                _scoped(
                    select(standing.level, func.count())
                    .join(Person, Person.id == standing.person_id)
                    .group_by(standing.level),
                    region=region,
                    grid=grid,
                )
            ).all()
        }
    return IndicatorsRead(
        as_of=as_of, run_id=None if run is None else run.id, region=region, grid=grid,
        on_roll=int(on_roll or 0), active_benefits=int(active or 0), certification_status=status,
        mark=mark, source=source, time=dict(sorted(time.items())), levels=levels,
    )  # fmt: skip
