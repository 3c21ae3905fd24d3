"""The record index: which records a source's evidence holds, whatever their month.

A record delivered again changes nothing, even with its dates shifted into another month, and a
record delivered again with other content (without `correction=true`) is a conflict. So an
ingest must find any record id of its source among every record stored, at any time. Keeping
every stored record hash in memory would cost 8 bytes a record (800 MB at 100M traces) and a
read of them all at every ingest. Instead each source keeps, beside the store
(`records/source=<s>/`), a cache derived from its parts:

- sorted runs: per stored record its hash, and its content hash and delivery packed in a second
  word (16 bytes a record), sorted by record hash, memory-mapped; a lookup reads one page of a
  run, found through a fence of every 512th hash held in memory;
- a Bloom filter of every record hash (12 bits a record, about 1% false positives, each record
  in one 64-bit word): the new records of a batch, nearly all of its rows, are told new by the
  filter alone, and only the few it is unsure of are looked up in the runs.

What counts as a record's content is what the engine acts on: the link key (card or identity
number), the event time, the kind, and the face template of a face verification or the
discharge outcome of a medical visit. Parts written before such a column existed lack it: their
records' content is unknown, and a re-delivery of them is taken for identical.

The index is checked against the manifest whenever it is opened: a run covering a part the
manifest lacks (a delivery rolled back, a part compacted away) is dropped, and parts no run
covers are read back into a new run. A Bloom filter that knows records the store lacks costs
only a lookup, so it is kept until full. Runs merge, streaming, when the newer is at least half
the size of the older, so a source has at most log2 of its records' count of them. Losing the
folder costs one slower ingest, never a different result.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
]

RECORDS_FOLDER = "records"
# Bumped whenever what the index holds or how a content is hashed changes: the index rebuilds.
FORMAT = 1
FENCE = 512
BLOOM_BITS = 12
# A filter is sized for this many times the records it starts with, and rebuilt when full.
BLOOM_ROOM = 1.5
# Records read back into one run at a time, and rows of a streaming merge at a time.
RUN_ROWS = 8_000_000
MERGE_ROWS = 1 << 20
# A content hash is 32 bits in the index; 0 means "unknown" (a part lacking a content column).
UNKNOWN = 0
_LOW = np.uint64(0xFFFFFFFF)
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
SOURCE_CONTENT: dict[str, tuple[str, ...]] = {
    "face": ("face_id",),
    "medical": ("discharge_outcome",),
}
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
    acc = np.full(n, 0x5BD1E995, dtype=np.uint64)
    for name in names:
        column = table[name]
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_timestamp(column.type):
            # Whole seconds, whatever unit a file gives back (Parquet keeps seconds as ms).
            seconds = pc.cast(column, pa.timestamp("s", column.type.tz), safe=False)
            values = pc.fill_null(seconds.cast(pa.int64()), -1).to_numpy().view(np.uint64)
        else:
            values = _text_hashes(column, few=name in _FEW_VALUES)
        acc = mix64((acc ^ values) * _MULTIPLIER)
    folded = ((acc >> np.uint64(32)) ^ acc) & _LOW
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


def _packed(contents: npt.NDArray[np.uint32], deliveries: npt.NDArray[Any]) -> np.ndarray:
    """Pack a content hash and a delivery id (-1: none) into one 64-bit word each."""
    low = deliveries.astype(np.int64).astype(np.uint64) & _LOW
    return (contents.astype(np.uint64) << np.uint64(32)) | low


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
        self.words = words

    @staticmethod
    def words_for(records: int) -> int:
        """Return the words of a filter with room for `records` and then some."""
        return max(1024, int(records * BLOOM_ROOM * BLOOM_BITS / 64) + 1)

    @property
    def capacity(self) -> int:
        """Return how many records the filter holds before it should be rebuilt."""
        return int(len(self.words) * 64 / BLOOM_BITS)

    def _slots(self, hashes: npt.NDArray[np.uint64]) -> tuple[np.ndarray, np.ndarray]:
        # The word from the hash's high half, by a multiply-shift (sorted hashes, sorted words);
        # the bits from a second mix, so that the two are independent: 12 bits of it give two
        # probes at once, through a table.
        word = ((hashes >> np.uint64(32)) * np.uint64(len(self.words))) >> np.uint64(32)
        mixed = hashes * _MULTIPLIER
        pattern = _TWO_BITS[(mixed >> np.uint64(52)).astype(np.intp)]
        pattern |= _TWO_BITS[((mixed >> np.uint64(40)) & np.uint64(4095)).astype(np.intp)]
        return word.astype(np.int64), pattern

    def add_sorted(self, hashes: npt.NDArray[np.uint64]) -> None:
        """Add record hashes given in ascending order (their words are then ascending too)."""
        if not hashes.size:
            return
        word, pattern = self._slots(hashes)
        starts = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
        self.words[word[starts]] |= np.bitwise_or.reduceat(pattern, starts)

    def add_run(self, run: _Run) -> None:
        """Add a run's records, a piece at a time (a run on disk is read, never held whole)."""
        for start in range(0, run.rows, MERGE_ROWS):
            self.add_sorted(np.asarray(run.keys[start : start + MERGE_ROWS]))

    def may_hold(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Return False where a hash is surely not in the filter (True: perhaps)."""
        word, pattern = self._slots(hashes)
        return (np.asarray(self.words[word]) & pattern) == pattern


@dataclass
class _Run:
    """A sorted run: record hashes (`keys`) and packed content and delivery (`values`)."""

    name: str
    parts: frozenset[str]
    keys: npt.NDArray[np.uint64]  # memory-mapped for runs on disk
    values: npt.NDArray[Any]  # uint64 (content << 32 | delivery), or uint32 contents (pending)
    fences: npt.NDArray[np.uint64] | None = None

    @property
    def rows(self) -> int:
        """Return the run's record count."""
        return int(self.keys.shape[0])

    def lookup(
        self, hashes: npt.NDArray[np.uint64], contents: npt.NDArray[np.uint32]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return, per sorted hash, whether it is here, with this content, and its delivery."""
        keys = self.keys
        at = self._lower_bound(hashes)
        found = np.zeros(hashes.size, dtype=bool)
        same = np.zeros(hashes.size, dtype=bool)
        delivery = np.full(hashes.size, -1, dtype=np.int64)
        if not keys.size:
            return found, same, delivery
        # Most hashes are not here: one gather tells them apart before any walk.
        rows = np.flatnonzero(np.asarray(keys[np.minimum(at, keys.size - 1)]) == hashes)
        # A corrected record is here once per version: walk each one's equal hashes.
        while rows.size:
            pos = at[rows]
            hit = np.asarray(keys[pos]) == hashes[rows]
            rows, pos = rows[hit], pos[hit]
            if not rows.size:
                break
            word = np.asarray(self.values[pos])
            found[rows] = True
            if word.dtype == np.uint32:  # pending: contents alone, of the delivery loading
                same[rows] |= word == contents[rows]
            else:
                stored = (word >> np.uint64(32)).astype(np.uint32)
                same[rows] |= (stored == contents[rows]) | (stored == UNKNOWN)
                mine = (word & _LOW).astype(np.int64)
                mine[mine == 0xFFFFFFFF] = -1
                delivery[rows] = np.maximum(delivery[rows], mine)
            at[rows] += 1
            rows = rows[at[rows] < keys.size]
        return found, same, delivery

    def _lower_bound(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Return where each sorted hash would go in the run: via the fences, one page each."""
        keys = self.keys
        if self.fences is None:
            return np.searchsorted(keys, hashes).astype(np.int64)
        page = np.maximum(np.searchsorted(self.fences, hashes) - 1, 0)
        low = page.astype(np.int64) * FENCE
        high = np.minimum(low + FENCE, keys.size)
        while True:
            open_ = np.flatnonzero(low < high)
            if not open_.size:
                return low
            middle = (low[open_] + high[open_]) // 2
            below = np.asarray(keys[middle]) < hashes[open_]
            low[open_] = np.where(below, middle + 1, low[open_])
            high[open_] = np.where(below, high[open_], middle)


def _merge(older: _Run, newer: _Run) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield the records of two runs merged by hash, a piece at a time (bounded memory)."""
    taken = 0
    for start in range(0, older.rows, MERGE_ROWS):
        keys = np.asarray(older.keys[start : start + MERGE_ROWS])
        last = start + MERGE_ROWS >= older.rows
        end = newer.rows if last else int(np.searchsorted(newer.keys, keys[-1]))
        yield _merged(
            keys, np.asarray(older.values[start : start + MERGE_ROWS]),
            np.asarray(newer.keys[taken:end]), np.asarray(newer.values[taken:end]),
        )  # fmt: skip
        taken = end
    if taken < newer.rows:
        yield np.asarray(newer.keys[taken:]), np.asarray(newer.values[taken:])


def _merged(
    keys: np.ndarray, values: np.ndarray, other_keys: np.ndarray, other_values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted pieces: each of the other's goes after the equal and smaller of these."""
    size = keys.size + other_keys.size
    theirs = np.searchsorted(keys, other_keys, side="right") + np.arange(other_keys.size)
    from_other = np.zeros(size, dtype=bool)
    from_other[theirs] = True
    out_keys = np.empty(size, dtype=keys.dtype)
    out_values = np.empty(size, dtype=values.dtype)
    out_keys[theirs], out_values[theirs] = other_keys, other_values
    out_keys[~from_other], out_values[~from_other] = keys, values
    return out_keys, out_values


class _Pending:
    """The records of the delivery being loaded, as sorted runs held in memory.

    Their `values` are the bare 32-bit content hashes (their delivery is the one loading).
    """

    def __init__(self) -> None:
        self.runs: list[_Run] = []

    def add_sorted(self, hashes: npt.NDArray[np.uint64], contents: npt.NDArray[np.uint32]) -> None:
        """Add records sorted by hash; runs merge when the newer is at least half the older."""
        if not hashes.size:
            return
        self.runs.append(_Run("pending", frozenset(), hashes, contents))
        while len(self.runs) > 1 and self.runs[-2].rows <= 2 * self.runs[-1].rows:
            newer, older = self.runs.pop(), self.runs.pop()
            pieces = list(_merge(older, newer))
            keys = np.concatenate([k for k, _ in pieces])
            values = np.concatenate([v for _, v in pieces])
            self.runs.append(_Run("pending", frozenset(), keys, values))

    def lookup(
        self, hashes: npt.NDArray[np.uint64], contents: npt.NDArray[np.uint32]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return, per sorted hash, whether it is pending, and with this content."""
        found = np.zeros(hashes.size, dtype=bool)
        same = np.zeros(hashes.size, dtype=bool)
        for run in self.runs:
            hit, alike, _ = run.lookup(hashes, contents)
            found |= hit
            same |= alike
        return found, same


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
            for parts, keys, values in _read_back(missing, source, manifest):
                runs.append(_write_run(folder, parts, iter([(keys, values)]), keys.size))
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
        if entry and records <= int(entry.get("capacity", 0)):
            words = _load_words(folder / f"{entry['name']}.npy")
        if words is not None:
            bloom, name, parts = _Bloom(words), str(entry["name"]), set(entry["parts"])
            for run in runs:
                if not run.parts <= parts:
                    bloom.add_run(run)
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
        order = np.argsort(hashes)
        sorted_hashes, sorted_contents = hashes[order], contents[order]
        known, same = self.pending.lookup(sorted_hashes, sorted_contents)
        earlier = np.full(n, -1, dtype=np.int64)
        # Found pending with other content, a record may still hold this content on disk.
        maybe = np.flatnonzero(~same)
        maybe = maybe[self.bloom.may_hold(sorted_hashes[maybe])]
        for run in [*self.runs, *self.fresh] if maybe.size else ():
            found, alike, delivery = run.lookup(sorted_hashes[maybe], sorted_contents[maybe])
            known[maybe] |= found
            same[maybe] |= alike
            earlier[maybe] = np.maximum(earlier[maybe], delivery)
        repeats = n > 1 and bool((sorted_hashes[1:] == sorted_hashes[:-1]).any())
        nothing = np.zeros(n, dtype=bool)
        if not known.any() and not repeats:
            # The usual case: every record is new, and the sorted batch is a pending run.
            self.pending.add_sorted(sorted_hashes, sorted_contents)
            return Verdict(nothing, nothing.copy(), earlier)
        # Only rows whose record is known or repeats in the batch need judging, in the batch's
        # order (which decides what "earlier in the batch" means); the rest are new.
        repeated = np.zeros(n, dtype=bool)
        if repeats:
            twin = sorted_hashes[1:] == sorted_hashes[:-1]
            repeated[1:] |= twin
            repeated[:-1] |= twin
        involved = np.sort(order[known | repeated])
        in_sorted = np.empty(n, dtype=np.int64)
        in_sorted[order] = np.arange(n)
        at = in_sorted[involved]
        redelivered, conflict = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        redelivered[involved], conflict[involved] = judge(
            hashes[involved], contents[involved].astype(np.uint64), corrections[involved],
            known=known[at], same=same[at],
        )  # fmt: skip
        loaded = np.flatnonzero(~(redelivered | conflict)[order])
        self.pending.add_sorted(sorted_hashes[loaded], sorted_contents[loaded])
        return Verdict(redelivered, conflict, earlier[in_sorted])

    # ------------------------------------------------------------------ publishing

    def publish(self, *, delivery_id: int, parts: Sequence[str]) -> None:
        """Keep the pending delivery's records as runs covering its parts (before commit).

        A run whose delivery then rolls back covers parts the manifest lacks: the next opening
        drops it, and the filter keeps its records at the cost of a lookup.
        """
        pending, self.pending = self.pending, _Pending()
        if not pending.runs:
            return
        covered = frozenset(parts)
        mark = np.uint64(delivery_id & 0xFFFFFFFF)
        with _locked(self.folder):
            for run in pending.runs:
                values = (run.values.astype(np.uint64) << np.uint64(32)) | mark
                self.fresh.append(_write_run(self.folder, covered, iter([(run.keys, values)]),
                                             run.rows))  # fmt: skip
                self.bloom.add_sorted(run.keys)
            self.bloom_parts |= covered
            self._merge_runs(self.fresh)
            if sum(run.rows for run in [*self.runs, *self.fresh]) > self.bloom.capacity:
                # Full: a larger filter, so that it stays about as selective as it was.
                old = self.folder / f"{self.bloom_name}.npy"
                self.bloom_name, self.bloom, self.bloom_parts = _new_bloom(
                    self.folder, [*self.runs, *self.fresh]
                )
                old.unlink(missing_ok=True)
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
            runs.append(
                _write_run(self.folder, older.parts | newer.parts, _merge(older, newer),
                           rows=older.rows + newer.rows)
            )  # fmt: skip
            runs.sort(key=lambda run: -run.rows)
            for old in (older, newer):
                _remove_run(self.folder, old.name)

    def _save(self) -> None:
        """Write the index's description atomically (runs, then the filter's coverage)."""
        if isinstance(self.bloom.words, np.memmap):
            self.bloom.words.flush()
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


def _open_run(folder: Path, name: str, parts: frozenset[str]) -> _Run | None:
    """Map a run and read its fences; None when its files are missing or damaged."""
    try:
        keys = np.load(folder / f"{name}.keys.npy", mmap_mode="r")
        values = np.load(folder / f"{name}.values.npy", mmap_mode="r")
        fences = np.load(folder / f"{name}.fences.npy")
    except (OSError, ValueError):
        return None
    if not all(a.ndim == 1 and a.dtype == np.uint64 for a in (keys, values, fences)):
        return None
    if values.shape != keys.shape or fences.shape != ((keys.size + FENCE - 1) // FENCE,):
        return None
    return _Run(name, parts, keys, values, fences)


def _write_run(
    folder: Path,
    parts: frozenset[str],
    pieces: Iterator[tuple[np.ndarray, np.ndarray]],
    rows: int,
) -> _Run:
    """Write sorted records, piece by piece, as a run with its fences; return it, mapped.

    Written through plain file writes (a writable map would keep every page it touched).
    """
    name = f"run-{uuid.uuid4().hex[:12]}"
    paths = {part: folder / f"{name}.{part}.npy" for part in ("keys", "values", "fences")}
    temporary = {part: path.with_suffix(".tmp") for part, path in paths.items()}
    header = {"descr": "<u8", "fortran_order": False, "shape": (rows,)}
    fences: list[np.ndarray] = []
    done = 0
    with temporary["keys"].open("wb") as keys_file, temporary["values"].open("wb") as values_file:
        for handle in (keys_file, values_file):
            np.lib.format.write_array_header_2_0(handle, header)
        for keys, values in pieces:
            # the fences are the hashes at every FENCE-th position of the whole run
            fences.append(keys[(-done) % FENCE :: FENCE])
            keys_file.write(np.ascontiguousarray(keys, dtype=np.uint64).tobytes())
            values_file.write(np.ascontiguousarray(values, dtype=np.uint64).tobytes())
            done += keys.size
    if done != rows:
        raise RuntimeError(f"a run of {rows} records got {done}")
    with temporary["fences"].open("wb") as handle:
        np.save(handle, np.concatenate(fences) if fences else np.empty(0, dtype=np.uint64))
    for part in ("keys", "values", "fences"):
        os.replace(temporary[part], paths[part])
    run = _open_run(folder, name, parts)
    if run is None:
        raise RuntimeError(f"{folder / name}: a run just written cannot be read")
    return run


def _remove_run(folder: Path, name: str) -> None:
    for part in ("keys", "values", "fences"):
        (folder / f"{name}.{part}.npy").unlink(missing_ok=True)


def _new_bloom(folder: Path, runs: list[_Run]) -> tuple[str, _Bloom, set[str]]:
    """Write a filter of every record of `runs`, with room to grow; return it and its parts."""
    name = f"bloom-{uuid.uuid4().hex[:12]}"
    records = sum(run.rows for run in runs)
    words = np.lib.format.open_memmap(
        folder / f"{name}.npy", mode="w+", dtype=np.uint64, shape=(_Bloom.words_for(records),)
    )
    bloom, parts = _Bloom(words), set[str]()
    for run in runs:
        bloom.add_run(run)
        parts |= run.parts
    return name, bloom, parts


def _load_words(path: Path) -> np.ndarray | None:
    """Map a filter's words for update in place (setting bits only ever adds records)."""
    try:
        words = np.load(path, mmap_mode="r+")
    except (OSError, ValueError):
        return None
    return words if words.ndim == 1 and words.dtype == np.uint64 and words.size else None


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
) -> Iterator[tuple[frozenset[str], np.ndarray, np.ndarray]]:
    """Read parts back into sorted runs of at most about RUN_ROWS records each."""
    group: list[str] = []
    keys: list[np.ndarray] = []
    values: list[np.ndarray] = []
    rows = 0
    names = ["record_hash", "delivery_id", *content_columns(source)]
    for path in paths:
        file = pq.ParquetFile(manifest[path], read_dictionary=["kind"])
        table = file.read(columns=[name for name in names if name in file.schema_arrow.names])
        deliveries = pc.fill_null(table["delivery_id"], -1).to_numpy()
        keys.append(table["record_hash"].to_numpy())
        values.append(_packed(content_hashes(table, source), deliveries))
        group.append(path)
        rows += table.num_rows
        if rows >= RUN_ROWS or path == paths[-1]:
            all_keys, all_values = np.concatenate(keys), np.concatenate(values)
            order = np.argsort(all_keys, kind="stable")
            yield frozenset(group), all_keys[order], all_values[order]
            group, keys, values, rows = [], [], [], 0
