"""Exact, vectorised lookups of string keys (card numbers, identity numbers) in a fixed set.

A hash table of Python strings costs a Python object per looked-up value and per key; this
index hashes Arrow strings with numpy instead, finds candidates by binary search in the sorted
hashes, and confirms every candidate by comparing the strings themselves (their lengths and
padded bytes as 64-bit words; strings past the padded width as strings), so a hash collision
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


@dataclass(frozen=True)
class _Padded:
    """Strings as fixed-width blocks of 64-bit words, for hashing and exact comparison."""

    words: npt.NDArray[np.uint64]  # (rows x width / 8); long strings and nulls as ""
    lengths: npt.NDArray[np.uint64]  # bytes; nulls as 0
    long_rows: npt.NDArray[np.intp]  # rows longer than MAX_PADDED_BYTES


def _padded(values: pa.Array) -> _Padded:
    """Pad the strings of a large_string array to one width of at most MAX_PADDED_BYTES."""
    count = len(values)
    filled = pc.fill_null(values, "")
    lengths = pc.binary_length(filled).to_numpy().astype(np.uint64)
    longest = int(lengths.max()) if count else 0
    width = max(8, -(-min(longest, MAX_PADDED_BYTES) // 8) * 8)
    long_rows = np.flatnonzero(lengths > width) if longest > width else np.empty(0, np.intp)
    if long_rows.size:
        filled = pc.if_else(pc.greater(pc.binary_length(filled), width), "", filled)
    # Padded to one width (in bytes, whatever the encoding), the strings' bytes are one
    # contiguous (rows x width) block.
    padded = pc.ascii_rpad(filled, width=width, padding=" ")
    offsets = np.frombuffer(
        padded.buffers()[1], dtype=np.int64, count=count + 1, offset=8 * padded.offset
    )
    start = int(offsets[0])
    if int(offsets[-1]) - start != count * width:
        # The words are compared as the strings themselves: a ragged block must never pass.
        raise RuntimeError("padded strings are not of one width")
    block = np.frombuffer(padded.buffers()[2], dtype=np.uint8, count=count * width, offset=start)
    words = block.reshape(count, width).view(np.uint64)
    return _Padded(words=words, lengths=lengths, long_rows=long_rows)


def _hash_padded(padded: _Padded, values: pa.Array) -> npt.NDArray[np.uint64]:
    """Return a 64-bit hash of each of the padded strings of `values`."""
    lengths, words = padded.lengths, padded.words
    hashes = lengths * _MULTIPLIER
    for column in range(words.shape[1]):
        # Only a string's own words count, so that its hash does not depend on the batch's
        # longest string (the padding within its last word is always the same).
        mixed = _mix(hashes ^ words[:, column])
        hashes = mixed if column == 0 else np.where(lengths > 8 * column, mixed, hashes)
    if padded.long_rows.size:
        long_values = values.take(pa.array(padded.long_rows)).to_pandas().to_numpy(dtype=object)
        hashes[padded.long_rows] = pd.util.hash_array(long_values, categorize=False)
    return hashes


def string_hashes(values: pa.Array) -> npt.NDArray[np.uint64]:
    """Return a 64-bit hash of each string of a large_string array (nulls hash as "").

    Equal strings get equal hashes within one process and version; the hash is not stored
    anywhere, only used to find candidates that are then compared exactly.
    """
    if len(values) == 0:
        return np.empty(0, dtype=np.uint64)
    return _hash_padded(_padded(values), values)


@dataclass(frozen=True, eq=False)
class KeyIndex:
    """A fixed set of distinct string keys, for vectorised exact lookups of their positions."""

    # The keys in the order of their hashes: looked up in that order too, the candidates are
    # read from memory front to back instead of at random.
    sorted_keys: pa.Array  # large_string, distinct, no nulls
    sorted_hashes: npt.NDArray[np.uint64]
    order: npt.NDArray[np.int64]  # original position of each sorted key
    # The sorted keys' padded words and lengths: equal lengths and words are equal strings,
    # compared in numpy instead of as Arrow strings (the long keys by string).
    sorted_words: npt.NDArray[np.uint64]
    sorted_lengths: npt.NDArray[np.uint64]

    @classmethod
    def build(cls, keys: pa.Array | pa.ChunkedArray | pd.Series) -> KeyIndex:
        """Index distinct, non-null `keys`."""
        strings = as_strings(keys)
        if len(strings) == 0:
            empty = np.empty(0, dtype=np.uint64)
            return cls(
                sorted_keys=strings, sorted_hashes=empty, order=np.empty(0, dtype=np.int64),
                sorted_words=np.empty((0, 1), dtype=np.uint64), sorted_lengths=empty,
            )  # fmt: skip
        padded = _padded(strings)
        hashes = _hash_padded(padded, strings)
        order = np.argsort(hashes, kind="stable").astype(np.int64)
        return cls(
            sorted_keys=strings.take(pa.array(order)), sorted_hashes=hashes[order], order=order,
            sorted_words=padded.words[order], sorted_lengths=padded.lengths[order],
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.sorted_keys)

    def positions(self, values: pa.Array | pa.ChunkedArray | pd.Series) -> npt.NDArray[np.int64]:
        """Return the position among the indexed keys of each value, or -1 (absent or null)."""
        strings = as_strings(values)
        found = np.full(len(strings), ABSENT, dtype=np.int64)
        size = self.sorted_hashes.size
        if size == 0 or len(strings) == 0:
            return found
        padded = _padded(strings)
        hashes = _hash_padded(padded, strings)
        # Searched in hash order, the binary searches walk the sorted hashes front to back.
        if strings.null_count:
            rows = np.flatnonzero(pc.is_valid(strings).to_numpy(zero_copy_only=False))
            rows = rows[np.argsort(hashes[rows])]
        else:
            rows = np.argsort(hashes)
        wanted = hashes[rows]
        slot = np.searchsorted(self.sorted_hashes, wanted)
        # Both sides are padded to widths that hold every string no longer than
        # MAX_PADDED_BYTES, with the same padding: of two such strings of equal length, the
        # words they share decide, and those beyond the narrower width are padding.
        shared = min(padded.words.shape[1], self.sorted_words.shape[1])
        # Keys sharing a hash sit side by side: try each in turn (almost never more than one),
        # and accept a candidate only when the strings are equal.
        while rows.size:
            at = np.minimum(slot, size - 1)
            same = (self.sorted_hashes[at] == wanted) & (slot < size)
            if not same.all():
                rows, at, wanted = rows[same], at[same], wanted[same]
            if not rows.size:
                break
            lengths = padded.lengths[rows]
            equal = lengths == self.sorted_lengths[at]
            for column in range(shared):
                # Column by column: numpy gathers one column far faster than a 2-D slice.
                equal &= padded.words[rows, column] == self.sorted_words[at, column]
            # Strings past the padded width were padded as "": compare those as strings.
            long = np.flatnonzero(equal & (lengths > MAX_PADDED_BYTES))
            if long.size:
                equal[long] = pc.equal(
                    self.sorted_keys.take(pa.array(at[long])),
                    strings.take(pa.array(rows[long])),
                ).to_numpy(zero_copy_only=False)
            found[rows[equal]] = self.order[at[equal]]
            differ = ~equal
            rows, slot, wanted = rows[differ], at[differ] + 1, wanted[differ]
        return found
