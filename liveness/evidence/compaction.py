"""Compaction of the evidence store: one part per (source, month), clustered by person.

Readers scatter traces into per-person arrays about 3.5 times faster when a part is ordered by
person then day, and open one file instead of one per delivery. Compaction writes the merged
part atomically and swaps the manifest rows in the caller's transaction; the replaced files
stay on disk, unreferenced, until `remove_orphans` deletes them after the commit.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from liveness.arrays import union_sorted, unique_sorted
from liveness.db import session_scope
from liveness.evidence.parts import SORTED_KEY, SORTED_VALUE, VOIDED_KIND, part_schema
from liveness.evidence.records.index import replace_parts
from liveness.evidence.store import EvidenceStore
from liveness.evidence.summaries import GROUP_FOLDER, SummaryCache
from models import EvidencePart

__all__ = ["ORPHAN_GRACE", "CompactionResult", "compact", "months_to_compact", "remove_orphans"]

# A file unreferenced for less than this may still be read by a run that listed the manifest
# before the swap, or be a part whose ingest has not committed yet: leave it for next time.
ORPHAN_GRACE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class CompactionResult:
    """What compacting one (source, month) did."""

    source: str
    month: str
    parts_before: int
    rows_before: int
    rows_after: int
    compacted: bool
    part_id: int | None = None


def months_to_compact(
    session: Session, *, source: str | None = None, month: str | None = None
) -> list[tuple[str, str]]:
    """Return the (source, month) pairs in the manifest, optionally only some."""
    query = select(EvidencePart.source, EvidencePart.month).distinct()
    if source is not None:
        query = query.where(EvidencePart.source == source)
    if month is not None:
        query = query.where(EvidencePart.month == month)
    return sorted((str(s), str(m)) for s, m in session.execute(query).all())


def compact(session: Session, *, store: EvidenceStore, source: str, month: str) -> CompactionResult:
    """Merge a (source, month)'s parts into one part sorted by person and day; flush only."""
    parts = list(
        session.scalars(
            select(EvidencePart)
            .where(EvidencePart.source == source, EvidencePart.month == month)
            .order_by(EvidencePart.id)
        )
    )
    rows_before = sum(part.rows for part in parts)
    if not parts or (len(parts) == 1 and _is_sorted(store.path_of(parts[0]))):
        return CompactionResult(
            source=source, month=month, parts_before=len(parts), rows_before=rows_before,
            rows_after=rows_before, compacted=False,
        )  # fmt: skip
    tables = [
        pq.read_table(store.path_of(part), schema=part_schema(source)).append_column(
            "_part", pa.array(np.full(part.rows, order, dtype=np.int32))
        )
        for order, part in enumerate(parts)
    ]
    merged = pa.concat_tables(tables)
    merged = merged.append_column("_row", pa.array(np.arange(merged.num_rows, dtype=np.int64)))
    merged = _apply_corrections(merged)
    merged = _settle_corrections(session, store=store, source=source, month=month, table=merged)
    merged = merged.sort_by(
        [("person_id", "ascending"), ("day", "ascending"), ("event_at", "ascending"),
         ("record_hash", "ascending")]
    ).drop_columns(["_part", "_row"])  # fmt: skip
    linked_through = _linked_through(parts)
    part = store.write_part(
        session, source=source, month=month, table=merged, delivery_id=None,
        sorted_by_person=True, linked_through=linked_through,
    )  # fmt: skip
    for old in parts:
        session.delete(old)
    session.flush()
    # The record index keeps its runs: the new part holds the records of the parts it replaces.
    replace_parts(store.records_folder(source), old=[old.path for old in parts], new=part.path)
    now = time.time()
    for old in parts:
        # The grace period of orphan removal counts from when a file stopped being referenced.
        path = store.path_of(old)
        if path.exists():
            os.utime(path, (now, now))
    return CompactionResult(
        source=source, month=month, parts_before=len(parts), rows_before=rows_before,
        rows_after=merged.num_rows, compacted=True, part_id=part.id,
    )  # fmt: skip


