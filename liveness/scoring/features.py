"""Evidence features per person and source, computed from trace arrays in one vectorised pass."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from liveness.scoring.policy import ScoringPolicy

__all__ = [
    "EvidenceFeatures", "FeatureAccumulator", "PartSummary", "agreeing_groups",
    "compute_features", "group_columns", "join_features", "post_death_traces",
]  # fmt: skip


def agreeing_groups(agree: npt.NDArray[np.bool_], policy: ScoringPolicy) -> npt.NDArray[np.int16]:
    """Count, per person, the independence groups with an agreeing source.

    ``agree`` is (persons, sources); two agreeing sources of one group (the same acts,
    recorded twice) count once.
    """
    if len(policy.groups) == agree.shape[1]:
        return agree.sum(axis=1, dtype=np.int16)  # every source a group of its own
    count = np.zeros(agree.shape[0], dtype=np.int16)
    for any_agrees in group_columns(agree, policy, np.logical_or):
        count += any_agrees
    return count


def group_columns(
    values: npt.NDArray[Any], policy: ScoringPolicy, combine: np.ufunc
) -> Iterator[npt.NDArray[Any]]:
    """Yield, independence group by group in order, `combine` of its sources' columns.

    ``values`` is (persons, sources). One pass per group over whole columns: a handful of
    groups, never a loop over persons, nor a reduction along each person's short row (several
    times slower).
    """
    for code in range(len(policy.groups)):
        members = np.flatnonzero(policy.group_of_source == code)
        combined = values[:, members[0]]
        for member in members[1:]:
            combined = combine(combined, values[:, member])
        yield combined


@dataclass(frozen=True, eq=False)
class EvidenceFeatures:
    """Hold per-person evidence arrays as of one day.

    ``window_weight[w]`` is the weighted count for ``policy.recent_windows[w]``;
    ``recent_weight`` is the default window's row. ``recent_sources`` counts independent
    sources (groups) agreeing under the default rules; ``grade`` recomputes it for benefit
    types with overrides.
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

    def take(self, rows: npt.NDArray[np.integer[Any]]) -> EvidenceFeatures:
        """Return the features of some persons only, in the order of `rows`."""
        picked: slice | npt.NDArray[np.integer[Any]] = rows
        first = int(rows[0]) if rows.size else 0
        if rows.size and np.array_equal(rows, np.arange(first, first + rows.size)):
            # Consecutive rows (a roll of consecutive ids): views, not a gather.
            picked = slice(first, first + rows.size)
        return EvidenceFeatures(
            as_of_day=self.as_of_day,
            last_day=self.last_day[picked],
            recent_weight=self.recent_weight[picked],
            long_weight=self.long_weight[picked],
            window_weight=self.window_weight[:, picked],
            face_pass_day=self.face_pass_day[picked],
            recent_sources=self.recent_sources[picked],
        )


@dataclass(frozen=True, eq=False)
class PartSummary:
    """What the features need of one store part under one policy, per person index.

    It stands for the part's traces as of any day on which all of them fall in one age
    bucket: they then add their summed weight to that bucket, whatever their own days.
    """

    weight: npt.NDArray[np.float64]
    last_day: npt.NDArray[np.int32]
    settle_day: npt.NDArray[np.int32] | None
    traces: int

    @property
    def n_persons(self) -> int:
        """Return the number of persons the summary covers."""
        return int(self.weight.shape[0])


def _local(person_idx: npt.NDArray[np.int32]) -> tuple[int, npt.NDArray[np.int32], int]:
    """Return a batch's lowest person index, its persons' indexes from there, and their span."""
    if not person_idx.size:
        return 0, person_idx, 0
    lo = int(person_idx.min())
    local = person_idx - np.int32(lo) if lo else person_idx
    return lo, local, int(local.max()) + 1


# Persons per block when the accumulated sums become the features (`FeatureAccumulator.result`).
RESULT_BLOCK = 1 << 15


