"""The sorted runs of the record index, its Bloom filter, and merging them as streams."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from liveness.evidence.records.contents import _MULTIPLIER

FENCE = 512
# What each array of a run holds.
_ROLES = {"keys": "<u8", "deliveries": "<i4", "versions": "<u8"}
# Fence segments read at a time by a lookup (16 MB of record hashes).
READ_SEGMENTS = 4096
BLOOM_BITS = 12
# A filter is sized for three times the records it starts with (at least a million), and
# rebuilt when full, the pending delivery's included: a filter grows geometrically.
BLOOM_ROOM = 3.0
BLOOM_MIN_WORDS = 1_000_000 * BLOOM_BITS // 64
# Rows of a streaming merge at a time.
MERGE_ROWS = 1 << 20


# Two bit probes of a word per 12 bits: bit (x mod 64) and bit (x div 64).
_TWELVE = np.arange(4096, dtype=np.uint64)
_TWO_BITS = (np.uint64(1) << (_TWELVE & np.uint64(63))) | (
    np.uint64(1) << (_TWELVE >> np.uint64(6))
)


class _Bloom:
    """A Bloom filter of record hashes, each record setting four bits of one 64-bit word."""

    def __init__(self, words: npt.NDArray[np.uint64]) -> None:
        # A private copy: the file is changed under the folder's lock only (see `persist`),
        # so that no two processes ever set bits of one word at once (a lost bit would be a
        # stored record taken for new).
        self.words = words

    @staticmethod
    def words_for(records: int) -> int:
        """Return the words of a filter with room for `records` and then some."""
        return max(BLOOM_MIN_WORDS, int(records * BLOOM_ROOM * BLOOM_BITS / 64) + 1)

    @property
    def capacity(self) -> int:
        """Return how many records the filter holds before it should be rebuilt."""
        return int(len(self.words) * 64 / BLOOM_BITS)

    def _slots(self, hashes: npt.NDArray[np.uint64]) -> tuple[np.ndarray, np.ndarray]:
        # The word from the hash's high half, by a multiply-shift (sorted hashes, sorted words);
        # the bits from a second mix, so that the two are independent: 12 bits of it give two
        # probes at once, through a table.
        # (Each value below 2**63: viewed as signed, it indexes without a copy.)
        word = ((hashes >> np.uint64(32)) * np.uint64(len(self.words))) >> np.uint64(32)
        mixed = hashes * _MULTIPLIER
        pattern = _TWO_BITS[(mixed >> np.uint64(52)).view(np.int64)]
        pattern |= _TWO_BITS[((mixed >> np.uint64(40)) & np.uint64(4095)).view(np.int64)]
        return word.view(np.int64), pattern

    def add_sorted(self, hashes: npt.NDArray[np.uint64]) -> None:
        """Add record hashes given in ascending order (their words are then ascending too)."""
        # A piece at a time: temporaries of a few MB stay in the caches.
        for start in range(0, hashes.size, MERGE_ROWS):
            word, pattern = self._slots(np.asarray(hashes[start : start + MERGE_ROWS]))
            starts = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
            self.words[word[starts]] |= np.bitwise_or.reduceat(pattern, starts)

    def persist(self, path: Path, batches: Iterable[npt.NDArray[np.uint64]]) -> None:
        """Set the bits of sorted hash batches in the filter's file too (hold the lock)."""
        words = _array(path, "<u8", mode="r+")
        if not isinstance(words, np.memmap) or words.shape != self.words.shape:
            raise RuntimeError(f"{path}: not the filter in memory")
        on_file = _Bloom(np.asarray(words))
        for hashes in batches:
            on_file.add_sorted(hashes)
        words.flush()

    def may_hold(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Return False where a hash is surely not in the filter (True: perhaps)."""
        word, pattern = self._slots(hashes)
        return (self.words[word] & pattern) == pattern


def _holds(keys: npt.NDArray[np.uint64], queries: np.ndarray) -> npt.NDArray[np.bool_]:
    """Return whether each sorted query is among the sorted `keys` (held in memory)."""
    if not keys.size:
        return np.zeros(queries.size, dtype=bool)
    at = np.minimum(np.searchsorted(keys, queries), keys.size - 1)
    return keys[at] == queries


@dataclass
class _Run:
    """A sorted run: record hashes with each one's delivery, and version hashes apart."""

    folder: Path
    name: str
    parts: frozenset[str]
    keys: npt.NDArray[np.uint64]  # mapped, read through segments (see _bounds); sorted
    deliveries: npt.NDArray[np.int32]  # aligned with the keys; -1: none known
    versions: npt.NDArray[np.uint64]  # sorted on their own
    key_fences: npt.NDArray[np.uint64]
    version_fences: npt.NDArray[np.uint64]
    data_at: dict[str, int] = field(default_factory=dict)  # where each array's data starts

    @property
    def rows(self) -> int:
        """Return the run's record count."""
        return int(self.keys.shape[0])

    def find(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Return whether each sorted hash is here."""
        if not self.rows:
            return np.zeros(hashes.size, dtype=bool)
        return self._bounds("keys", self.keys, self.key_fences, hashes)[1] == hashes

    def latest_delivery(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Return, per sorted hash, the latest delivery holding it here (-1: none).

        For conflicts, which are few: a record is here once per version, and the
        deliveries of its versions are read through a plain read each.
        """
        delivery = np.full(hashes.size, -1, dtype=np.int64)
        if not self.rows:
            return delivery
        low, first = self._bounds("keys", self.keys, self.key_fences, hashes)
        # Past the last version: the lower bound of the next hash (none follows 2**64 - 1).
        after = np.minimum(hashes, np.uint64(2**64 - 2)) + np.uint64(1)
        high = np.where(hashes == np.uint64(2**64 - 1), self.rows,
                        self._bounds("keys", self.keys, self.key_fences, after)[0])  # fmt: skip
        path = self.folder / f"{self.name}.deliveries.npy"
        offset = self.data_at["deliveries"]
        descriptor = os.open(path, os.O_RDONLY)
        try:
            for row in np.flatnonzero(first == hashes).tolist():
                versions = np.empty(int(high[row] - low[row]), dtype=np.int32)
                os.preadv(descriptor, [versions.view(np.uint8).data], offset + 4 * int(low[row]))
                delivery[row] = int(versions.max())
        finally:
            os.close(descriptor)
        return delivery

    def holds(self, versions: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Return whether each sorted version hash is here."""
        if not self.rows:
            return np.zeros(versions.size, dtype=bool)
        return self._bounds("versions", self.versions, self.version_fences, versions)[1] == versions

    def _bounds(
        self, array: str, values: np.ndarray, fences: np.ndarray, queries: np.ndarray
    ) -> tuple[npt.NDArray[np.int64], np.ndarray]:
        """Return where each sorted query would go in a sorted array, and the value there.

        Each query lies within one fence segment (512 values, 4 KB), read through a plain
        read, READ_SEGMENTS segments at a time: no page is mapped into the process (a fault
        would map its cached neighbours too, fault-around), and the memory used is bounded.
        The value past the end is 0 (it matches no hash that is there).
        """
        segment = np.maximum(np.searchsorted(fences, queries) - 1, 0)
        wanted, row = np.unique(segment, return_inverse=True)
        lengths = np.minimum(FENCE, values.size - wanted * FENCE)
        at = np.empty(queries.size, dtype=np.int64)
        here = np.empty(queries.size, dtype=values.dtype)
        following = np.append(fences[1:], np.uint64(0))
        path = self.folder / f"{self.name}.{array}.npy"
        descriptor = os.open(path, os.O_RDONLY)
        try:
            for first in range(0, wanted.size, READ_SEGMENTS):
                chunk = slice(first, first + READ_SEGMENTS)
                sizes = lengths[chunk]
                starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
                read = np.empty(int(sizes.sum()), dtype=values.dtype)
                for number, start, size in zip(wanted[chunk].tolist(), starts.tolist(),
                                               sizes.tolist(), strict=True):  # fmt: skip
                    target = read[start : start + size].view(np.uint8)
                    offset = self.data_at[array] + number * FENCE * values.dtype.itemsize
                    if os.preadv(descriptor, [target.data], offset) != target.size:
                        raise RuntimeError(f"{path}: shorter than its header says")
                # Queries are sorted, so those of these segments lie side by side.
                mine = np.flatnonzero((row >= first) & (row < first + READ_SEGMENTS))
                local = row[mine] - first
                # The segments read are in order, so side by side they are sorted too; a
                # query past its segment's values goes to the next segment's start, its fence.
                position = np.searchsorted(read, queries[mine])
                within = np.minimum(position - starts[local], sizes[local])
                at[mine] = wanted[row[mine]].astype(np.int64) * FENCE + within
                inside = within < sizes[local]
                value = read[np.minimum(position, read.size - 1)]
                here[mine] = np.where(inside, value, following[wanted[row[mine]]])
        finally:
            os.close(descriptor)
        return at, np.where(at < values.size, here, np.uint64(0))

    def blocks(self, array: str) -> Iterator[np.ndarray]:
        """Yield one of the run's arrays front to back, read through plain reads.

        A run read whole (merged, or into a new filter) is never paged into the process's
        memory through its map: the pages would stay in its resident set.
        """
        dtype = _ROLES[array]
        with (self.folder / f"{self.name}.{array}.npy").open("rb") as handle:
            _data_start(handle)
            left = self.rows
            while left:
                block = np.fromfile(handle, dtype=dtype, count=min(MERGE_ROWS, left))
                if not block.size:
                    raise RuntimeError(f"{handle.name}: shorter than its run")
                left -= block.size
                yield block


@dataclass
class _Pending:
    """The records of the delivery being loaded: per batch, its record and version hashes.

    Each batch's arrays are sorted and kept as they are: the filter, which holds them too,
    sends only the few rows it is unsure of to be looked up in them.
    """

    records: list[np.ndarray] = field(default_factory=list)
    versions: list[np.ndarray] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Return how many records are pending."""
        return sum(run.size for run in self.records)

    def add_sorted(self, records: np.ndarray, versions: np.ndarray) -> None:
        """Add a batch's loaded records and versions, each sorted."""
        if records.size:
            self.records.append(records)
            self.versions.append(versions)


def _any_holds(runs: list[np.ndarray], queries: np.ndarray) -> npt.NDArray[np.bool_]:
    """Return whether each sorted query is in any of the sorted arrays."""
    found = np.zeros(queries.size, dtype=bool)
    for run in runs:
        found |= _holds(run, queries)
    return found


def _k_way(runs: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield the values of sorted arrays merged, a piece at a time (no copy of them all).

    Each piece takes, from every array, its values up to a pivot: the least of the values a
    fair share ahead in each, so that every piece holds about MERGE_ROWS values and whatever
    is left is above it.
    """
    at = [0] * len(runs)
    share = max(1, MERGE_ROWS // max(1, len(runs)))
    while True:
        ahead = [run[min(a + share, run.size) - 1] for run, a in zip(runs, at, strict=True)
                 if a < run.size]  # fmt: skip
        if not ahead:
            return
        pivot = min(ahead)
        pieces = []
        for k, run in enumerate(runs):
            end = at[k] + int(np.searchsorted(run[at[k] :], pivot, side="right"))
            pieces.append(run[at[k] : end])
            at[k] = end
        piece = np.concatenate(pieces)
        piece.sort(kind="stable")
        yield piece


Piece = tuple[np.ndarray, np.ndarray | None]


def _merge_streams(older: Iterator[Piece], newer: Iterator[Piece]) -> Iterator[Piece]:
    """Yield two streams of sorted pieces (and what goes with each value) merged, piece by piece.

    Each step takes from both what lies up to the lesser of their pieces' last values.
    """
    empty: Piece = (np.empty(0, dtype=np.uint64), None)
    a, b = next(older, empty), next(newer, empty)
    while a[0].size and b[0].size:
        pivot = min(a[0][-1], b[0][-1])
        i = int(np.searchsorted(a[0], pivot, side="right"))
        j = int(np.searchsorted(b[0], pivot, side="right"))
        both = np.concatenate([a[0][:i], b[0][:j]])
        order = np.argsort(both, kind="stable")
        with_ = None
        if a[1] is not None and b[1] is not None:
            with_ = np.concatenate([a[1][:i], b[1][:j]])[order]
        yield both[order], with_
        a = (a[0][i:], None if a[1] is None else a[1][i:]) if i < a[0].size else next(older, empty)
        b = (b[0][j:], None if b[1] is None else b[1][j:]) if j < b[0].size else next(newer, empty)
    for rest, stream in ((a, older), (b, newer)):
        if rest[0].size:
            yield rest
        yield from stream


def _data_start(handle: Any) -> int:
    """Skip a .npy file's magic and header; return where its data starts.

    The header is not parsed: numpy parses it with `ast`, which CPython 3.11 does not allow
    from two threads at once (a run's arrays are read on two). What each file holds is known
    from its name (see _ROLES); its size gives the count.
    """
    magic = handle.read(8)
    if len(magic) != 8 or magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2, 3):
        raise ValueError(f"{handle.name}: not a .npy file")
    length = int.from_bytes(handle.read(2 if magic[6] == 1 else 4), "little")
    handle.seek(length, os.SEEK_CUR)
    return int(handle.tell())


def _array(path: Path, dtype: str, *, mode: Literal["r", "r+"] = "r") -> np.ndarray:
    """Map a one-dimensional .npy array written by the record index (see _data_start)."""
    with path.open("rb") as handle:
        start = _data_start(handle)
    itemsize = np.dtype(dtype).itemsize
    size = path.stat().st_size - start
    if size < 0 or size % itemsize:
        raise ValueError(f"{path}: not an array of {dtype}")
    if not size:
        return np.empty(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode=mode, offset=start, shape=(size // itemsize,))


def _read(path: Path, dtype: str) -> np.ndarray:
    """Read a one-dimensional .npy array written by the record index into memory (not mapped)."""
    itemsize = np.dtype(dtype).itemsize
    with path.open("rb") as handle:
        size = path.stat().st_size - _data_start(handle)
        if size < 0 or size % itemsize:
            raise ValueError(f"{path}: not an array of {dtype}")
        values = np.fromfile(handle, dtype=dtype, count=size // itemsize)
    if values.size != size // itemsize:
        raise ValueError(f"{path}: shorter than it was")
    return values
