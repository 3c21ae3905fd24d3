"""Distinct values of large integer arrays, by sorting.

NumPy 2.3 and later answer a plain `np.unique` (and so `union1d`, `setdiff1d`) with a hash
table. For a million distinct person ids that takes 0.64 s on the reference machine, and
sorting takes 0.055 s. On two ascending runs, such as a kept id array plus tonight's ids,
the stable sort merges them in 2.5 ms against `union1d`'s 0.46 s.

`np.unique` is asked with `return_index` or `return_inverse` where a caller needs those; it
then sorts. These functions are for integers and text: unlike `np.unique`, they do not
collapse NaNs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["union_sorted", "unique_sorted"]


def unique_sorted(values: npt.ArrayLike) -> npt.NDArray[Any]:
    """Return the distinct values in ascending order, flattened: `np.unique` by a sort."""
    ordered = np.sort(np.asarray(values).ravel(), kind="stable")
    if ordered.size < 2:
        return ordered
    first = np.empty(ordered.size, dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]


def union_sorted(*arrays: npt.ArrayLike) -> npt.NDArray[Any]:
    """Return the distinct values of all `arrays` in ascending order: `np.union1d` by a sort."""
    return unique_sorted(np.concatenate([np.asarray(a).ravel() for a in arrays]))
