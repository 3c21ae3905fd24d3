"""The record index: which records a source's evidence holds, whatever their month.

A record delivered again changes nothing, even with its dates shifted into another month, and a
record delivered again with other content (without `correction=true`) is a conflict. So an
ingest must find any record id of its source among every record stored, at any time. Keeping
every stored record hash in memory would cost 8 bytes a record (800 MB at 100M traces) and a
read of them all at every ingest. Instead each source keeps, beside the store
(`records/source=<s>/`), a cache derived from its parts:

- sorted runs on disk: the record hashes, sorted, with the delivery of each; and, sorted
  apart, the hashes of each record's version (its record hash mixed with a hash of its
  content): 20 bytes a record. A lookup reads one 4 KB segment of a run (512 hashes), found
  through fences (every 512th hash) held in memory; nothing of a run is held in memory;
- a Bloom filter of every record hash (12 bits a record, sized with room to grow, about 1%
  false positives, each record in one 64-bit word), held in memory: the new records of a
  batch, nearly all of its rows, are told new by the filter alone, and only the few it is
  unsure of are looked up in the runs.

What counts as a record's content is what the engine acts on: the link key (card or identity
number), the event time, the kind, and the face template of a face verification or the
discharge outcome of a medical visit. Parts written before such a column existed lack it: their
records' content is unknown, and a re-delivery of them is taken for identical.

The records of the delivery being loaded are held in memory as sorted batches (record hashes,
version hashes; 16 bytes a record) and in the filter, until the delivery is published as a run
of its own. The index is checked against the manifest whenever it is opened: a run covering a
part the manifest lacks (a delivery rolled back, a part compacted away) is dropped, and parts no
standing run covers are read back into a new run. A filter that knows records the store lacks
costs only a lookup, so it is kept until full. Runs merge, streaming, when the newer is at least
half the size of the older, so a source has at most log2 of its records' count of them. Files
change under a lock on the folder. Losing the folder costs one slower ingest, never a different
result.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from liveness.identity.keys import as_strings, mix64, string_hashes

try:  # POSIX; elsewhere a second process may rebuild the index alongside, which stays correct
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RECORDS_FOLDER",
    "RecordIndex",
    "Verdict",
    "content_columns",
    "content_hashes",
    "judge",
    "replace_parts",
    "version_hashes",
]

RECORDS_FOLDER = "records"
# Bumped whenever what the index holds or how a content is hashed changes: the index rebuilds.
FORMAT = 2
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
# Records read back into one run at a time, and rows of a streaming merge at a time.
RUN_ROWS = 8_000_000
MERGE_ROWS = 1 << 20
# A content hash is 32 bits, never 0: 0 means "unknown" (a part lacking a content column).
UNKNOWN = 0
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_VERSION_SALT = np.uint64(0xD6E8FEB86659FD93)
SOURCE_CONTENT: dict[str, tuple[str, ...]] = {
    "face": ("face_id",),
    "medical": ("discharge_outcome",),
}
_COLUMN_WEIGHTS = tuple(
    np.uint64(weight)
    for weight in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                   0xFF51AFD7ED558CCD)
)  # fmt: skip
# Kinds are few: their hash is taken once per distinct value.
_FEW_VALUES = ("kind", "face_id", "discharge_outcome")


def content_columns(source: str) -> tuple[str, ...]:
    """Return the evidence columns whose values are a record's content, for `source`."""
    return ("link_key", "event_at", "kind", *SOURCE_CONTENT.get(source, ()))


