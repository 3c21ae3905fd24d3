"""Evidence features per person and source, computed from trace arrays in one vectorised pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from liveness.scoring.policy import ScoringPolicy

__all__ = ["EvidenceFeatures", "compute_features", "post_death_traces"]


@dataclass(frozen=True, eq=False)
class EvidenceFeatures:
    """Hold per-person evidence arrays as of one day.

    ``window_weight[w]`` is the weighted count for ``policy.recent_windows[w]``;
    ``recent_weight`` is the default window's row. ``recent_sources`` counts sources agreeing
    under the default rules; ``grade`` recomputes it for benefit types with overrides.
    """

    as_of_day: int
    last_day: npt.NDArray[np.int32]
    recent_weight: npt.NDArray[np.float32]
    long_weight: npt.NDArray[np.float32]
    window_weight: npt.NDArray[np.float32]
    face_pass_day: npt.NDArray[np.int32]
    recent_sources: npt.NDArray[np.int8]

    @property
    def n_persons(self) -> int:
        """Return the number of persons."""
        return int(self.last_day.shape[0])


def compute_features(
    *,
    person_idx: npt.NDArray[np.int32],
    source_code: npt.NDArray[np.int8],
    kind_code: npt.NDArray[np.int16],
    day: npt.NDArray[np.int32],
    n_persons: int,
    as_of_day: int,
    policy: ScoringPolicy,
) -> EvidenceFeatures:
    """Compute last evidence day and windowed weights per person and source."""
    n = len(person_idx)
    if not (len(source_code) == len(kind_code) == len(day) == n):
        raise ValueError("person_idx, source_code, kind_code and day must have equal lengths")
    n_sources = len(policy.sources)
    if n:
        if int(kind_code.min()) < 0 or int(kind_code.max()) >= len(policy.kinds):
            raise ValueError("kind_code out of range of policy.kinds")
        if int(person_idx.min()) < 0 or int(person_idx.max()) >= n_persons:
            raise ValueError("person_idx out of range of n_persons")
        # A kind belongs to one source: a mismatch means the caller's mapping is wrong.
        if not np.array_equal(policy.source_of_kind[kind_code], source_code):
            raise ValueError("source_code disagrees with the source of kind_code")

    weight = policy.weight_of_kind[kind_code]
    # Traces after as_of should have been filtered out; ignoring them keeps reruns exact.
    evidence = (weight > 0) & (day <= as_of_day)
    size = n_persons * n_sources
    # intp, which np.bincount wants anyway; a province-sized roll overflows int32 cells too.
    cell = person_idx.astype(np.intp) * n_sources + source_code

    # np.maximum.at is the fastest scatter-max here (about 70 ms per 10M traces with NumPy 2.x,
    # against 0.5-1.7 s for sort-based variants and 2 s for pandas groupby).
    last = np.full(size, -1, dtype=np.int32)
    np.maximum.at(last, cell, np.where(evidence, day, -1).astype(np.int32))

    def windowed(days: int) -> npt.NDArray[np.float32]:
        inside = evidence & (day > as_of_day - days)
        sums = np.bincount(cell[inside], weights=weight[inside], minlength=size)
        return sums.astype(np.float32).reshape(n_persons, n_sources)

    window_weight = np.stack([windowed(w) for w in policy.recent_windows])
    long_weight = windowed(policy.long)

    settles = evidence & policy.settles_of_kind[kind_code]
    face_pass = np.full(n_persons, -1, dtype=np.int32)
    np.maximum.at(face_pass, person_idx[settles], day[settles].astype(np.int32))

    recent_weight = window_weight[0]
    recent_sources = (recent_weight >= policy.default.min_weight).sum(axis=1).astype(np.int8)
    return EvidenceFeatures(
        as_of_day=int(as_of_day),
        last_day=last.reshape(n_persons, n_sources),
        recent_weight=recent_weight,
        long_weight=long_weight,
        window_weight=window_weight,
        face_pass_day=face_pass,
        recent_sources=recent_sources,
    )


def post_death_traces(
    *,
    person_idx: npt.NDArray[np.int32],
    kind_code: npt.NDArray[np.int16],
    day: npt.NDArray[np.int32],
    death_day: npt.NDArray[np.int32],
    policy: ScoringPolicy,
) -> npt.NDArray[np.int32]:
    """Count evidence-bearing traces dated after each person's death (0 where none known)."""
    died = death_day[person_idx]
    # The day of death itself is not suspicious: a morning bus ride, an emergency admission.
    after = (died >= 0) & (day > died) & (policy.weight_of_kind[kind_code] > 0)
    return np.bincount(person_idx[after], minlength=len(death_day)).astype(np.int32)
