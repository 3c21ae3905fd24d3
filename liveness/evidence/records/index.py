"""The record index of a source: a batch's records judged against every record stored."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from liveness.evidence.records.contents import judge, version_hashes
from liveness.evidence.records.files import (
    FORMAT,
    _load_words,
    _locked,
    _new_bloom,
    _open_run,
    _read_back,
    _read_meta,
    _remove_run,
    _remove_strays,
    _write_meta,
    _write_run,
)
from liveness.evidence.records.runs import (
    Piece,
    _any_holds,
    _Bloom,
    _k_way,
    _merge_streams,
    _Pending,
    _Run,
)

__all__ = [
    "RECORDS_FOLDER",
    "RecordIndex",
    "Verdict",
    "replace_parts",
]

RECORDS_FOLDER = "records"


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