class FeatureAccumulator:
    """Accumulate evidence features batch by batch, so that no caller holds every trace at once.

    Weighted counts are kept per bucket of trace age between consecutive window edges and
    summed into nested windows at the end: one scatter per batch serves every window. A trace
    whose person index is ``n_persons`` (nobody on the roll) or whose kind code is -1 (unknown)
    lands in a spare row with no weight, which costs less than filtering it out.
    """

    def __init__(self, *, n_persons: int, as_of_day: int, policy: ScoringPolicy) -> None:
        self.n_persons = n_persons
        self.as_of_day = int(as_of_day)
        self.policy = policy
        self.windows = self.windows_of(policy)
        # Bucket b holds ages inside windows[b] but outside windows[b - 1]; the last bucket
        # holds evidence older than every window (it counts for the last day only).
        self.buckets = len(self.windows) + 1
        ages = np.arange(self.windows[-1] + 1)
        self._bucket_of_age = np.searchsorted(np.asarray(self.windows), ages, side="right")
        self._bucket_of_age = self._bucket_of_age.astype(np.intp)
        # float64 weights: np.bincount converts float32 ones at five times the cost.
        self._weight = np.append(policy.weight_of_kind, 0).astype(np.float64)
        self._settles = np.append(policy.settles_of_kind, False)
        n_sources = len(policy.sources)
        rows = n_persons + 1
        # A source's row of last days is filled (-1: none) when it first gets evidence
        # (`_delivering`): a city whose sources do not all deliver never touches the others'
        # pages, and `result` reads only the span of sources that delivered.
        self._last = np.empty((n_sources, rows), dtype=np.int32)
        self._delivered = np.zeros(n_sources, dtype=np.bool_)
        # Bucket-major: a batch whose days all fall in one bucket adds one row of persons.
        self._sums = np.zeros((n_sources, self.buckets, rows), dtype=np.float64)
        self._face = np.full(rows, -1, dtype=np.int32)
        # The result's arrays, allocated and touched ahead by `prepare_result` (or by `result`).
        self._result_lock = threading.Lock()
        self._result_arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._result_taken = False

    @staticmethod
    def windows_of(policy: ScoringPolicy) -> tuple[int, ...]:
        """Return the policy's window lengths in days, ascending: the age buckets' edges."""
        return tuple(sorted({*policy.recent_windows, policy.long}))

    def prepare_result(self) -> None:
        """Allocate the result's arrays and touch their pages, from a thread that would wait.

        Memory touched for the first time is faulted in and zeroed by the kernel (on a virtual
        machine that hands freed memory back to its host, the costliest part of `result` by
        far: bench/README.md). Done by the thread that waits for the accumulator (the run's
        session thread, once it has read the roll) while the worker still scatters, it is off
        the critical path; `result` allocates them itself if this came too late or never.
        """
        with self._result_lock:
            if self._result_taken or self._result_arrays is not None:
                return
            self._result_arrays = self._new_result_arrays()

    def _new_result_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return zero weights and no last day (-1) for everyone, their pages touched."""
        shape = (self.n_persons, len(self.policy.sources))
        window_weight = np.zeros((len(self.policy.recent_windows), *shape), dtype=np.float32)
        long_weight = np.zeros(shape, dtype=np.float32)
        for array in (window_weight, long_weight):
            # calloc'd pages are mapped lazily: writing them faults them in now.
            array.reshape(-1)[:: max(1, 4096 // array.itemsize)] = 0
        # What a source that delivered nothing shows; `result` overwrites the others.
        last_day = np.full(shape, -1, dtype=np.int32)
        return window_weight, long_weight, last_day

    def _delivering(self, source: int) -> None:
        """Mark a source as having evidence, its last days starting at none (-1)."""
        if not self._delivered[source]:
            self._last[source].fill(-1)
            self._delivered[source] = True

    def _bucket_of_day(self, day: int) -> int:
        """Return the age bucket of one day (a future day counts as the oldest bucket)."""
        age = self.as_of_day - day
        if age < 0 or age >= self.windows[-1]:
            return self.buckets - 1
        return int(self._bucket_of_age[age])

    def add(
        self,
        *,
        person_idx: npt.NDArray[np.int32],
        source: int,
        kind_code: npt.NDArray[np.int16],
        day: npt.NDArray[np.int32],
    ) -> None:
        """Add one source's traces; persons in [0, n_persons], kind codes in [-1, kinds)."""
        if day.size == 0:
            return
        self._delivering(source)
        # One conversion of the codes serves every lookup (NumPy converts small ints each time).
        kind = kind_code.astype(np.intp)
        weight = self._weight[kind]
        # Only the batch's range of persons is scattered into: a part clustered by person
        # touches a slice of the roll per row group, not every person's row each time.
        lo, local, span = _local(person_idx)
        first, last = int(day.min()), int(day.max())
        bucket = self._bucket_of_day(first)
        if last <= self.as_of_day and bucket == self._bucket_of_day(last):
            # Every day of the batch is in one age bucket (a month's part usually is): the
            # weights scatter by person alone, with no per-trace age.
            self._sums[source, bucket, lo : lo + span] += np.bincount(
                local, weights=weight, minlength=span
            )
        else:
            # An age past the longest window (or a future day, negative age) is the last bucket.
            age = (np.int32(self.as_of_day) - day).view(np.uint32)
            cell = self._bucket_of_age[np.minimum(age, self.windows[-1])] * span
            cell += local
            self._sums[source, :, lo : lo + span] += np.bincount(
                cell, weights=weight, minlength=span * self.buckets
            ).reshape(self.buckets, span)
        # Traces after as_of should have been filtered out; ignoring them keeps reruns exact.
        evidence = weight > 0
        if last > self.as_of_day:
            evidence &= day <= self.as_of_day
        # np.maximum.at is the fastest scatter-max here: a few ns per trace when the part is
        # clustered by person, about 14 ns in random order, against far more for sort-based
        # variants or pandas groupby.
        np.maximum.at(
            self._last[source, lo : lo + span], local, np.where(evidence, day, np.int32(-1))
        )
        if self._settles[:-1][self.policy.source_of_kind == source].any():
            settles = self._settles[kind] & evidence
            np.maximum.at(self._face[lo : lo + span], local[settles], day[settles])

    def part_bucket(self, min_day: int, max_day: int) -> int | None:
        """Return the age bucket holding every day in [min_day, max_day], or None if several do."""
        if max_day > self.as_of_day:
            return None
        bucket = self._bucket_of_day(min_day)
        return bucket if bucket == self._bucket_of_day(max_day) else None

    def empty_summary(self, source: int) -> PartSummary:
        """Return the summary of no traces of `source`, to add a part's batches to."""
        rows = self.n_persons + 1
        settles = bool(self._settles[:-1][self.policy.source_of_kind == source].any())
        return PartSummary(
            weight=np.zeros(rows, dtype=np.float64),
            last_day=np.full(rows, -1, dtype=np.int32),
            settle_day=np.full(rows, -1, dtype=np.int32) if settles else None,
            traces=0,
        )

    def summarise(
        self,
        summary: PartSummary,
        *,
        person_idx: npt.NDArray[np.int32],
        kind_code: npt.NDArray[np.int16],
        day: npt.NDArray[np.int32],
    ) -> PartSummary:
        """Add one batch of a part's traces, all dated on or before the as-of day, to its summary.

        `summary` (from `empty_summary`, or returned by this method) is added to in place, in
        the batch's range of persons only; the summary returned counts the batch's traces too.
        Call `finished` on it after the part's last batch.
        """
        kind = kind_code.astype(np.intp)
        weight = self._weight[kind]
        lo, local, span = _local(person_idx)
        summary.weight[lo : lo + span] += np.bincount(local, weights=weight, minlength=span)
        evidence_day = np.where(weight > 0, day, np.int32(-1))
        np.maximum.at(summary.last_day[lo : lo + span], local, evidence_day)
        if summary.settle_day is not None:
            settles = self._settles[kind] & (weight > 0)
            np.maximum.at(summary.settle_day[lo : lo + span], local[settles], day[settles])
        n = self.n_persons
        traces = int(np.count_nonzero((person_idx < n) & (kind_code >= 0)))
        return dataclasses.replace(summary, traces=summary.traces + traces)

    def finished(self, summary: PartSummary) -> PartSummary:
        """Return a part's summary without the spare row of traces of nobody on the roll."""
        n = self.n_persons
        settle = None if summary.settle_day is None else summary.settle_day[:n]
        return PartSummary(
            weight=summary.weight[:n], last_day=summary.last_day[:n], settle_day=settle,
            traces=summary.traces,
        )  # fmt: skip

    def add_summary(self, *, source: int, bucket: int, summary: PartSummary) -> None:
        """Add a part's summary to one age bucket; it may cover fewer persons than this."""
        self._delivering(source)
        m = min(summary.n_persons, self.n_persons)
        self._sums[source, bucket, :m] += summary.weight[:m]
        last = self._last[source, :m]
        np.maximum(last, summary.last_day[:m], out=last)
        if summary.settle_day is not None:
            face = self._face[:m]
            np.maximum(face, summary.settle_day[:m], out=face)

    def add_totals(
        self,
        *,
        person_idx: npt.NDArray[np.int32],
        source: npt.NDArray[np.int8],
        bucket_weight: npt.NDArray[np.float64],
        last_day: npt.NDArray[np.int32],
        settle_day: npt.NDArray[np.int32],
    ) -> None:
        """Add totals per (person, source) pair computed elsewhere (another engine's).

        Each pair appears once; `bucket_weight` is (pairs, buckets), each row's weights summed
        in float64 per age bucket; days are -1 where the pair has none.
        """
        if person_idx.size == 0:
            return
        sources = source.astype(np.intp)
        for code in np.unique(sources):
            self._delivering(int(code))
        self._sums[sources, :, person_idx] += bucket_weight
        np.maximum.at(self._last, (sources, person_idx), last_day)
        np.maximum.at(self._face, person_idx, settle_day)

    def result(self) -> EvidenceFeatures:
        """Return the features of everything added so far."""
        policy = self.policy
        n = self.n_persons
        recent = policy.recent_windows
        # Window b is the sum of buckets 0..b: running sums over rows of persons (a cumsum
        # along the bucket axis strides through memory, several times slower), each window
        # written once in the persons-by-sources layout grading reads. A block of persons at
        # a time keeps the transposing writes in cache (0.67 s to 0.45 s at a million).
        with self._result_lock:
            self._result_taken = True
            prepared, self._result_arrays = self._result_arrays, None
        window_weight, long_weight, last_day = (
            prepared if prepared is not None else self._new_result_arrays()
        )
        # Only the span of sources that delivered is read and written: the others' sums are
        # zero and their last days none, as the result's arrays start.
        delivered = np.flatnonzero(self._delivered)
        first, stop = (int(delivered[0]), int(delivered[-1]) + 1) if delivered.size else (0, 0)
        for code in range(first, stop):
            self._delivering(code)
        for lo in range(0, n if stop else 0, RESULT_BLOCK):
            hi = min(lo + RESULT_BLOCK, n)
            last_day[lo:hi, first:stop] = self._last[first:stop, lo:hi].T
            running = self._sums[first:stop, 0, lo:hi].copy()
            for bucket, days in enumerate(self.windows):
                if bucket:
                    running += self._sums[first:stop, bucket, lo:hi]
                if days in recent:
                    window_weight[recent.index(days), lo:hi, first:stop] = running.T
                if days == policy.long:
                    long_weight[lo:hi, first:stop] = running.T
        recent_weight = window_weight[0]
        agree = recent_weight >= policy.default.min_weight
        recent_sources = agreeing_groups(agree, policy).astype(np.int8)
        return EvidenceFeatures(
            as_of_day=self.as_of_day,
            last_day=last_day,
            recent_weight=recent_weight,
            long_weight=long_weight,
            window_weight=window_weight,
            face_pass_day=self._face[:n].copy(),
            recent_sources=recent_sources,
        )


