"""Part summaries: what the features need of one store part, kept beside the store.

A nightly run reads a year of traces, yet a part of a closed month never changes: its file is
immutable, and its traces count only through the policy's weights and the source's
corrections. So the first run to read such a part as a whole (its days all in one age bucket
of the policy's windows) keeps, per person, the summed weight, the last evidence day and the
last settling day; later runs add these arrays instead of decoding and scattering the traces
again. The summary's name holds the part's file and a key of everything its content depends
on (the source's kinds, weights and settling kinds, and its corrected records), so a summary
is either exact or not found: a changed policy or a new correction is simply a miss.

Summaries are a cache, never a record: losing the folder costs one slower run. A file that
cannot be read is a miss too; writes are atomic (temporary file, rename). They are Arrow IPC
files, uncompressed: written as they lie in memory (a first run keeps about 0.5 GB of them at a
million persons) and read back memory-mapped, without a copy or a checksum pass.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pyarrow as pa

from liveness.scoring import ScoringPolicy
from liveness.scoring.features import PartSummary

__all__ = ["SUMMARY_FOLDER", "SummaryCache", "summary_key"]

SUMMARY_FOLDER = "summaries"
# Bumped whenever what a summary holds or how it is computed changes: old files then miss.
FORMAT = 2
SUFFIX = ".arrow"
# Summaries of an earlier format, kept as NumPy archives: listed only to be removed.
OLD_SUFFIX = ".npz"
# The columns of a summary file, then its trace count in the schema's metadata.
_TRACES = b"traces"
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
        path = self.path_of(part_path, key)
        try:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
            traces = int((table.schema.metadata or {})[_TRACES])
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

    def save(self, part_path: Path, key: str, summary: PartSummary) -> None:
        """Write a part's summary atomically; summaries of other keys for the part go."""
        path = self.path_of(part_path, key)
        columns = {"weight": summary.weight, "last_day": summary.last_day}
        # A source without settling kinds keeps no settling days (the column is absent).
        if summary.settle_day is not None:
            columns["settle_day"] = summary.settle_day
        table = pa.table(
            {name: pa.array(values, type=_COLUMNS[name]) for name, values in columns.items()}
        ).replace_schema_metadata({_TRACES: str(summary.traces).encode()})
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
            with (
                pa.OSFile(str(temporary), "wb") as sink,
                pa.ipc.new_file(sink, table.schema) as writer,
            ):
                writer.write_table(table)
            os.replace(temporary, path)
            for stale in path.parent.glob(f"{path.name.split('.')[0]}.*"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        except OSError:
            # A read-only or full disk costs speed, never a result: the next run reads again.
            return

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
