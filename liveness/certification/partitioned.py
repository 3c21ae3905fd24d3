"""The run's stages before its workflow, a range of person ids at a time.

A run by partitions (docs/PARTITIONED_RUN.md) takes the snapshot, grades and counts the
guard's downgrades one range of person ids at a time, so that it holds one range's features
and grades at once, then decides the guard on the sum of the counts, and writes each range's
assessments. This module is that front half, equal range by range to what `certify` computes
for everyone; the workflow (certifications, reviews, the list) by partition is not built, so
`liveness run` does not use it yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
from sqlalchemy.orm import Session

from liveness.certification.assessments import keep_standing, write_assessments
from liveness.certification.guard import (
    DowngradeCounts,
    GuardVerdict,
    count_downgrades,
    decide_downgrades,
    previous_levels,
)
from liveness.certification.run import GradedSnapshot, RunPolicies, grade_snapshot
from liveness.evidence.snapshot import EvidenceSnapshot, rows_between, snapshots_by_range
from liveness.evidence.store import EvidenceStore
from models import Run


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
        self, *, as_of: dt.date, store: EvidenceStore, policies: RunPolicies, range_persons: int
    ) -> Iterator[GradedRange]:
        """Yield each range's snapshot and grades, counting its downgrades for the guard.

        The kept roll is read, not replaced: what a run keeps is the driver's to write.
        """
        for snapshot in snapshots_by_range(
            self.session, as_of=as_of, store=store, scoring=policies.scoring,
            health=policies.health, range_persons=range_persons,
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
        self._written.append(written.rows)
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
