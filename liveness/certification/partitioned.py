"""The certification run a range of person ids at a time, equal to the run of everyone.

A run by partitions (docs/PARTITIONED_RUN.md) takes the snapshot, grades and counts the
guard's downgrades one range of person ids at a time (`GradingByRange`), so that it holds one
range's features and grades at once, writes each range's assessments and runs the workflow
for its persons (`WorkflowByPartition`), all in one transaction; then it decides the guard on
the sum of the counts, and rolls every partition back to a savepoint if it trips. What couples
the partitions is done once: the standing assessments and certification ends kept, the new
home visits planned, the list put in order, the report. `liveness run` runs this way where
`LIVENESS_RUN_PARTITION_PERSONS` is set (`certify_by_partitions`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
from sqlalchemy.orm import Session, SessionTransaction

from liveness.certification.assessments import keep_standing, write_assessments
from liveness.certification.guard import (
    DowngradeCounts,
    GuardVerdict,
    count_downgrades,
    decide_downgrades,
    previous_levels,
)
from liveness.certification.run import (
    GradedSnapshot,
    RunPolicies,
    RunTally,
    Stopwatch,
    grade_snapshot,
    publish_report,
    stop_by_guard,
)
from liveness.certification.workflow import WorkflowByPartition
from liveness.evidence.health import SourceHealth
from liveness.evidence.snapshot import EvidenceSnapshot, rows_between, snapshots_by_range
from liveness.evidence.store import EvidenceStore
from liveness.memory import reused_blocks
from models import Run, RunStatus


@dataclass(frozen=True, eq=False)
class GradedRange:
    """One range's snapshot, graded as the run grades it, and its guard counts."""

    snapshot: EvidenceSnapshot
    # The assessments that stood for the range's persons before the run.
    standing: pd.DataFrame
    graded: GradedSnapshot
    downgrades: DowngradeCounts


class GradingByRange:
    """Grade a run's persons range by range; the guard's verdict once every range is counted.

    The previous run and the levels that stood after it are read once, as the run reads them.
    Each range's assessments may then be written (`write_range`), and what stands after the
    run kept once, from every range's rows (`keep_standing`).
    """

    def __init__(self, session: Session, *, run: Run) -> None:
        self.session = session
        self.run = run
        self.previous_run, self.previous = previous_levels(session, before=run)
        self.counted = DowngradeCounts()
        self._written: list[pd.DataFrame] = []
        self._written_counts = {"stored": 0, "departed": 0, "confirmed": 0}

    def ranges(
        self, *, as_of: dt.date, store: EvidenceStore, policies: RunPolicies,
        range_persons: int, keep_roll: bool = False,
    ) -> Iterator[GradedRange]:  # fmt: skip
        """Yield each range's snapshot and grades, counting its downgrades for the guard.

        `keep_roll`: keep the roll read (before the first range), as a run does.
        """
        for snapshot in snapshots_by_range(
            self.session, as_of=as_of, store=store, scoring=policies.scoring,
            health=policies.health, range_persons=range_persons, keep_roll=keep_roll,
        ):  # fmt: skip
            standing = self._standing_of(snapshot)
            graded = grade_snapshot(snapshot, previous=standing, scoring=policies.scoring)
            counts = count_downgrades(graded.assessed, standing)
            self.counted = self.counted + counts
            yield GradedRange(
                snapshot=snapshot, standing=standing, graded=graded, downgrades=counts
            )

    def verdict(self, policies: RunPolicies) -> GuardVerdict:
        """Decide the guard on the counts of every range yielded so far (all of them, after)."""
        return decide_downgrades(
            self.counted, run=self.run, previous_run=self.previous_run,
            policy=policies.certification.guard,
        )  # fmt: skip

    def write_range(self, graded: GradedRange, *, policies: RunPolicies) -> None:
        """Write a range's changed assessments, and the departures of its persons."""
        written = write_assessments(
            self.session, run_id=self.run.id, assessed=graded.graded.assessed,
            gist=graded.graded.gists, standing=graded.standing,
            as_of=self.run.as_of, policy_version=policies.scoring.version,
            refresh_days=policies.certification.assessment_refresh_days,
            explain=graded.graded.explain,
        )  # fmt: skip
        # What stands is kept from these after the last range: without their reasons, which
        # are most of a row and would make every range's rows stay until then.
        self._written.append(written.rows.drop(columns="reasons"))
        for key, value in written.counts.items():
            self._written_counts[key] += value

    def keep_standing(self) -> dict[str, int]:
        """Keep what stands after the run, from every range written; return the counts."""
        keep_standing(
            self.session, run_id=self.run.id, standing=self.previous, as_of=self.run.as_of,
            stored=pd.concat(self._written, ignore_index=True),
        )  # fmt: skip
        return dict(self._written_counts)

    def _standing_of(self, snapshot: EvidenceSnapshot) -> pd.DataFrame:
        """Return the standing assessments of the persons of a snapshot's range."""
        if snapshot.person_range is None:
            return self.previous
        return rows_between(self.previous, *snapshot.person_range)