def content_hashes(table: pa.Table, source: str) -> npt.NDArray[np.uint32]:
    """Return a 32-bit hash of each trace's content, never 0; all 0 where a column is absent."""
    names = content_columns(source)
    n = table.num_rows
    if any(name not in table.column_names for name in names):
        return np.zeros(n, dtype=np.uint32)
    acc = np.zeros(n, dtype=np.uint64)
    for position, name in enumerate(names):
        column = table[name]
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_timestamp(column.type):
            # Whole seconds, whatever unit a file gives back (Parquet keeps seconds as ms).
            seconds = pc.cast(column, pa.timestamp("s", column.type.tz), safe=False)
            values = pc.fill_null(seconds.cast(pa.int64()), -1).to_numpy().view(np.uint64)
        else:
            values = _text_hashes(column, few=name in _FEW_VALUES)
        # Each column weighed by its own odd multiplier, then one mix of them all.
        acc ^= values * _COLUMN_WEIGHTS[position]
    acc = mix64(acc)
    folded = ((acc >> np.uint64(32)) ^ acc) & np.uint64(0xFFFFFFFF)
    folded[folded == UNKNOWN] = 1
    return folded.astype(np.uint32)


def _text_hashes(column: pa.Array, *, few: bool) -> npt.NDArray[np.uint64]:
    """Return a hash per text value; a missing value hashes apart from every text."""
    if pa.types.is_dictionary(column.type):
        dictionary, indices = column.dictionary, column.indices
    elif few:
        encoded = pc.dictionary_encode(column)
        dictionary, indices = encoded.dictionary, encoded.indices
    else:
        dictionary, indices = None, None
    if dictionary is not None and indices is not None:
        codes = pc.fill_null(indices.cast(pa.int64()), len(dictionary)).to_numpy()
        table = np.append(string_hashes(as_strings(dictionary)), np.uint64(1))
        return table[codes]
    hashes = string_hashes(as_strings(column))
    if column.null_count:
        hashes[pc.is_null(column).to_numpy(zero_copy_only=False)] = 1
    return hashes


def version_hashes(
    records: npt.NDArray[np.uint64], contents: npt.NDArray[Any]
) -> npt.NDArray[np.uint64]:
    """Return the hash of each record's version: its record hash mixed with its content hash."""
    mixed = contents.astype(np.uint64) * _VERSION_SALT + np.uint64(1)
    return mix64(records ^ mixed)


