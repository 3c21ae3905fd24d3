"""The record index's folder: its lock, its description, and the run and filter files in it."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from liveness.evidence.records.contents import content_columns, content_hashes, version_hashes
from liveness.evidence.records.runs import _ROLES, FENCE, _array, _Bloom, _read, _Run

try:  # POSIX; elsewhere a second process may rebuild the index alongside, which stays correct
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

# Bumped whenever what the index holds or how a content is hashed changes: the index rebuilds.
FORMAT = 2
# Records read back into one run at a time.
RUN_ROWS = 8_000_000


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
