"""Part summaries: what the features need of one store part, kept beside the store.

A nightly run reads a year of traces, yet a part of a closed month never changes: its file is
immutable, and its traces count only through the policy's weights and the source's
corrections. So the first run to read such a part as a whole (its days all in one age bucket
of the policy's windows) keeps, per person, the summed weight, the last evidence day and the
last settling day; later runs add these arrays instead of decoding and scattering the traces
again. The summary's name holds the part's file and a key of everything its content depends
on (the source's kinds, weights and settling kinds, and its corrected records), so a summary
is either exact or not found: a changed policy or a new correction is simply a miss.

Where several parts of a source lie in one age bucket (the months between two window edges),
their summaries' sum is kept too, as a group summary (`load_group`, `save_group`): a night
then adds one array per source and bucket instead of one per month. Its name is the source
and bucket; it holds a digest of its parts and their key, so it is exact for those parts in
that order or not used.

Summaries are a cache, never a record: losing the folder costs one slower run. A file that
cannot be read is a miss too; writes are atomic (temporary file, rename). They are Arrow IPC
files, uncompressed: written as they lie in memory (a first run keeps about 0.5 GB of them at a
million persons) and read back memory-mapped, without a copy or a checksum pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path

import pyarrow as pa

from liveness.scoring import ScoringPolicy
from liveness.scoring.features import PartSummary

__all__ = ["GROUP_FOLDER", "SUMMARY_FOLDER", "SummaryCache", "summary_key"]

SUMMARY_FOLDER = "summaries"
# Inside SUMMARY_FOLDER: the group summaries, one file per source and age bucket.
GROUP_FOLDER = "groups"
# Bumped whenever what a summary holds or how it is computed changes: old files then miss.
FORMAT = 2
SUFFIX = ".arrow"
# Summaries of an earlier format, kept as NumPy archives: listed only to be removed.
OLD_SUFFIX = ".npz"
# The columns of a summary file, then its trace count in the schema's metadata.
_TRACES = b"traces"
# A group summary's digest of its parts and key, in the schema's metadata.
_MEMBERS = b"members"
_COLUMNS = {"weight": pa.float64(), "last_day": pa.int32(), "settle_day": pa.int32()}


def summary_key(policy: ScoringPolicy, *, source: str, corrections_key: str) -> str:
    """Return the key of a source's summaries under `policy` and its corrected records."""
    kinds = [
        f"{kind}={float(policy.weight_of_kind[code])!r}:{bool(policy.settles_of_kind[code])}"
        for code, (kind_source, kind) in enumerate(policy.kinds)
        if kind_source == source
    ]
    text = "|".join([str(FORMAT), source, *kinds, corrections_key])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SummaryCache:
    """The summaries of an evidence store's parts, in a folder beside the parts."""

    def __init__(self, store_root: Path) -> None:
        self.store_root = store_root
        self.root = store_root / SUMMARY_FOLDER

    def path_of(self, part_path: Path, key: str) -> Path:
        """Return the file of a part's summary under one key."""
        relative = part_path.relative_to(self.store_root).with_suffix("")
        return self.root / relative.parent / f"{relative.name}.{key}{SUFFIX}"

    def load(self, part_path: Path, key: str) -> PartSummary | None:
        """Return a part's summary under `key`, or None when there is none to trust."""
        return _read(self.path_of(part_path, key))

    def save(self, part_path: Path, key: str, summary: PartSummary) -> None:
        """Write a part's summary atomically; summaries of other keys for the part go."""
        path = self.path_of(part_path, key)
        if not _write(path, summary):
            return
        with contextlib.suppress(OSError):
            for stale in path.parent.glob(f"{path.name.split('.')[0]}.*"):
                if stale != path:
                    stale.unlink(missing_ok=True)

    def group_path(self, source: str, bucket: int) -> Path:
        """Return the file of the group summary of a source's parts in one age bucket."""
        return self.root / GROUP_FOLDER / f"source={source}" / f"bucket-{bucket}{SUFFIX}"

    def load_group(
        self, source: str, bucket: int, *, key: str, parts: list[Path]
    ) -> PartSummary | None:
        """Return the sum of `parts`' summaries under `key`, kept as a group, or None."""
        return _read(self.group_path(source, bucket), members=self._members(key, parts))

    def save_group(
        self, source: str, bucket: int, *, key: str, parts: list[Path], summary: PartSummary
    ) -> None:
        """Keep `summary` as the sum of `parts`' summaries under `key` (replacing the last)."""
        _write(self.group_path(source, bucket), summary, members=self._members(key, parts))

    def _members(self, key: str, parts: list[Path]) -> bytes:
        """Return the digest of a group's key and its parts, in their order."""
        names = [str(part.relative_to(self.store_root)) for part in parts]
        return hashlib.sha256("\n".join([key, *names]).encode()).hexdigest().encode()

    def summaries(self) -> list[Path]:
        """Return every summary file, for the removal of those whose part is gone."""
        if not self.root.exists():
            return []
        return sorted(
            path
            for suffix in (SUFFIX, OLD_SUFFIX)
            for path in self.root.glob(f"source=*/month=*/*{suffix}")
        )

    def part_of(self, summary_path: Path) -> Path:
        """Return the store-relative path of the part a summary file belongs to."""
        relative = summary_path.relative_to(self.root)
        return relative.parent / f"{relative.name.split('.')[0]}.parquet"


def _read(path: Path, *, members: bytes | None = None) -> PartSummary | None:
    """Return the summary in `path`, or None when there is none to trust.

    With `members`, only a group summary of exactly those members is returned.
    """
    try:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        metadata = table.schema.metadata or {}
        traces = int(metadata[_TRACES])
        if members is not None and metadata.get(_MEMBERS) != members:
            return None
        if any(table.schema.field(name).type != _COLUMNS[name] for name in table.column_names):
            return None
        # Read-only views of the mapped file: adding a summary only reads it.
        columns = {name: table[name].to_numpy() for name in table.column_names}
        weight, last_day = columns["weight"], columns["last_day"]
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    settle_day = columns.get("settle_day")
    if weight.shape != last_day.shape or (
        settle_day is not None and settle_day.shape != weight.shape
    ):
        return None
    return PartSummary(weight=weight, last_day=last_day, settle_day=settle_day, traces=traces)


def _write(path: Path, summary: PartSummary, *, members: bytes | None = None) -> bool:
    """Write a summary atomically; return whether it was written."""
    columns = {"weight": summary.weight, "last_day": summary.last_day}
    # A source without settling kinds keeps no settling days (the column is absent).
    if summary.settle_day is not None:
        columns["settle_day"] = summary.settle_day
    metadata = {_TRACES: str(summary.traces).encode()}
    if members is not None:
        metadata[_MEMBERS] = members
    table = pa.table(
        {name: pa.array(values, type=_COLUMNS[name]) for name, values in columns.items()}
    ).replace_schema_metadata(metadata)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(temporary, path)
    except OSError:
        # A read-only or full disk costs speed, never a result: the next run reads again.
        return False
    return True