# Long by design: the run's stages in publishing order, as `certify` has them.
def certify_by_partitions(
    session: Session,
    *,
    as_of: dt.date,
    store: EvidenceStore,
    policies: RunPolicies,
    range_persons: int,
    override_guard: bool = False,
    run: Run | None = None,
    checkpoint: Callable[[str], None] | None = None,
    timezone: str = "Asia/Shanghai",
) -> Run:
    """Run certification as of `as_of` by ranges of `range_persons` person ids, as `certify`.

    The same effects, lists and report as `certify` (`liveness.certification.run`), in the
    caller's transaction, holding one range's evidence and grades at a time. Each range is
    published as it is graded, inside a savepoint opened after the roll is read (a stopped run
    keeps it, as `certify` does); a guard that trips on the counts of every range rolls back
    to it. The report's `timings_s` add up each stage over the ranges: `evidence` takes and
    grades them, `publish` writes them and does what couples them; its `ranges` say how many
    ranges of how many person ids the run was made in.
    """
    watch = Stopwatch(checkpoint)
    if run is None:
        run = Run(as_of=as_of, status=RunStatus.RUNNING, policy_version=policies.scoring.version)
        session.add(run)
        session.flush()
    grading = GradingByRange(session, run=run)
    ranges = grading.ranges(
        as_of=as_of, store=store, policies=policies, range_persons=range_persons,
        keep_roll=True,
    )  # fmt: skip
    tally = RunTally()
    health: SourceHealth | None = None
    workflow: WorkflowByPartition | None = None
    published: SessionTransaction | None = None
    ranges_run = 0
    while True:
        with watch.stage("evidence"), reused_blocks():
            part = next(ranges, None)
        if part is None:
            break
        ranges_run += 1
        if workflow is None:
            published = session.begin_nested()
            workflow = WorkflowByPartition(
                session, run_id=run.id, as_of=as_of, store=store, scoring=policies.scoring,
                policy=policies.certification, timezone=timezone, estimator=policies.estimator,
            )  # fmt: skip
        tally.add(RunTally.of(part.snapshot, part.graded))
        health = part.snapshot.health
        with watch.stage("publish"):
            grading.write_range(part, policies=policies)
            workflow.partition(
                session, snapshot=part.snapshot, assessed=part.graded.assessed,
                explain=part.graded.explain,
            )  # fmt: skip
    assert workflow is not None and published is not None and health is not None
    with watch.stage("guard"):
        verdict = grading.verdict(policies)
    if verdict.tripped and not override_guard:
        published.rollback()
        run = stop_by_guard(
            session, run, tally=tally, verdict=verdict, health=health, timings=watch.seconds
        )
    else:
        with watch.stage("publish"):
            stored = grading.keep_standing()
            result = workflow.finish(session)
        published.commit()
        run = publish_report(
            session, run, tally=tally, workflow=result, policies=policies,
            timings=watch.seconds, health=health, stored=stored, verdict=verdict,
            override_guard=override_guard,
        )  # fmt: skip
    # How the run was made, for whoever reads its report: the rest is a run of everyone's.
    run.report = {**(run.report or {}), "ranges": {"persons": range_persons, "count": ranges_run}}
    session.flush()
    return run