def judge(
    records: npt.NDArray[np.uint64],
    contents: npt.NDArray[np.uint64],
    corrections: npt.NDArray[np.bool_],
    *,
    known: npt.NDArray[np.bool_],
    same: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Return which rows of a batch are re-deliveries and which are conflicts (the rest load).

    `known`: the row's record was stored before the batch; `same`: with this content. Rows
    are taken in order: a correction always loads; a row with a stored content, or repeating
    an earlier row of the batch that loaded (or was re-delivered), is a re-delivery; a row
    whose record was stored or came earlier in the batch, with other content, is a conflict.
    """
    versions = mix64(records ^ (contents * _MULTIPLIER))
    first_version = ~pd.Series(versions).duplicated().to_numpy()
    first_record = ~pd.Series(records).duplicated().to_numpy()
    loads, redelivered, conflict = 0, 1, 2
    fate = np.where(
        corrections,
        loads,
        np.where(same, redelivered, np.where(known | ~first_record, conflict, loads)),
    )
    # A row repeating the version of an earlier row that loaded (or was re-delivered) is a
    # re-delivery; one whose earlier copies were all conflicts is a conflict too.
    codes = pd.factorize(versions)[0]
    settles = corrections | (first_version & (fate != conflict))
    seen = pd.Series(settles).groupby(codes).cummax()
    before = seen.groupby(codes).shift(1, fill_value=False).to_numpy(dtype=bool)
    repeated = ~first_version & ~corrections
    fate = np.where(repeated, np.where(before, redelivered, conflict), fate)
    return fate == redelivered, fate == conflict


@dataclass(frozen=True)
class Verdict:
    """What the index says of each row of a batch, in the batch's order.

    `redelivered`: the record was stored (or came earlier in the batch) with the same content.
    `conflict`: it was, with other content, and this row is no correction. `earlier`: the
    delivery holding the conflicting record (-1: this delivery).
    """

    redelivered: npt.NDArray[np.bool_]
    conflict: npt.NDArray[np.bool_]
    earlier: npt.NDArray[np.int64]


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


@dataclass
class RecordIndex:
    """The record index of one source: runs on disk, a Bloom filter, the pending delivery."""

    folder: Path
    source: str
    runs: list[_Run]
    bloom: _Bloom
    bloom_name: str
    bloom_parts: set[str]
    pending: _Pending = field(default_factory=_Pending)
    # Runs published since opening: their deliveries may yet roll back, so they merge only
    # among themselves (a rolled-back one then costs re-reading a few parts, never all).
    fresh: list[_Run] = field(default_factory=list)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, folder: Path, *, source: str, manifest: Mapping[str, Path]) -> RecordIndex:
        """Open the index in `folder`, brought up to the source's manifest (part -> file)."""
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
            meta = _read_meta(folder)
            runs: list[_Run] = []
            # A delivery's records may lie in several runs: a part is covered only while every
            # run holding some of its records stands (a part read back again only repeats
            # records, which lookups take for one).
            tainted: set[str] = set()
            for entry in meta.get("runs", []):
                parts = frozenset(entry["parts"])
                run = _open_run(folder, entry["name"], parts) if parts <= manifest.keys() else None
                if run is None:
                    tainted |= parts
                    _remove_run(folder, entry["name"])
                    continue
                runs.append(run)
            covered = set().union(*(run.parts for run in runs)) - tainted
            missing = [path for path in manifest if path not in covered]
            for parts, keys, deliveries, versions in _read_back(missing, source, manifest):
                runs.append(
                    _write_run(folder, parts, iter([(keys, deliveries)]),
                               iter([(versions, None)]), keys.size)
                )  # fmt: skip
            _remove_strays(folder, {run.name for run in runs}, meta)
            index = cls._with_bloom(folder, source, runs, meta, manifest)
            index._merge_runs(index.runs)
            index._save()
        return index

    @classmethod
    def _with_bloom(
        cls,
        folder: Path,
        source: str,
        runs: list[_Run],
        meta: dict[str, Any],
        manifest: Mapping[str, Path],
    ) -> RecordIndex:
        """Return the index with a filter holding every run's records (reused if it can be)."""
        entry = meta.get("bloom") or {}
        records = sum(run.rows for run in runs)
        words = None
        # Reused while a third of its room is left: the ingest to come fits in it.
        if entry and records * 3 <= 2 * int(entry.get("capacity", 0)):
            words = _load_words(folder / f"{entry['name']}.npy")
        if words is not None:
            bloom, name, parts = _Bloom(words), str(entry["name"]), set(entry["parts"])
            for run in runs:
                if not run.parts <= parts:
                    for block in run.blocks("keys"):
                        bloom.add_sorted(block)
                    bloom.persist(folder / f"{name}.npy", run.blocks("keys"))
                    parts |= run.parts
            parts &= manifest.keys()
        else:
            name, bloom, parts = _new_bloom(folder, runs)
            if entry:
                (folder / f"{entry['name']}.npy").unlink(missing_ok=True)
        return cls(folder, source, runs, bloom, name, parts)

    # ------------------------------------------------------------------ checking

    def check(
        self,
        hashes: npt.NDArray[np.uint64],
        contents: npt.NDArray[np.uint32],
        corrections: npt.NDArray[np.bool_],
    ) -> Verdict:
        """Judge a batch's records against the stored, the pending and each other; add the new.

        A correction always loads. Otherwise a record with the content of a stored version
        (or of an earlier row of the batch that loaded) is re-delivered; one already known
        with other content is a conflict; the rest are new. Loaded rows become pending.
        """
        n = hashes.size
        versions = version_hashes(hashes, contents)
        ordered = np.sort(hashes)
        known = np.zeros(n, dtype=bool)
        maybe = np.flatnonzero(self.bloom.may_hold(ordered))
        if maybe.size:
            candidates = ordered[maybe]
            known[maybe] = _any_holds(self.pending.records, candidates)
            for run in [*self.runs, *self.fresh]:
                known[maybe] |= run.find(candidates)
        repeats = n > 1 and bool((ordered[1:] == ordered[:-1]).any())
        if not known.any() and not repeats:
            # The usual case: every record is new; the sorted batch is a pending run.
            self._add_pending(ordered, np.sort(versions))
            nothing = np.zeros(n, dtype=bool)
            return Verdict(nothing, nothing.copy(), np.full(n, -1, dtype=np.int64))
        # Only rows whose record is known or repeats in the batch need judging, in the batch's
        # order (which decides what "earlier in the batch" means); the rest are new.
        order = np.argsort(hashes, kind="stable")
        involved_sorted = known.copy()
        if repeats:
            twin = ordered[1:] == ordered[:-1]
            involved_sorted[1:] |= twin
            involved_sorted[:-1] |= twin
        involved = np.sort(order[involved_sorted])
        row_known = np.zeros(n, dtype=bool)
        row_known[order] = known
        same = self._stored_versions(hashes[involved], versions[involved])
        redelivered, conflict = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        redelivered[involved], conflict[involved] = judge(
            hashes[involved], contents[involved].astype(np.uint64), corrections[involved],
            known=row_known[involved], same=same,
        )  # fmt: skip
        before = np.full(n, -1, dtype=np.int64)
        conflicting = np.flatnonzero(conflict)
        before[conflicting] = self._earlier(hashes[conflicting])
        loaded = ~(redelivered | conflict)
        self._add_pending(np.sort(hashes[loaded]), np.sort(versions[loaded]))
        return Verdict(redelivered, conflict, before)

    def _add_pending(self, records: np.ndarray, versions: np.ndarray) -> None:
        """Hold a batch's loaded records as pending, in the filter too (grown when full)."""
        self.pending.add_sorted(records, versions)
        stored = sum(run.rows for run in [*self.runs, *self.fresh])
        if stored + self.pending.rows > self.bloom.capacity:
            # Full: a larger filter, so that it stays about as selective as it was.
            with _locked(self.folder):
                old = self.folder / f"{self.bloom_name}.npy"
                self.bloom_name, self.bloom, self.bloom_parts = _new_bloom(
                    self.folder, [*self.runs, *self.fresh], pending=self.pending.records
                )
                self._save()
                old.unlink(missing_ok=True)
        else:
            self.bloom.add_sorted(records)

    def _stored_versions(
        self, hashes: npt.NDArray[np.uint64], versions: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.bool_]:
        """Return, per record, whether a stored (or pending) version has its content.

        A version of unknown content (a part lacking a content column) matches any content.
        """
        order = np.argsort(versions)
        same_sorted = _any_holds(self.pending.versions, versions[order])
        unknown = version_hashes(hashes, np.zeros(hashes.size, dtype=np.uint64))
        unknown_order = np.argsort(unknown)
        unknown_sorted = np.zeros(hashes.size, dtype=bool)
        for run in [*self.runs, *self.fresh]:
            same_sorted |= run.holds(versions[order])
            unknown_sorted |= run.holds(unknown[unknown_order])
        same = np.zeros(hashes.size, dtype=bool)
        same[order] = same_sorted
        same[unknown_order] |= unknown_sorted
        return same

    def _earlier(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Return, per record, the latest stored delivery holding it (-1: none, or pending)."""
        order = np.argsort(hashes)
        latest = np.full(hashes.size, -1, dtype=np.int64)
        for run in [*self.runs, *self.fresh]:
            latest = np.maximum(latest, run.latest_delivery(hashes[order]))
        earlier = np.empty(hashes.size, dtype=np.int64)
        earlier[order] = latest
        return earlier

    # ------------------------------------------------------------------ publishing

    def publish(self, *, delivery_id: int, parts: Sequence[str]) -> None:
        """Keep the pending delivery's records as a run covering its parts (before commit).

        A run whose delivery then rolls back covers parts the manifest lacks: the next opening
        drops it, and the filter keeps its records at the cost of a lookup.
        """
        pending, self.pending = self.pending, _Pending()
        rows = pending.rows
        if not rows:
            return

        def keyed() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
            for keys in _k_way(pending.records):
                yield keys, np.full(keys.size, delivery_id, dtype=np.int32)

        def versions() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
            for piece in _k_way(pending.versions):  # merged on the writing thread
                yield piece, None

        with _locked(self.folder):
            run = _write_run(self.folder, frozenset(parts), keyed(), versions(), rows)
            self.fresh.append(run)
            # The filter in memory holds the records since they were checked; its file now.
            self.bloom.persist(self.folder / f"{self.bloom_name}.npy", pending.records)
            self.bloom_parts |= set(parts)
            self._merge_runs(self.fresh)
            self._save()

    def discard(self) -> None:
        """Forget the pending delivery's records (it rolled back)."""
        self.pending = _Pending()

    # ------------------------------------------------------------------ upkeep

    def _merge_runs(self, runs: list[_Run]) -> None:
        """Merge the smallest of `runs` while the smaller is at least half the other."""
        runs.sort(key=lambda run: -run.rows)
        while len(runs) > 1 and runs[-2].rows <= 2 * runs[-1].rows:
            newer, older = runs.pop(), runs.pop()

            def keyed_of(run: _Run) -> Iterator[Piece]:
                return zip(run.blocks("keys"), run.blocks("deliveries"), strict=True)

            def versions_of(run: _Run) -> Iterator[Piece]:
                return ((block, None) for block in run.blocks("versions"))

            keyed = _merge_streams(keyed_of(older), keyed_of(newer))
            versions = _merge_streams(versions_of(older), versions_of(newer))
            runs.append(
                _write_run(self.folder, older.parts | newer.parts, keyed, versions,
                           older.rows + newer.rows)
            )  # fmt: skip
            runs.sort(key=lambda run: -run.rows)
            for old in (older, newer):
                _remove_run(self.folder, old.name)

    def _save(self) -> None:
        """Write the index's description atomically (runs, then the filter's coverage)."""
        meta = {
            "format": FORMAT,
            "runs": [
                {"name": run.name, "parts": sorted(run.parts)} for run in [*self.runs, *self.fresh]
            ],
            "bloom": {
                "name": self.bloom_name,
                "capacity": self.bloom.capacity,
                "parts": sorted(self.bloom_parts),
            },
        }
        _write_meta(self.folder, meta)


def replace_parts(folder: Path, *, old: Collection[str], new: str) -> None:
    """Record that part `new` holds the records of parts `old` (compaction merged them).

    Only when every old part is in the index: otherwise the next opening reads the new part
    back. Should the compaction roll back, the runs then list a part the manifest lacks, and
    the next opening drops them and reads their parts back: slower, never wrong.
    """
    gone = set(old)
    if not folder.is_dir():
        return
    with _locked(folder):
        meta = _read_meta(folder)
        runs = meta.get("runs", [])
        listed = set().union(*(set(entry["parts"]) for entry in runs))
        if not runs or not gone <= listed:
            return
        for entry in [*runs, meta.get("bloom") or {"parts": []}]:
            parts = set(entry["parts"])
            if parts & gone:
                entry["parts"] = sorted((parts - gone) | {new})
        _write_meta(folder, meta)


# ---------------------------------------------------------------------- files


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the folder's lock: one process at a time rewrites the index."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with (folder / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_meta(folder: Path) -> dict[str, Any]:
    """Return the index's description, or an empty one if there is none to trust."""
    try:
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return {}
    return meta


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write the index's description atomically."""
    temporary = folder / f".index-{uuid.uuid4().hex[:8]}.tmp"
    temporary.write_text(json.dumps(meta), encoding="utf-8")
    os.replace(temporary, folder / "index.json")


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
    """Map a one-dimensional .npy array written by this module (see _data_start)."""
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
    """Read a one-dimensional .npy array written by this module into memory (not mapped)."""
    itemsize = np.dtype(dtype).itemsize
    with path.open("rb") as handle:
        size = path.stat().st_size - _data_start(handle)
        if size < 0 or size % itemsize:
            raise ValueError(f"{path}: not an array of {dtype}")
        values = np.fromfile(handle, dtype=dtype, count=size // itemsize)
    if values.size != size // itemsize:
        raise ValueError(f"{path}: shorter than it was")
    return values


def _open_run(folder: Path, name: str, parts: frozenset[str]) -> _Run | None:
    """Map a run and read its fences; None when its files are missing or damaged."""
    try:
        # Mapped, never read through the map: lookups read their segments (see _bounds).
        keys, deliveries, versions = (
            _array(folder / f"{name}.{array}.npy", _ROLES[array])
            for array in ("keys", "deliveries", "versions")
        )
        key_fences = _read(folder / f"{name}.keyfences.npy", "<u8")
        version_fences = _read(folder / f"{name}.versionfences.npy", "<u8")
    except (OSError, ValueError):
        return None
    fences = ((keys.size + FENCE - 1) // FENCE,)
    if (
        keys.dtype != np.uint64
        or versions.dtype != np.uint64
        or deliveries.dtype != np.int32
        or keys.ndim != 1
        or deliveries.shape != keys.shape
        or versions.shape != keys.shape
        or key_fences.shape != fences
        or version_fences.shape != fences
    ):
        return None
    return _Run(
        folder, name, parts, keys, deliveries, versions, key_fences, version_fences,
        {name: int(getattr(array, "offset", 0)) for name, array in
         (("keys", keys), ("deliveries", deliveries), ("versions", versions))},
    )  # fmt: skip


class _ArrayFile:
    """A .npy file written piece by piece through plain writes, with its fences."""

    def __init__(self, path: Path, dtype: str, rows: int, *, fenced: bool) -> None:
        self.path, self.temporary = path, path.with_suffix(".tmp")
        self.handle = self.temporary.open("wb")
        header = {"descr": dtype, "fortran_order": False, "shape": (rows,)}
        np.lib.format.write_array_header_2_0(self.handle, header)
        self.fences: list[np.ndarray] | None = [] if fenced else None
        self.dtype, self.rows, self.done = np.dtype(dtype), rows, 0

    def write(self, values: np.ndarray) -> None:
        if self.fences is not None:
            # the fences are the values at every FENCE-th position of the whole array
            self.fences.append(values[(-self.done) % FENCE :: FENCE])
        np.ascontiguousarray(values, dtype=self.dtype).tofile(self.handle)
        self.done += values.size

    def close(self) -> np.ndarray | None:
        self.handle.close()
        if self.done != self.rows:
            raise RuntimeError(f"{self.path}: {self.rows} rows expected, {self.done} written")
        os.replace(self.temporary, self.path)
        if self.fences is None:
            return None
        return np.concatenate(self.fences) if self.fences else np.empty(0, dtype=np.uint64)


def _write_run(
    folder: Path,
    parts: frozenset[str],
    keyed: Iterator[tuple[np.ndarray, np.ndarray | None]],
    versions: Iterator[tuple[np.ndarray, np.ndarray | None]],
    rows: int,
) -> _Run:
    """Write sorted records and versions, piece by piece, as a run; return it, mapped.

    The versions are produced and written on a thread of their own, beside the records
    (sorting and writing run without the GIL). Written through plain file writes (a
    writable map would keep every page it touched).
    """
    name = f"run-{uuid.uuid4().hex[:12]}"

    def write_versions() -> np.ndarray | None:
        versions_file = _ArrayFile(folder / f"{name}.versions.npy", "<u8", rows, fenced=True)
        for piece, _ in versions:
            versions_file.write(piece)
        return versions_file.close()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-versions") as pool:
        written = pool.submit(write_versions)
        keys = _ArrayFile(folder / f"{name}.keys.npy", "<u8", rows, fenced=True)
        deliveries = _ArrayFile(folder / f"{name}.deliveries.npy", "<i4", rows, fenced=False)
        for piece, delivery in keyed:
            keys.write(piece)
            deliveries.write(delivery if delivery is not None else np.full(piece.size, -1))
        key_fences = keys.close()
        deliveries.close()
        version_fences = written.result()
    assert key_fences is not None and version_fences is not None
    for fence_name, fences in (("keyfences", key_fences), ("versionfences", version_fences)):
        temporary = folder / f"{name}.{fence_name}.tmp"
        with temporary.open("wb") as handle:
            np.save(handle, fences)
        os.replace(temporary, folder / f"{name}.{fence_name}.npy")
    run = _open_run(folder, name, parts)
    if run is None:
        raise RuntimeError(f"{folder / name}: a run just written cannot be read")
    return run


def _remove_run(folder: Path, name: str) -> None:
    for part in ("keys", "deliveries", "versions", "keyfences", "versionfences"):
        (folder / f"{name}.{part}.npy").unlink(missing_ok=True)


def _new_bloom(
    folder: Path, runs: list[_Run], *, pending: Sequence[np.ndarray] = ()
) -> tuple[str, _Bloom, set[str]]:
    """Write a filter of every record of `runs` (and `pending`), with room to grow."""
    name = f"bloom-{uuid.uuid4().hex[:12]}"
    records = sum(run.rows for run in runs) + sum(run.size for run in pending)
    bloom, parts = _Bloom(np.zeros(_Bloom.words_for(records), dtype=np.uint64)), set[str]()
    for run in runs:
        for block in run.blocks("keys"):
            bloom.add_sorted(block)
        parts |= run.parts
    for batch in pending:
        bloom.add_sorted(batch)
    temporary = folder / f"{name}.tmp"
    with temporary.open("wb") as handle:
        np.save(handle, bloom.words)
    os.replace(temporary, folder / f"{name}.npy")
    return name, bloom, parts


def _load_words(path: Path) -> np.ndarray | None:
    """Read a filter's words into memory (a private copy), or None if there is none to trust."""
    try:
        words = _read(path, "<u8")
    except (OSError, ValueError):
        return None
    return words if words.size else None


def _remove_strays(folder: Path, runs: set[str], meta: dict[str, Any]) -> None:
    """Remove files of runs and filters nothing names (left by a crash or a lost race)."""
    bloom = (meta.get("bloom") or {}).get("name")
    for path in folder.glob("*.npy"):
        name = path.name.split(".")[0]
        if name not in runs and name != bloom:
            path.unlink(missing_ok=True)
    for path in folder.glob("*.tmp"):
        path.unlink(missing_ok=True)


def _read_back(
    paths: list[str], source: str, manifest: Mapping[str, Path]
) -> Iterator[tuple[frozenset[str], np.ndarray, np.ndarray, np.ndarray]]:
    """Read parts back into sorted runs of at most about RUN_ROWS records each."""
    group: list[str] = []
    tables: list[pa.Table] = []
    rows = 0
    names = ["record_hash", "delivery_id", *content_columns(source)]
    for path in paths:
        file = pq.ParquetFile(manifest[path], read_dictionary=["kind"])
        table = file.read(columns=[name for name in names if name in file.schema_arrow.names])
        records = table["record_hash"].to_numpy()
        tables.append(
            pa.table(
                {
                    "record": records,
                    "delivery": pc.fill_null(table["delivery_id"], -1).cast(pa.int32()),
                    "version": version_hashes(records, content_hashes(table, source)),
                }
            )
        )
        group.append(path)
        rows += table.num_rows
        if rows >= RUN_ROWS or path == paths[-1]:
            both = pa.concat_tables(tables)
            records = both["record"].to_numpy()
            order = np.argsort(records, kind="stable")
            deliveries = both["delivery"].to_numpy()[order]
            yield frozenset(group), records[order], deliveries, np.sort(both["version"].to_numpy())
            group, tables, rows = [], [], 0
