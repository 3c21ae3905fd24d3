"""Exact, vectorised lookups of string keys (card numbers, identity numbers) in a fixed set.

A hash table of Python strings costs a Python object per looked-up value and per key; this
index hashes Arrow strings with numpy instead, finds candidates among the sorted hashes (through
a directory of where each range of hashes starts), and confirms every candidate by comparing
the strings themselves (their lengths and padded bytes as 64-bit words; strings past the padded
width as strings), so a hash collision can never link a row to the wrong key.

It also computes pandas' hash of strings (`pandas_string_hashes`), the record hash of the
evidence store, the same way: in numpy, without a Python object per string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def mix64(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Scramble 64-bit values (MurmurHash3's finaliser), in place; return them."""
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
    words = _fixed_width_words(filled, width=width, padding=" ")
    return _Padded(words=words, lengths=lengths, long_rows=long_rows)


def _fixed_width_words(strings: pa.Array, *, width: int, padding: str) -> npt.NDArray[np.uint64]:
    """Return the strings padded to `width` bytes (a multiple of 8) as rows of 64-bit words.

    Padded to one width (in bytes, whatever the encoding), the strings' bytes are one
    contiguous (rows x width) block, viewed without a copy.
    """
    count = len(strings)
    padded = pc.ascii_rpad(strings, width=width, padding=padding)
    offsets = np.frombuffer(
        padded.buffers()[1], dtype=np.int64, count=count + 1, offset=8 * padded.offset
    )
    start = int(offsets[0])
    if int(offsets[-1]) - start != count * width:
        # The words stand for the strings themselves: a ragged block must never pass.
        raise RuntimeError("padded strings are not of one width")
    block = np.frombuffer(padded.buffers()[2], dtype=np.uint8, count=count * width, offset=start)
    return block.reshape(count, width).view(np.uint64)


def _hash_padded(padded: _Padded, values: pa.Array) -> npt.NDArray[np.uint64]:
    """Return a 64-bit hash of each of the padded strings of `values`."""
    lengths, words = padded.lengths, padded.words
    hashes = lengths * _MULTIPLIER
    for column in range(words.shape[1]):
        # Only a string's own words count, so that its hash does not depend on the batch's
        # longest string (the padding within its last word is always the same).
        mixed = mix64(hashes ^ words[:, column])
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


# SipHash-2-4 with pandas' key ("0123456789123456"), then pandas' final mix: the values of
# `pandas.util.hash_array(strings, categorize=False)`, which stored parts hold.
_SIP_KEY = (int.from_bytes(b"01234567", "little"), int.from_bytes(b"89123456", "little"))
_SIP_INIT = tuple(
    np.uint64(constant ^ _SIP_KEY[k % 2])
    for k, constant in enumerate(
        (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)
    )
)
# Rows hashed at a time: the state of a slice stays within the processor's caches.
_SIP_ROWS = 1 << 16


def _rotate(values: npt.NDArray[np.uint64], bits: int, spare: npt.NDArray[np.uint64]) -> None:
    """Rotate 64-bit values left by `bits`, in place."""
    np.right_shift(values, np.uint64(64 - bits), out=spare)
    np.left_shift(values, np.uint64(bits), out=values)
    np.bitwise_or(values, spare, out=values)


def _sip_rounds(state: list[npt.NDArray[np.uint64]], rounds: int) -> None:
    """Apply SipHash's round function `rounds` times to the four state words, in place."""
    v0, v1, v2, v3 = state
    spare = np.empty_like(v0)
    for _ in range(rounds):
        v0 += v1
        _rotate(v1, 13, spare)
        v1 ^= v0
        _rotate(v0, 32, spare)
        v2 += v3
        _rotate(v3, 16, spare)
        v3 ^= v2
        v0 += v3
        _rotate(v3, 21, spare)
        v3 ^= v0
        v2 += v1
        _rotate(v1, 17, spare)
        v1 ^= v2
        _rotate(v2, 32, spare)


