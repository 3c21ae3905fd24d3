"""The re-delivery check's sorted runs answer membership like a plain set."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.ingest.service import _SortedRuns

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
