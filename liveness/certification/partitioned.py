"""The run's stages before publishing, a range of person ids at a time.

A run by partitions (docs/PARTITIONED_RUN.md) takes the snapshot, grades and counts the
guard's downgrades one range of person ids at a time, so that it holds one range's features
and grades at once, then decides the guard on the sum of the counts. This module is that front
half, equal range by range to what `certify` computes for everyone; publishing by partition
is not built, so `liveness run` does not use it yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from liveness.certification.guard import (
    DowngradeCounts,
    GuardVerdict,
    count_downgrades,
    decide_downgrades,
    previous_levels,
)
from liveness.certification.run import RunPolicies, previous_level_codes
from liveness.evidence.snapshot import EvidenceSnapshot, rows_between, snapshots_by_range
from liveness.evidence.store import EvidenceStore
from liveness.scoring import LEVELS, Grades, benefit_type_codes, grade
from models import Run


@dataclass(frozen=True, eq=False)
class GradedRange:
    """One range's snapshot, its grades as the run grades them, and its guard counts."""

    snapshot: EvidenceSnapshot
    grades: Grades
    downgrades: DowngradeCounts


class GradingByRange:
    """Grade a run's persons range by range; the guard's verdict once every range is counted.

    The previous run and the levels that stood after it are read once, as the run reads them.
    """

    def __init__(self, session: Session, *, run: Run) -> None:
        self.session = session
        self.run = run
        self.previous_run, self.previous = previous_levels(session, before=run)
        self.counted = DowngradeCounts()

    def ranges(
        self, *, as_of: dt.date, store: EvidenceStore, policies: RunPolicies, range_persons: int
    ) -> Iterator[GradedRange]:
        """Yield each range's snapshot and grades, counting its downgrades for the guard.

        The kept roll is read, not replaced: what a run keeps is the driver's to write.
        """
        scoring = policies.scoring
        for snapshot in snapshots_by_range(
            self.session, as_of=as_of, store=store, scoring=scoring, health=policies.health,
            range_persons=range_persons,
        ):  # fmt: skip
            roll = snapshot.roll
            ids = roll["person_id"].to_numpy(dtype=np.int64)
            lo, hi = (int(ids.min()), int(ids.max()) + 1) if ids.size else (0, 0)
            standing = rows_between(self.previous, lo, hi)
            grades = grade(
                features=snapshot.features,
                benefit_type=benefit_type_codes(roll["benefit_type"]),
                death_day=snapshot.death_day, degraded=snapshot.degraded,
                previous_level=previous_level_codes(roll, standing), policy=scoring,
            )  # fmt: skip
            levels = roll[["person_id"]].assign(
                level=np.asarray(LEVELS, dtype=object)[grades.level]
            )
            counts = count_downgrades(levels, standing)
            self.counted = self.counted + counts
            yield GradedRange(snapshot=snapshot, grades=grades, downgrades=counts)

    def verdict(self, policies: RunPolicies) -> GuardVerdict:
        """Decide the guard on the counts of every range yielded so far (all of them, after)."""
        return decide_downgrades(
            self.counted, run=self.run, previous_run=self.previous_run,
            policy=policies.certification.guard,
        )  # fmt: skip