def _siphash(words: npt.NDArray[np.uint64], lengths: npt.NDArray[np.uint64]) -> np.ndarray:
    """Return pandas' hash of strings of `lengths` bytes, zero-padded as rows of `words`.

    Every row holds `words.shape[1] - 1` whole 8-byte blocks and a last, partial one.
    """
    state = [np.full(len(lengths), value) for value in _SIP_INIT]
    v0, v1, v2, v3 = state
    blocks = words.shape[1] - 1
    for column in range(blocks + 1):
        block = words[:, column]
        if column == blocks:
            # The last block carries the length in its top byte.
            block = block | (lengths << np.uint64(56))
        v3 ^= block
        _sip_rounds(state, 2)
        v0 ^= block
    v2 ^= np.uint64(0xFF)
    _sip_rounds(state, 4)
    hashes = v0 ^ v1 ^ v2 ^ v3
    # pandas' own mix of the 64-bit values (hash_array's last step)
    hashes ^= hashes >> np.uint64(30)
    hashes *= np.uint64(0xBF58476D1CE4E5B9)
    hashes ^= hashes >> np.uint64(27)
    hashes *= np.uint64(0x94D049BB133111EB)
    hashes ^= hashes >> np.uint64(31)
    return hashes


def pandas_string_hashes(values: pa.Array) -> npt.NDArray[np.uint64]:
    """Return `pandas.util.hash_array` of a string array without nulls, computed in numpy.

    Equal, value for value, to hashing the strings as Python objects with pandas, without
    making those objects: rows of up to MAX_PADDED_BYTES bytes are hashed side by side (in
    numpy, without the GIL), longer ones by pandas.
    """
    strings = as_strings(values)
    if strings.null_count:
        raise ValueError("pandas_string_hashes takes no nulls")
    count = len(strings)
    hashes = np.empty(count, dtype=np.uint64)
    if count == 0:
        return hashes
    lengths = pc.binary_length(strings).to_numpy().astype(np.uint64)
    long_rows = np.flatnonzero(lengths > MAX_PADDED_BYTES)
    if long_rows.size:
        long_values = strings.take(pa.array(long_rows)).to_numpy(zero_copy_only=False)
        hashes[long_rows] = pd.util.hash_array(long_values, categorize=False)
        strings = pc.if_else(pc.greater(lengths, MAX_PADDED_BYTES), "", strings)
    short = lengths <= MAX_PADDED_BYTES
    if not short.any():
        return hashes
    blocks = lengths.astype(np.int64) // 8
    width = 8 * (int(blocks[short].max()) + 1)
    words = _fixed_width_words(strings, width=width, padding="\x00")
    # Strings of as many whole blocks are hashed together (record ids mostly share a length).
    for whole in np.unique(blocks[short]).tolist():
        rows = np.flatnonzero(short & (blocks == whole))
        every = rows.size == count
        for first in range(0, rows.size, _SIP_ROWS):
            part = slice(first, first + _SIP_ROWS)
            picked = slice(first, first + _SIP_ROWS) if every else rows[part]
            hashes[picked] = _siphash(
                np.ascontiguousarray(words[picked, : whole + 1]), lengths[picked]
            )
    return hashes


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
    # Where each bucket of hashes (their top `bits` bits) starts among the sorted hashes, and
    # where the last one ends: one or two keys per bucket (4 bytes or less per key), so a
    # value's place is found by one lookup and a step or two, not by sorting the values and a
    # binary search.
    directory: npt.NDArray[np.signedinteger[Any]]
    bits: int

    @classmethod
    def build(cls, keys: pa.Array | pa.ChunkedArray | pd.Series) -> KeyIndex:
        """Index distinct, non-null `keys`."""
        strings = as_strings(keys)
        if len(strings) == 0:
            empty = np.empty(0, dtype=np.uint64)
            return cls(
                sorted_keys=strings, sorted_hashes=empty, order=np.empty(0, dtype=np.int64),
                sorted_words=np.empty((0, 1), dtype=np.uint64), sorted_lengths=empty,
                directory=np.zeros(3, dtype=np.int32), bits=1,
            )  # fmt: skip
        padded = _padded(strings)
        hashes = _hash_padded(padded, strings)
        order = np.argsort(hashes, kind="stable").astype(np.int64)
        sorted_hashes = hashes[order]
        bits = min(max(1, len(strings).bit_length() - 1), 32)
        starts = np.arange(1 << bits, dtype=np.uint64) << np.uint64(64 - bits)
        directory = np.append(np.searchsorted(sorted_hashes, starts), len(strings))
        return cls(
            sorted_keys=strings.take(pa.array(order)), sorted_hashes=sorted_hashes, order=order,
            sorted_words=padded.words[order], sorted_lengths=padded.lengths[order],
            directory=directory.astype(np.int32 if len(strings) < 2**31 else np.int64),
            bits=bits,
        )  # fmt: skip

    def _lower_bounds(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Return where each hash would be inserted among the sorted hashes (to its left)."""
        bucket = (hashes >> np.uint64(64 - self.bits)).astype(np.intp)
        slot = self.directory[bucket].astype(np.int64)
        end = self.directory[bucket + 1]
        # Earlier buckets hold only smaller hashes and later ones only larger: step through
        # the value's own bucket (rarely more than a key or two) past the smaller ones.
        pending = np.flatnonzero(slot < end)
        while pending.size:
            pending = pending[self.sorted_hashes[slot[pending]] < hashes[pending]]
            slot[pending] += 1
            pending = pending[slot[pending] < end[pending]]
        return slot

    def __len__(self) -> int:
        return len(self.sorted_keys)

    def positions(self, values: pa.Array | pa.ChunkedArray | pd.Series) -> npt.NDArray[np.int64]:
        """Return the position among the indexed keys of each value, or -1 (absent or null)."""
        rows, slots = self.matches(values)
        found = np.full(len(values), ABSENT, dtype=np.int64)
        found[rows] = self.order[slots]
        return found

    def matches(
        self, values: pa.Array | pa.ChunkedArray | pd.Series
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
        """Return the rows of `values` whose key is indexed, and that key's sorted position.

        The rows come grouped by hash, so that whatever is kept per key in sorted order (see
        `in_key_order`) is read a region at a time, like the index itself.
        """
        strings = as_strings(values)
        size = self.sorted_hashes.size
        if size == 0 or len(strings) == 0:
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64)
        padded = _padded(strings)
        hashes = _hash_padded(padded, strings)
        # Grouped by their top 16 bits (a radix sort, in linear time), the values are looked
        # up a region of the index at a time, mostly within the processor's caches.
        rows = np.argsort((hashes >> np.uint64(48)).astype(np.uint16), kind="stable")
        if strings.null_count:
            rows = rows[pc.is_valid(strings).to_numpy(zero_copy_only=False)[rows]]
        wanted = hashes[rows]
        slot = self._lower_bounds(wanted)
        # Both sides are padded to widths that hold every string no longer than
        # MAX_PADDED_BYTES, with the same padding: of two such strings of equal length, the
        # words they share decide, and those beyond the narrower width are padding.
        shared = min(padded.words.shape[1], self.sorted_words.shape[1])
        found_rows: list[npt.NDArray[np.intp]] = []
        found_slots: list[npt.NDArray[np.int64]] = []
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
            found_rows.append(rows[equal])
            found_slots.append(at[equal].astype(np.int64, copy=False))
            differ = ~equal
            rows, slot, wanted = rows[differ], at[differ] + 1, wanted[differ]
        if not found_rows:
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64)
        if len(found_rows) == 1:
            return found_rows[0], found_slots[0]
        return np.concatenate(found_rows), np.concatenate(found_slots)

    def in_key_order(self, values: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """Return per-key `values` (in the keys' original order) in the index's sorted order."""
        return values[self.order]
