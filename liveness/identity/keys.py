"""Exact, vectorised lookups of string keys (card numbers, identity numbers) in a fixed set.

A hash table of Python strings costs a Python object per looked-up value and per key; this
index hashes Arrow strings with numpy instead, finds candidates by binary search in the sorted
hashes, and confirms every candidate by comparing the strings themselves, so a hash collision
can never link a row to the wrong key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Strings up to this many bytes are hashed from their padded bytes in numpy; longer ones (rare
# for keys) by pandas, one Python object each.
MAX_PADDED_BYTES = 64
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
ABSENT = -1


def as_strings(values: pa.Array | pa.ChunkedArray | pd.Series) -> pa.Array:
    """Return `values` as one Arrow large_string array, without copying when it already is."""
    if isinstance(values, pd.Series):
        values = (
            pa.array(values.array)
            if values.dtype != object
            else pa.array(values.to_numpy(), pa.string(), from_pandas=True)
        )
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not pa.types.is_large_string(values.type):
        values = values.cast(pa.large_string())
    return values


def _mix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Scramble 64-bit values (MurmurHash3's finaliser), in place."""
    values ^= values >> np.uint64(33)
    values *= np.uint64(0xFF51AFD7ED558CCD)
    values ^= values >> np.uint64(33)
    values *= np.uint64(0xC4CEB9FE1A85EC53)
    values ^= values >> np.uint64(33)
    return values


def string_hashes(values: pa.Array) -> npt.NDArray[np.uint64]:
    """Return a 64-bit hash of each string of a large_string array (nulls hash as "").

    Equal strings get equal hashes within one process and version; the hash is not stored
    anywhere, only used to find candidates that are then compared exactly.
    """
    count = len(values)
    if count == 0:
        return np.empty(0, dtype=np.uint64)
    filled = pc.fill_null(values, "")
    lengths = pc.binary_length(filled).to_numpy().astype(np.uint64)
    longest = int(lengths.max())
    width = max(8, -(-min(longest, MAX_PADDED_BYTES) // 8) * 8)
    long_rows = np.flatnonzero(lengths > width) if longest > width else None
    if long_rows is not None:
        filled = pc.if_else(pc.greater(pc.binary_length(filled), width), "", filled)
    # Padded to one width, the strings' bytes are one contiguous (rows x width) block.
    padded = pc.ascii_rpad(filled, width=width, padding=" ")
    offsets = np.frombuffer(padded.buffers()[1], dtype=np.int64, count=1, offset=8 * padded.offset)
    start = int(offsets[0])
    block = np.frombuffer(padded.buffers()[2], dtype=np.uint8, count=count * width, offset=start)
    words = block.reshape(count, width).view(np.uint64)
    hashes = lengths * _MULTIPLIER
    for column in range(width // 8):
        # Only a string's own words count, so that its hash does not depend on the batch's
        # longest string (the padding within its last word is always the same).
        mixed = _mix(hashes ^ words[:, column])
        hashes = mixed if column == 0 else np.where(lengths > 8 * column, mixed, hashes)
    if long_rows is not None:
        long_values = values.take(pa.array(long_rows)).to_pandas().to_numpy(dtype=object)
        hashes[long_rows] = pd.util.hash_array(long_values, categorize=False)
    return hashes


@dataclass(frozen=True, eq=False)
class KeyIndex:
    """A fixed set of distinct string keys, for vectorised exact lookups of their positions."""

    # The keys in the order of their hashes: looked up in that order too, the candidates are
    # read from memory front to back instead of at random.
    sorted_keys: pa.Array  # large_string, distinct, no nulls
    sorted_hashes: npt.NDArray[np.uint64]
    order: npt.NDArray[np.int64]  # original position of each sorted key

    @classmethod
    def build(cls, keys: pa.Array | pa.ChunkedArray | pd.Series) -> KeyIndex:
        """Index distinct, non-null `keys`."""
        strings = as_strings(keys)
        hashes = string_hashes(strings)
        order = np.argsort(hashes, kind="stable").astype(np.int64)
        return cls(
            sorted_keys=strings.take(pa.array(order)), sorted_hashes=hashes[order], order=order
        )

    def __len__(self) -> int:
        return len(self.sorted_keys)

    def positions(self, values: pa.Array | pa.ChunkedArray | pd.Series) -> npt.NDArray[np.int64]:
        """Return the position among the indexed keys of each value, or -1 (absent or null)."""
        strings = as_strings(values)
        found = np.full(len(strings), ABSENT, dtype=np.int64)
        size = self.sorted_hashes.size
        if size == 0 or len(strings) == 0:
            return found
        hashes = string_hashes(strings)
        valid = pc.is_valid(strings).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(valid)
        # Searched in hash order, the binary searches walk the sorted hashes front to back.
        rows = rows[np.argsort(hashes[rows])]
        slot = np.searchsorted(self.sorted_hashes, hashes[rows])
        # Keys sharing a hash sit side by side: try each in turn (almost never more than one),
        # and accept a candidate only when the strings are equal.
        while rows.size:
            same = slot < size
            same[same] = self.sorted_hashes[slot[same]] == hashes[rows[same]]
            if not same.any():
                break
            # Back in row order, so that the values are compared where they are.
            candidate = np.full(len(strings), -1, dtype=np.int64)
            candidate[rows[same]] = slot[same]
            todo = candidate >= 0
            rows, slot = np.flatnonzero(todo), candidate[todo]
            equal = pc.equal(
                self.sorted_keys.take(pa.array(slot)), strings.filter(pa.array(todo))
            ).to_numpy(zero_copy_only=False)
            found[rows[equal]] = self.order[slot[equal]]
            rows, slot = rows[~equal], slot[~equal] + 1
        return found