def remove_orphans(
    session: Session,
    *,
    store: EvidenceStore,
    grace: dt.timedelta = ORPHAN_GRACE,
    summaries_before: dt.date | None = None,
) -> list[Path]:
    """Delete store files that no manifest row references and that are older than `grace`.

    Summaries of parts no longer referenced go at once (they are a cache of those parts), and
    with `summaries_before` those of parts whose days all lie before it (no run reads them).
    """
    referenced = {str(Path(path)) for path in session.scalars(select(EvidencePart.path))}
    cutoff = time.time() - grace.total_seconds()
    removed: list[Path] = []
    if not store.root.exists():
        return removed
    for path in sorted(store.root.glob("source=*/month=*/part-*.parquet*")):
        relative = str(path.relative_to(store.root))
        if relative in referenced or path.stat().st_mtime > cutoff:
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    # A summary of a part no longer referenced is dead weight; one still being read by a
    # snapshot that sees the old part is at worst a miss there (the part itself has its grace).
    summaries = SummaryCache(store.root)
    if summaries_before is not None:
        # Parts older than every window stay (they are the record), their summaries need not.
        referenced -= {
            str(Path(path))
            for path in session.scalars(
                select(EvidencePart.path).where(EvidencePart.max_day < summaries_before)
            )
        }
    for path in summaries.summaries():
        if str(summaries.part_of(path)) not in referenced:
            path.unlink(missing_ok=True)
            removed.append(path)
    # Group summaries (one per source and bucket, replaced in place) leave only crashed writes.
    unfinished = [
        *summaries.root.glob("source=*/month=*/.*.tmp"),
        *summaries.root.glob(f"{GROUP_FOLDER}/source=*/.*.tmp"),
    ]
    for path in unfinished:
        if path.stat().st_mtime <= cutoff:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _linked_through(parts: list[EvidencePart]) -> int | None:
    """Return how recently the unlinked traces of merged parts were all tried, None if unknown.

    Parts without unlinked traces do not hold it back: there is nothing in them to retry.
    """
    tried = [part.linked_through for part in parts if part.unlinked_rows != 0]
    if None in tried:
        return None
    return min(s for s in tried if s is not None) if tried else 0


def _is_sorted(path: Path) -> bool:
    """Say whether a part was written clustered by person and day."""
    metadata = pq.read_metadata(path).metadata or {}
    return metadata.get(SORTED_KEY) == SORTED_VALUE


def _apply_corrections(table: pa.Table) -> pa.Table:
    """Keep, of each record with a correction here, only its latest correction."""
    corrected = table["correction"].to_numpy(zero_copy_only=False)
    if not corrected.any():
        return table
    hashes = table["record_hash"].to_numpy()
    replaced = unique_sorted(hashes[corrected])
    affected = np.flatnonzero(np.isin(hashes, replaced) & corrected)
    delivery = pc.fill_null(table["delivery_id"], -1).to_numpy()
    # The latest correction is the one of the newest delivery, then the newest part and row.
    order = np.lexsort(
        (
            -table["_row"].to_numpy()[affected],
            -table["_part"].to_numpy()[affected],
            -delivery[affected].astype(np.int64),
        )
    )
    newest_first = affected[order]
    _, first = np.unique(hashes[newest_first], return_index=True)
    keep = ~np.isin(hashes, replaced)
    keep[newest_first[first]] = True
    return table.filter(pa.array(keep))


def _settle_corrections(
    session: Session, *, store: EvidenceStore, source: str, month: str, table: pa.Table
) -> pa.Table:
    """Clear the correction flag of records with no other version in the store.

    Such a row reads the same as a plain trace, and a source without flagged rows is read
    without checking record hashes at all. A void keeps its flag: it withdraws its record.
    """
    corrected = table["correction"].to_numpy(zero_copy_only=False)
    if not corrected.any():
        return table
    hashes = table["record_hash"].to_numpy()
    elsewhere = [
        pq.read_table(store.path_of(part), columns=["record_hash"])["record_hash"].to_numpy()
        for part in store.parts(session, source=source)
        if part.month != month
    ]
    other = union_sorted(*elsewhere) if elsewhere else np.empty(0, np.uint64)
    voided = pc.equal(table["kind"], VOIDED_KIND).to_numpy(zero_copy_only=False)
    still = corrected & (np.isin(hashes, other) | voided)
    index = table.schema.get_field_index("correction")
    return table.set_column(index, "correction", pa.array(still))


def compact_store(
    sessions: sessionmaker[Session],
    *,
    store: EvidenceStore,
    source: str | None = None,
    month: str | None = None,
) -> list[CompactionResult]:
    """Compact every (source, month) of the store, each in a transaction of its own."""
    with session_scope(sessions) as session:
        pairs = months_to_compact(session, source=source, month=month)
    results = []
    for pair_source, pair_month in pairs:
        with session_scope(sessions) as session:
            results.append(compact(session, store=store, source=pair_source, month=pair_month))
    return results
