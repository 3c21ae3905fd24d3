"""The run's stages before its workflow, by ranges of person ids, equal to the whole run's.

On the simulated city certified once, a second run as of the same day is graded range by
range (`GradingByRange`): its guard's verdict must be the one `certify` reaches for everyone,
every person's level the one the run publishes, and the assessments it writes and keeps the
run's, with nothing changed and with a source lost from the store (many lowered, the guard
trips).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from liveness.certification.assessments import standing_assessments
from liveness.certification.partitioned import GradingByRange
from liveness.certification.run import certify
from liveness.db import session_scope
from liveness.scoring import LEVELS
from liveness.services import Services
from models import Assessment, EvidencePart, Run, RunStatus
from tests.liveness.test_run import AS_OF, _certify_city

pytestmark = pytest.mark.slow(seconds=20)


@pytest.fixture(params=["sqlite", "postgresql"])
def certified_city(
    request: pytest.FixtureRequest, city: Path, services_factory: Callable[[str], Services]
) -> Services:
    """The city ingested and certified once, afresh for each test."""
    services, _, _ = _certify_city(request.param, city, services_factory)
    return services


@pytest.mark.parametrize(("range_persons", "lose_transit"), [(37, True), (10_000, False)])
def test_graded_by_range_the_guard_and_levels_are_the_runs(
    certified_city: Services, range_persons: int, lose_transit: bool
) -> None:
    services = certified_city
    if lose_transit:
        with session_scope(services.sessions) as session:
            # The data is gone, the people are not: many would be lowered.
            session.execute(delete(EvidencePart).where(EvidencePart.source == "transit"))
    levels: dict[int, str] = {}
    ranges = 0
    with services.sessions() as session:
        run = Run(
            as_of=AS_OF, status=RunStatus.RUNNING, policy_version=services.policies.scoring.version
        )
        session.add(run)
        session.flush()
        grading = GradingByRange(session, run=run)
        for graded in grading.ranges(
            as_of=AS_OF, store=services.store, policies=services.policies,
            range_persons=range_persons,
        ):  # fmt: skip
            ids = graded.snapshot.roll["person_id"].to_numpy()
            assert np.all((ids >= ranges * range_persons) & (ids < (ranges + 1) * range_persons))
            levels.update(
                zip(ids.tolist(), np.asarray(LEVELS)[graded.graded.grades.level], strict=True)
            )
            ranges += 1
            grading.write_range(graded, policies=services.policies)
        verdict = grading.verdict(services.policies)
        counts = grading.keep_standing()
        written = _assessments(session, run)
        kept = standing_assessments(session, run=run)
        session.rollback()  # nothing of it is published
    assert ranges > (1 if range_persons == 37 else 0)
    # The whole run, as `liveness run` makes it: the same verdict.
    with session_scope(services.sessions) as session:
        whole = certify(session, as_of=AS_OF, store=services.store, policies=services.policies)
    assert whole.status == (RunStatus.STOPPED_BY_GUARD if lose_transit else RunStatus.PUBLISHED)
    report = dict(whole.report["guard"])
    assert report.pop("overridden") is False
    assert verdict.as_dict() == report
    assert verdict.tripped == lose_transit and verdict.compared > 0
    if lose_transit:
        assert verdict.downgraded > 0 and verdict.transitions
        with session_scope(services.sessions) as session:
            whole = certify(
                session, as_of=AS_OF, store=services.store, policies=services.policies,
                override_guard=True,
            )  # fmt: skip
    # And every person's level, the one the run published; the assessments written range by
    # range, and what stands after them, the run's.
    with session_scope(services.sessions) as session:
        standing = standing_assessments(session, run=whole)
        assert written == _assessments(session, whole)
    # Nothing changed, nothing is stored again; a source lost, many are.
    assert bool(written) == lose_transit
    published = dict(zip(standing["person_id"].tolist(), standing["previous"], strict=True))
    assert levels == published
    pd.testing.assert_frame_equal(kept, standing)
    assert counts == whole.report["assessments"]


def _assessments(session: Session, run: Run) -> list[tuple[Any, ...]]:
    """Return the assessments a run wrote, without their ids, in one order."""
    rows = session.execute(
        select(
            Assessment.person_id, Assessment.level, Assessment.score, Assessment.rule,
            Assessment.reasons, Assessment.policy_version, Assessment.gist, Assessment.graded,
        ).where(Assessment.run_id == run.id)
    ).all()  # fmt: skip
    return sorted((*row[:4], json.dumps(row.reasons, sort_keys=True), *row[5:]) for row in rows)
