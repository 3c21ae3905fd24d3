"""The re-delivery check's sorted runs answer membership like a plain set."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.ingest.service import _seen, _SortedRuns

HASH = st.integers(min_value=0, max_value=2**64 - 1)
# Few distinct values as well, so that repeats within and across runs are common.
HASHES = st.lists(st.one_of(HASH, st.integers(min_value=0, max_value=5)), max_size=60)


def _array(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


@settings(max_examples=200, deadline=None)
@given(stored=HASHES, batches=st.lists(HASHES, max_size=12), probes=HASHES)
def test_runs_contain_what_was_added(
    stored: list[int], batches: list[list[int]], probes: list[int]
) -> None:
    runs = _SortedRuns(_array(stored))
    seen = set(stored)
    for batch in batches:
        runs.add(_array(batch))
        seen.update(batch)
        assert all(a.tolist() == sorted(a.tolist()) for a in runs.runs)
    values = [*probes, *seen]
    assert runs.contains(_array(values)).tolist() == [v in seen for v in values]


@settings(max_examples=200, deadline=None)
@given(stored=HASHES, batches=st.lists(HASHES, max_size=12))
def test_seen_marks_stored_records_and_repeats_within_the_batch(
    stored: list[int], batches: list[list[int]]
) -> None:
    runs = _SortedRuns(_array(stored))
    known = set(stored)
    for batch in batches:
        expected = []
        for value in batch:
            expected.append(value in known)
            known.add(value)
        assert _seen(runs, _array(batch)).tolist() == expected
    assert runs.contains(_array(sorted(known))).all()


def test_runs_answer_alike_after_merging_large_batches() -> None:
    rng = np.random.default_rng(5)
    runs = _SortedRuns(np.empty(0, dtype=np.uint64))
    added = rng.integers(0, 2**64, 300_000, dtype=np.uint64, endpoint=False)
    for batch in np.array_split(added, 7):
        runs.add(batch)
    others = rng.integers(0, 2**64, 100_000, dtype=np.uint64, endpoint=False)
    probes = np.concatenate([added[::3], others])
    assert runs.contains(probes).tolist() == np.isin(probes, added).tolist()
