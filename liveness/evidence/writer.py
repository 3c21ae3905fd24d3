"""Writing one delivery's traces into the evidence store, a part per month, as they come."""

from __future__ import annotations

import contextlib
import os
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from liveness.evidence.parts import (
    ROW_GROUP_ROWS,
    day_from_number,
    part_schema,
    unlinked_count,
    with_source_columns,
)
from models import EvidencePart

if TYPE_CHECKING:
    from liveness.evidence.store import EvidenceStore

# Rows a DeliveryWriter holds in memory across its months before writing the largest month's.
WRITER_BUFFER_ROWS = 2 * ROW_GROUP_ROWS
# Only these columns repeat enough for a Parquet dictionary to pay: trying one on record ids
# and card numbers costs more time than compressing them.
DICTIONARY_COLUMNS = ["kind", "link", "day", "delivery_id", "correction", "discharge_outcome"]


@dataclass
class _OpenPart:
    """One month's part of a delivery while it is being written."""

    month: str
    temporary: Path
    final: Path
    writer: pq.ParquetWriter
    buffered: list[pa.Table] = dataclass_field(default_factory=list)
    buffered_rows: int = 0
    rows: int = 0
    unlinked: int = 0
    min_day: int = 2**31 - 1
    max_day: int = -(2**31)


class DeliveryWriter:
    """Store one delivery's traces as one Parquet part per month, written as they come.

    Batches are buffered per month and written as row groups of about ROW_GROUP_ROWS rows on
    a background thread (Arrow encodes and compresses without holding the GIL, so the next
    batch is linked meanwhile), with at most WRITER_BUFFER_ROWS rows held in memory. Parts
    keep their temporary names until `finish`, which renames them and adds their manifest
    rows to the caller's transaction: until that commits, readers see none of them.
    """

    def __init__(self, store: EvidenceStore, *, source: str, delivery_id: int) -> None:
        self.store = store
        self.source = source
        self.delivery_id = delivery_id
        self.schema = part_schema(source)
        self._parts: dict[str, _OpenPart] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-writer")
        self._pending: list[Future[None]] = []
        self._buffered_rows = 0

    def add(self, traces: pa.Table) -> None:
        """Buffer `traces` (the part schema's columns; the source's own may be absent)."""
        if traces.num_rows == 0:
            return
        table = with_source_columns(traces, self.source).select(self.schema.names)
        table = table.cast(self.schema)
        days = table["day"].to_numpy()
        months = days.astype("datetime64[D]").astype("datetime64[M]")
        first, last = months.min(), months.max()
        for month in [first] if first == last else np.unique(months):
            rows = table if first == last else table.filter(pa.array(months == month))
            part = self._part(str(month))
            lows = days if first == last else days[months == month]
            part.min_day = min(part.min_day, int(lows.min()))
            part.max_day = max(part.max_day, int(lows.max()))
            part.buffered.append(rows)
            part.buffered_rows += rows.num_rows
            part.unlinked += unlinked_count(rows)
            self._buffered_rows += rows.num_rows
            if part.buffered_rows >= ROW_GROUP_ROWS:
                self._flush(part)
        while self._buffered_rows > WRITER_BUFFER_ROWS:
            self._flush(max(self._parts.values(), key=lambda p: p.buffered_rows))

    def finish(self, session: Session, *, linked_through: int | None = None) -> list[EvidencePart]:
        """Write what is buffered, close and publish every part in `session`; flush.

        `linked_through` is the newest roll or card delivery the traces were linked against.
        """
        for part in self._parts.values():
            self._flush(part)
        self._wait(0)
        self._pool.shutdown()
        manifest: list[EvidencePart] = []
        for part in self._parts.values():
            part.writer.close()
            os.replace(part.temporary, part.final)
            manifest.append(
                EvidencePart(
                    source=self.source,
                    month=part.month,
                    path=str(part.final.relative_to(self.store.root)),
                    rows=part.rows,
                    min_day=day_from_number(part.min_day),
                    max_day=day_from_number(part.max_day),
                    delivery_id=self.delivery_id,
                    unlinked_rows=part.unlinked,
                    linked_through=linked_through,
                )
            )
        self._parts.clear()
        session.add_all(manifest)
        session.flush()
        return manifest

    def abort(self) -> None:
        """Drop every part not yet published, temporary files included."""
        self._pool.shutdown(cancel_futures=True)
        for part in self._parts.values():
            # The file is removed below whatever state closing leaves it in.
            with contextlib.suppress(OSError, pa.ArrowException):
                part.writer.close()
            part.temporary.unlink(missing_ok=True)
        self._parts.clear()

    def _part(self, month: str) -> _OpenPart:
        part = self._parts.get(month)
        if part is None:
            folder = self.store.root / f"source={self.source}" / f"month={month}"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"part-{self.delivery_id:08d}-{uuid.uuid4().hex[:12]}.parquet"
            temporary = final.with_suffix(".parquet.tmp")
            writer = pq.ParquetWriter(
                temporary, self.schema, compression="zstd", use_dictionary=DICTIONARY_COLUMNS
            )
            part = self._parts[month] = _OpenPart(month, temporary, final, writer)
        return part

    def _flush(self, part: _OpenPart) -> None:
        """Hand a month's buffered rows to the writing thread as one row group."""
        if not part.buffered:
            return
        table = pa.concat_tables(part.buffered)
        part.rows += table.num_rows
        self._buffered_rows -= part.buffered_rows
        part.buffered, part.buffered_rows = [], 0
        # One write at a time in flight: the rows waiting for it are bounded too.
        self._wait(1)
        self._pending.append(
            self._pool.submit(part.writer.write_table, table, row_group_size=ROW_GROUP_ROWS)
        )

    def _wait(self, keep: int) -> None:
        """Wait until at most `keep` writes are in flight, raising a write's error."""
        while len(self._pending) > keep:
            self._pending.pop(0).result()