# The person axis of each array of the features that `join_features` joins.
_PERSON_AXIS = {
    "last_day": 0, "long_weight": 0, "window_weight": 1, "face_pass_day": 0, "recent_sources": 0,
}  # fmt: skip


def join_features(blocks: Iterable[EvidenceFeatures], *, n_persons: int) -> EvidenceFeatures:
    """Join the features of consecutive blocks of persons, in order, into those of all of them.

    Each block is copied into the joined arrays as it comes, so a caller that produces the
    blocks one at a time (a generator) holds one block beside the result, never all of them.
    A single block covering everyone is returned as it is.
    """
    whole: EvidenceFeatures | None = None
    joined: dict[str, np.ndarray] = {}
    as_of_day = 0
    at = 0
    for block in blocks:
        m = block.n_persons
        if at + m > n_persons:
            raise ValueError(f"the blocks hold more than {n_persons:,} persons")
        as_of_day = block.as_of_day
        if m == n_persons:
            whole = block  # one block holds everyone: it is the result
        if m in (0, n_persons):
            at += m
            continue
        for name, axis in _PERSON_AXIS.items():
            values = getattr(block, name)
            if name not in joined:
                shape = (*values.shape[:axis], n_persons, *values.shape[axis + 1 :])
                joined[name] = np.empty(shape, dtype=values.dtype)
            joined[name][(slice(None),) * axis + (slice(at, at + m),)] = values
        at += m
    if at != n_persons:
        raise ValueError(f"the blocks hold {at:,} persons, not {n_persons:,}")
    if whole is not None:
        return whole
    if not joined:
        raise ValueError("no blocks of features to join")
    # The default window's weights are the first row of the windows', as `result` gives them.
    return EvidenceFeatures(as_of_day=as_of_day, recent_weight=joined["window_weight"][0], **joined)


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
    if n:
        if int(kind_code.min()) < 0 or int(kind_code.max()) >= len(policy.kinds):
            raise ValueError("kind_code out of range of policy.kinds")
        if int(person_idx.min()) < 0 or int(person_idx.max()) >= n_persons:
            raise ValueError("person_idx out of range of n_persons")
        # A kind belongs to one source: a mismatch means the caller's mapping is wrong.
        if not np.array_equal(policy.source_of_kind[kind_code], source_code):
            raise ValueError("source_code disagrees with the source of kind_code")
    accumulator = FeatureAccumulator(n_persons=n_persons, as_of_day=as_of_day, policy=policy)
    for source in np.unique(source_code):
        rows = source_code == source
        accumulator.add(
            person_idx=person_idx[rows], source=int(source), kind_code=kind_code[rows],
            day=day[rows],
        )  # fmt: skip
    return accumulator.result()


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
