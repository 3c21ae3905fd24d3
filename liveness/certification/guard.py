"""The mass-downgrade breaker: stop a run that would lower too many people at once."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.certification.assessments import standing_assessments
from liveness.certification.policy import GuardPolicy
from models import Run, RunStatus

# Lower is worse; deceased is counted on its own, not as a lowered level.
LEVEL_RANK = {"weak": 0, "medium": 1, "strong": 2}


@dataclass(frozen=True)
class GuardVerdict:
    """What the breaker saw against the previous run, and whether it trips."""

    previous_run_id: int | None
    compared: int
    downgraded: int
    newly_deceased: int
    downgrade_share: float
    new_deceased_share: float
    transitions: dict[str, int]
    tripped: bool
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        """Return the verdict for the run report."""
        return asdict(self)


def previous_levels(session: Session, *, before: Run) -> tuple[Run | None, pd.DataFrame]:
    """Return the latest published run before `before` and the assessments that stood then.

    The frame holds person_id and previous (the level), and what the run compares to store
    only the assessments that changed (`standing_assessments`).
    """
    previous = session.scalars(
        select(Run)
        .where(Run.status == RunStatus.PUBLISHED, Run.as_of <= before.as_of, Run.id != before.id)
        .order_by(Run.as_of.desc(), Run.id.desc())
        .limit(1)
    ).first()
    return previous, standing_assessments(session, run=previous)


@dataclass(frozen=True)
class DowngradeCounts:
    """What the breaker counts over some persons; over a partition's, they add up to everyone's.

    `transitions` counts each "previous->level" of the lowered and the newly deceased.
    """

    compared: int = 0
    downgraded: int = 0
    newly_deceased: int = 0
    transitions: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: DowngradeCounts) -> DowngradeCounts:
        """Return the counts over both sets of persons (which share nobody)."""
        transitions = dict(self.transitions)
        for key, value in other.transitions.items():
            transitions[key] = transitions.get(key, 0) + value
        return DowngradeCounts(
            compared=self.compared + other.compared,
            downgraded=self.downgraded + other.downgraded,
            newly_deceased=self.newly_deceased + other.newly_deceased,
            transitions=transitions,
        )


def count_downgrades(assessed: pd.DataFrame, previous: pd.DataFrame) -> DowngradeCounts:
    """Count, among the persons graded before, who would be lowered or newly deceased.

    `assessed` holds person_id and level, `previous` person_id and previous (the level that
    stood): what `previous_levels` returns, or its rows of some persons only.
    """
    both = assessed[["person_id", "level"]].merge(previous, on="person_id", how="inner")
    was_dead = both["previous"] == "deceased"
    now_dead = both["level"] == "deceased"
    lowered = _ranks(both["level"]) < _ranks(both["previous"])  # NaN (deceased) compares False
    newly_deceased = (now_dead & ~was_dead).to_numpy(dtype=bool)
    changed = both.loc[lowered | newly_deceased]
    # As text whatever the columns' types (an empty frame's may be numbers).
    transitions = (
        changed["previous"].astype(str) + "->" + changed["level"].astype(str)
    ).value_counts()
    return DowngradeCounts(
        compared=len(both), downgraded=int(lowered.sum()),
        newly_deceased=int(newly_deceased.sum()),
        transitions={str(key): int(value) for key, value in transitions.items()},
    )  # fmt: skip


def check_downgrades(
    session: Session,
    *,
    run: Run,
    assessed: pd.DataFrame,
    policy: GuardPolicy,
    previous: tuple[Run | None, pd.DataFrame] | None = None,
) -> GuardVerdict:
    """Compare the run's levels with the previous run's and decide whether the breaker trips.

    `previous` is what `previous_levels` returned for this run, when the caller has read it.
    """
    previous_run, previous_frame = (
        previous_levels(session, before=run) if previous is None else previous
    )
    counts = count_downgrades(assessed, previous_frame)
    return decide_downgrades(counts, run=run, previous_run=previous_run, policy=policy)


def decide_downgrades(
    counts: DowngradeCounts, *, run: Run, previous_run: Run | None, policy: GuardPolicy
) -> GuardVerdict:
    """Decide from the counts over everyone whether the breaker trips."""
    previous_id = None if previous_run is None else previous_run.id
    gap = 0 if previous_run is None else (run.as_of - previous_run.as_of).days
    # The longer since the previous run, the more drift is normal: the shares scale with it,
    # up to a ceiling, so that no gap switches the guard off.
    periods = max(1, math.ceil(gap / policy.share_period_days))
    max_down = min(policy.max_downgrade_share_ceiling, policy.max_downgrade_share * periods)
    max_dead = min(policy.max_new_deceased_share_ceiling, policy.max_new_deceased_share * periods)
    compared, lowered, newly_deceased = counts.compared, counts.downgraded, counts.newly_deceased
    down_share = lowered / compared if compared else 0.0
    dead_share = newly_deceased / compared if compared else 0.0
    reasons = []
    since = f"in {gap} days" if previous_run is not None else ""
    if lowered >= policy.min_persons and down_share > max_down:
        reasons.append(
            f"{lowered:,} of {compared:,} people ({down_share:.1%}) would be lowered "
            f"{since}, more than the policy allows ({max_down:.1%})"
        )
    if newly_deceased >= policy.min_persons and dead_share > max_dead:
        reasons.append(
            f"{newly_deceased:,} of {compared:,} people ({dead_share:.1%}) would be "
            f"newly graded deceased {since}, more than the policy allows ({max_dead:.1%})"
        )
    return GuardVerdict(
        previous_run_id=previous_id,
        compared=compared,
        downgraded=lowered,
        newly_deceased=newly_deceased,
        downgrade_share=round(down_share, 6),
        new_deceased_share=round(dead_share, 6),
        transitions={key: counts.transitions[key] for key in sorted(counts.transitions)},
        tripped=bool(reasons),
        reasons=reasons,
    )


def _ranks(levels: pd.Series) -> npt.NDArray[np.float64]:
    """Return each level's rank (NaN for deceased or none), a comparison per level, not a map.

    The column is compared as it is (the kept levels are Arrow text): made into a million
    Python strings first, it cost more than the comparisons.
    """
    ranks = np.full(len(levels), np.nan)
    for level, rank in LEVEL_RANK.items():
        ranks[(levels == level).to_numpy(dtype=bool, na_value=False)] = rank
    return ranks
