"""The run's stages before its workflow, by ranges of person ids, equal to the whole run's.

On the simulated city certified once, a second run as of the same day is graded range by
range (`GradingByRange`): its guard's verdict must be the one `certify` reaches for everyone,
every person's level the one the run publishes, and the assessments it writes and keeps the
run's, with nothing changed and with a source lost from the store (many lowered, the guard
trips). Over generated nights, with the workflow up to routing by ranges too:
`tests/liveness/test_partitioned_workflow.py`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from liveness.certification.assessments import standing_assessments
from liveness.certification.guard import GuardVerdict
from liveness.certification.partitioned import GradingByRange
from liveness.certification.run import certify
from liveness.db import session_scope
from liveness.scoring import LEVELS
from liveness.services import Services
from models import (
    Assessment,
    EvidencePart,
    Run,
    RunStatus,
)
from tests.liveness.test_run import AS_OF, _certify_city

pytestmark = pytest.mark.slow(seconds=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def certified_city(
    request: pytest.FixtureRequest, city: Path, services_factory: Callable[[str], Services]
) -> Services:
    """The city ingested and certified once, afresh for each test."""
    services, _, _ = _certify_city(request.param, city, services_factory)
    return services


@dataclass(frozen=True)
class _ByRange:
    """What the front half by ranges computed, read back before it was rolled back."""

    levels: dict[int, str]
    verdict: GuardVerdict
    counts: dict[str, int]
    written: list[tuple[Any, ...]]
    kept: pd.DataFrame


def _by_range(services: Services, as_of: dt.date, range_persons: int) -> _ByRange:
    """Grade, guard and write assessments range by range in a transaction rolled back."""
    levels: dict[int, str] = {}
    with services.sessions() as session:
        run = Run(
            as_of=as_of, status=RunStatus.RUNNING, policy_version=services.policies.scoring.version
        )
        session.add(run)
        session.flush()
        grading = GradingByRange(session, run=run)
        for number, graded in enumerate(
            grading.ranges(
                as_of=as_of, store=services.store, policies=services.policies,
                range_persons=range_persons,
            )
        ):  # fmt: skip
            ids = graded.snapshot.roll["person_id"].to_numpy()
            assert np.all((ids >= number * range_persons) & (ids < (number + 1) * range_persons))
            levels.update(
                zip(ids.tolist(), np.asarray(LEVELS)[graded.graded.grades.level], strict=True)
            )
            grading.write_range(graded, policies=services.policies)
        by_range = _ByRange(
            levels=levels, verdict=grading.verdict(services.policies),
            counts=grading.keep_standing(), written=_assessments(session, run),
            kept=standing_assessments(session, run=run),
        )  # fmt: skip
        session.rollback()  # nothing of it is published
    return by_range


def same_as_the_run(services: Services, as_of: dt.date, range_persons: int) -> Run:
    """Check the front half by ranges against `certify` as of `as_of`; return the run published.

    A run the guard stops is published again with the guard overridden, as an operator would.
    """
    by_range = _by_range(services, as_of, range_persons)
    with session_scope(services.sessions) as session:
        whole = certify(session, as_of=as_of, store=services.store, policies=services.policies)
    report = dict(whole.report["guard"])
    assert report.pop("overridden") is False
    assert by_range.verdict.as_dict() == report
    assert by_range.verdict.tripped == (whole.status == RunStatus.STOPPED_BY_GUARD)
    if by_range.verdict.tripped:
        with session_scope(services.sessions) as session:
            whole = certify(
                session, as_of=as_of, store=services.store, policies=services.policies,
                override_guard=True,
            )  # fmt: skip
    assert whole.status == RunStatus.PUBLISHED
    # Every person's level, the one the run published; the assessments written range by
    # range, and what stands after them, the run's.
    with session_scope(services.sessions) as session:
        standing = standing_assessments(session, run=whole)
        assert by_range.written == _assessments(session, whole)
    published = dict(zip(standing["person_id"].tolist(), standing["previous"], strict=True))
    assert by_range.levels == published
    pd.testing.assert_frame_equal(by_range.kept, standing)
    assert by_range.counts == whole.report["assessments"]
    return whole


@pytest.mark.parametrize(("range_persons", "lose_transit"), [(37, True), (10_000, False)])
def test_graded_by_range_the_guard_and_levels_are_the_runs(
    certified_city: Services, range_persons: int, lose_transit: bool
) -> None:
    services = certified_city
    if lose_transit:
        with session_scope(services.sessions) as session:
            # The data is gone, the people are not: many would be lowered.
            session.execute(delete(EvidencePart).where(EvidencePart.source == "transit"))
    whole = same_as_the_run(services, AS_OF, range_persons)
    guard = whole.report["guard"]
    # Nothing changed, nothing is stored again; a source lost, many are lowered and stored.
    assert guard["overridden"] == lose_transit == (guard["downgraded"] > 0)
    assert (whole.report["assessments"]["stored"] > 0) == lose_transit


def _assessments(session: Session, run: Run) -> list[tuple[Any, ...]]:
    """Return the assessments a run wrote, without their ids, in one order."""
    rows = session.execute(
        select(
            Assessment.person_id, Assessment.level, Assessment.score, Assessment.rule,
            Assessment.reasons, Assessment.policy_version, Assessment.gist, Assessment.graded,
        ).where(Assessment.run_id == run.id)
    ).all()  # fmt: skip
    return sorted((*row[:4], json.dumps(row.reasons, sort_keys=True), *row[5:]) for row in rows)
