"""`liveness.arrays` gives what NumPy's own set functions give, for integers and text."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from liveness.arrays import union_sorted, unique_sorted

INTEGERS = st.sampled_from([np.int8, np.int32, np.int64, np.uint64])
ARRAYS = INTEGERS.flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0))
)


@given(values=ARRAYS)
def test_unique_sorted_is_numpys_unique(values: np.ndarray) -> None:
    found = unique_sorted(values)
    assert found.dtype == values.dtype
    np.testing.assert_array_equal(found, np.unique(values))


# NumPy's fixed-width text (the oracle's) drops trailing NULs: codes never hold one.
@given(values=st.lists(st.text(st.characters(exclude_characters="\x00"), max_size=3), max_size=30))
def test_unique_sorted_takes_text(values: list[str]) -> None:
    np.testing.assert_array_equal(unique_sorted(np.array(values, dtype=object)), np.unique(values))


@given(
    first=hnp.arrays(np.int64, st.integers(0, 50), elements=st.integers(-5, 40)),
    second=hnp.arrays(np.int64, st.integers(0, 50), elements=st.integers(-5, 40)),
    sort_first=st.booleans(),
)
def test_union_sorted_is_numpys_union(
    first: np.ndarray, second: np.ndarray, sort_first: bool
) -> None:
    if sort_first:  # the usual case: a kept sorted id array and tonight's ids
        first = np.sort(first)
    np.testing.assert_array_equal(union_sorted(first, second), np.union1d(first, second))
