"""Append-only Parquet store of traces, partitioned by source and month.

A part is written to a temporary file, renamed into place, and only then entered in the
`evidence_parts` manifest inside the caller's transaction: a part whose transaction rolled back
is an orphan file that no reader sees, so a crashed ingest publishes nothing.

A correction row (`correction=true`) replaces every earlier version of its record, wherever
that version is stored: readers drop all versions of a corrected record and add back its
latest correction (by delivery, then manifest order, then row order) if it lies in the window.
A latest correction of kind `voided` withdraws the record: nothing is added back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from liveness.evidence.records.index import RECORDS_FOLDER, RecordIndex
from liveness.identity.keys import pandas_string_hashes
from models import EvidencePart

EPOCH = dt.date(1970, 1, 1)

EVIDENCE_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),
        ("record_hash", pa.uint64()),
        ("person_id", pa.int32()),
        ("day", pa.int32()),
        ("event_at", pa.timestamp("s", tz="UTC")),
        ("kind", pa.string()),
        ("link", pa.string()),
        ("link_key", pa.string()),
        ("delivery_id", pa.int32()),
        ("correction", pa.bool_()),
    ]
)
# The kind of a correction by which a source withdraws a record (`voided=true`).
VOIDED_KIND = "voided"
# Columns only one source's parts carry, after the common ones: the face template that
# matched a verification, the outcome of a medical discharge (part of a record's content: see
# liveness.evidence.records). Parts written before a column existed lack it; readers see nulls.
SOURCE_COLUMNS: dict[str, tuple[pa.Field, ...]] = {
    "face": (pa.field("face_id", pa.string()),),
    "medical": (pa.field("discharge_outcome", pa.string()),),
}
# Written into the footer of parts sorted by person then day: readers then find each
# person's last day at the end of their run instead of scattering every trace.
SORTED_KEY = b"liveness.sorted_by"
SORTED_VALUE = b"person_id,day"
# Rows decoded at a time: bounds a reader's memory whatever the size of a part.
BATCH_ROWS = 4_000_000
# Rows per Parquet row group in written parts.
ROW_GROUP_ROWS = 1 << 20
# Rows a DeliveryWriter holds in memory across its months before writing the largest month's.
WRITER_BUFFER_ROWS = 2 * ROW_GROUP_ROWS
# Only these columns repeat enough for a Parquet dictionary to pay: trying one on record ids
# and card numbers costs more time than compressing them.
DICTIONARY_COLUMNS = ["kind", "link", "day", "delivery_id", "correction", "discharge_outcome"]


def day_number(day: dt.date) -> int:
    """Return `day` as days since 1970-01-01, the store's day unit."""
    return (day - EPOCH).days


def day_from_number(number: int) -> dt.date:
    """Return the date of a store day number."""
    return EPOCH + dt.timedelta(days=int(number))


def record_hashes(record_ids: pd.Series) -> np.ndarray:
    """Return a stable 64-bit hash per record id, the key of re-delivery checks.

    The values are pandas' `hash_array` of the ids as Python strings, which stored parts
    hold. Text columns as the connectors give them (Arrow-backed, no missing id) are hashed
    to the same values in numpy, without making a Python object per id.
    """
    if isinstance(record_ids.dtype, pd.StringDtype) and not record_ids.hasnans:
        strings = pa.array(record_ids.array)
        if pa.types.is_string(strings.type) or pa.types.is_large_string(strings.type):
            return pandas_string_hashes(strings)
    values = record_ids.astype(object).to_numpy()
    return pd.util.hash_array(values, categorize=False)


def unlinked_count(table: pa.Table) -> int:
    """Return how many of a table's traces matched nobody (person_id -1)."""
    return int(pc.sum(pc.less(table["person_id"], 0)).as_py() or 0)


def part_schema(source: str) -> pa.Schema:
    """Return the schema of `source`'s parts: the common columns, then the source's own."""
    extra = SOURCE_COLUMNS.get(source)
    return EVIDENCE_SCHEMA if extra is None else pa.schema([*EVIDENCE_SCHEMA, *extra])


def with_source_columns(table: pa.Table, source: str) -> pa.Table:
    """Return `table` with the source's own columns it lacks added as nulls."""
    for field in SOURCE_COLUMNS.get(source, ()):
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table


def month_of(day: dt.date) -> str:
    """Return the store month label (YYYY-MM) of a day."""
    return f"{day.year:04d}-{day.month:02d}"


@dataclass(frozen=True)
class TraceWindow:
    """Traces of one source read from the store, as aligned arrays.

    `kind` holds codes into the vocabulary the caller asked for; -1 is a kind outside it.
    `person_id` is -1 for traces that matched nobody. `sorted_by_person` says the batch is
    ordered by person then day.
    """

    source: str
    person_id: npt.NDArray[np.int32]
    day: npt.NDArray[np.int32]
    kind: npt.NDArray[np.int16]
    sorted_by_person: bool = False

    def __len__(self) -> int:
        return int(self.person_id.shape[0])


@dataclass(frozen=True)
class _Corrections:
    """The latest correction of every corrected record of one source."""

    hashes: npt.NDArray[np.uint64]
    latest: pa.Table


@dataclass(frozen=True)
class WindowPart:
    """One part of a window read: its file and the range of its days (store day numbers)."""

    path: Path
    min_day: int
    max_day: int


@dataclass(frozen=True, eq=False)
class WindowPlan:
    """What a window read of one source needs: its parts and its corrections.

    Reads only files: it may be read in another thread than the session that made it.
    """

    store: EvidenceStore
    source: str
    parts: list[WindowPart]
    corrections: _Corrections | None
    code_of: dict[str, int]
    low: int
    high: int

    def inside(self, part: WindowPart) -> bool:
        """Say whether every day of `part` lies in the window."""
        return part.min_day >= self.low and part.max_day <= self.high

    def corrections_key(self) -> str:
        """Return a digest of the source's corrected records: what a part's reading depends on.

        A part's traces are its rows less those of corrected records, so whatever is derived
        from reading one part stays exact while this key (and the part's file) is unchanged.
        """
        if self.corrections is None:
            return "none"
        return hashlib.sha256(self.corrections.hashes.tobytes()).hexdigest()[:16]

    def batches(self) -> Iterator[TraceWindow]:
        """Yield every batch of the window: each part's, then the corrections'."""
        for part in self.parts:
            yield from self.read_part(part)
        yield from self.read_corrections()

    def read_part(self, part: WindowPart) -> Iterator[TraceWindow]:
        """Yield one part's traces in the window, corrected records left out, in batches."""
        wanted = ["person_id", "day", "kind"]
        if self.corrections is not None:
            wanted.append("record_hash")
        inside = self.inside(part)
        for table, clustered in self.store.row_group_batches(
            part.path, wanted, low=self.low, high=self.high
        ):
            if not inside:
                table = table.filter(_in_window(table["day"], self.low, self.high))
            if self.corrections is not None:
                table = table.filter(_not_corrected(table["record_hash"], self.corrections.hashes))
            yield _trace_window(self.source, table, self.code_of, sorted_by_person=clustered)

    def read_corrections(self) -> Iterator[TraceWindow]:
        """Yield the latest correction of each corrected record, where it lies in the window."""
        if self.corrections is None:
            return
        latest = self.corrections.latest.select(["person_id", "day", "kind"])
        latest = latest.filter(_in_window(latest["day"], self.low, self.high))
        if latest.num_rows:
            yield _trace_window(self.source, latest, self.code_of, sorted_by_person=False)


class EvidenceStore:
    """The Parquet evidence store rooted at one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, part: EvidencePart) -> Path:
        """Return the file of a manifest entry."""
        return self.root / part.path

    def write_part(
        self,
        session: Session,
        *,
        source: str,
        month: str,
        table: pa.Table,
        delivery_id: int | None,
        sorted_by_person: bool = False,
        linked_through: int | None = None,
    ) -> EvidencePart:
        """Write `table` atomically as one part of (source, month) and add its manifest row."""
        path = self.write_file(
            source=source, month=month, table=table, delivery_id=delivery_id,
            sorted_by_person=sorted_by_person,
        )  # fmt: skip
        days = table["day"]
        part = EvidencePart(
            source=source,
            month=month,
            path=str(path.relative_to(self.root)),
            rows=table.num_rows,
            min_day=day_from_number(pc.min(days).as_py()),
            max_day=day_from_number(pc.max(days).as_py()),
            delivery_id=delivery_id,
            unlinked_rows=unlinked_count(table),
            linked_through=linked_through,
        )
        session.add(part)
        return part

    def write_file(
        self,
        *,
        source: str,
        month: str,
        table: pa.Table,
        delivery_id: int | None,
        sorted_by_person: bool = False,
    ) -> Path:
        """Write `table` atomically as a new file of (source, month); no manifest row yet."""
        folder = self.root / f"source={source}" / f"month={month}"
        folder.mkdir(parents=True, exist_ok=True)
        tag = "compact" if delivery_id is None else f"{delivery_id:08d}"
        final = folder / f"part-{tag}-{uuid.uuid4().hex[:12]}.parquet"
        temporary = final.with_suffix(".parquet.tmp")
        schema = part_schema(source)
        table = with_source_columns(table, source).select(schema.names).cast(schema)
        if not sorted_by_person:
            pq.write_table(table, temporary, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            os.replace(temporary, final)
            return final
        table = table.replace_schema_metadata({SORTED_KEY: SORTED_VALUE})
        # Sorted by person, the traces that matched nobody (-1) come first: given row groups
        # of their own, a relink reads them and nothing else (see liveness.ingest.relink).
        unlinked = unlinked_count(table)
        with pq.ParquetWriter(temporary, table.schema, compression="zstd") as writer:
            for rows in (table.slice(0, unlinked), table.slice(unlinked)):
                if rows.num_rows:
                    writer.write_table(rows, row_group_size=ROW_GROUP_ROWS)
        os.replace(temporary, final)
        return final

    def append(
        self, session: Session, *, source: str, traces: pd.DataFrame | pa.Table, delivery_id: int
    ) -> list[EvidencePart]:
        """Write `traces` (columns of EVIDENCE_SCHEMA) as one part per month; flush the manifest."""
        writer = self.delivery_writer(source=source, delivery_id=delivery_id)
        try:
            writer.add(_as_table(traces, source))
            return writer.finish(session)
        finally:
            writer.abort()

    def delivery_writer(self, *, source: str, delivery_id: int) -> DeliveryWriter:
        """Return a writer that stores one delivery's traces as one part per month."""
        return DeliveryWriter(self, source=source, delivery_id=delivery_id)

    def parts(
        self,
        session: Session,
        *,
        source: str,
        first_day: dt.date | None = None,
        last_day: dt.date | None = None,
        unlinked_only: bool = False,
    ) -> list[EvidencePart]:
        """Return the manifest entries of `source` that may hold days in the window.

        With `unlinked_only`, only those that may hold traces that matched nobody.
        """
        query = select(EvidencePart).where(EvidencePart.source == source)
        if unlinked_only:
            query = query.where(
                or_(EvidencePart.unlinked_rows.is_(None), EvidencePart.unlinked_rows > 0)
            )
        if first_day is not None:
            query = query.where(EvidencePart.max_day >= first_day)
        if last_day is not None:
            query = query.where(EvidencePart.min_day <= last_day)
        return list(session.scalars(query.order_by(EvidencePart.id)))

    def scan(
        self,
        session: Session,
        *,
        source: str,
        columns: Sequence[str],
        first_day: dt.date | None = None,
        last_day: dt.date | None = None,
        unlinked_only: bool = False,
    ) -> Iterator[pa.Table]:
        """Yield `columns` of `source`'s traces in the window batch by batch, corrections applied.

        `kind` comes dictionary-encoded, as stored: map it through its dictionary. With
        `unlinked_only`, parts without traces that matched nobody are skipped (the batches
        still hold linked traces: filter them).
        """
        corrections = self._corrections(session, source=source)
        wanted = list(dict.fromkeys([*columns, "day"]))
        if corrections is not None:
            wanted.append("record_hash")
        low = -(2**31) if first_day is None else day_number(first_day)
        high = 2**31 - 1 if last_day is None else day_number(last_day)
        for part in self.parts(
            session, source=source, first_day=first_day, last_day=last_day,
            unlinked_only=unlinked_only,
        ):  # fmt: skip
            inside = day_number(part.min_day) >= low and day_number(part.max_day) <= high
            for table, _ in self.row_group_batches(self.path_of(part), wanted, low=low, high=high):
                if not inside:
                    table = table.filter(_in_window(table["day"], low, high))
                if corrections is not None:
                    table = table.filter(_not_corrected(table["record_hash"], corrections.hashes))
                yield with_source_columns(table, source).select(list(columns))
        if corrections is not None:
            latest = corrections.latest
            latest = latest.filter(_in_window(latest["day"], low, high))
            if latest.num_rows:
                yield latest.select(list(columns))

    def read_table(
        self,
        session: Session,
        *,
        source: str,
        columns: list[str],
        first_day: dt.date | None = None,
        last_day: dt.date | None = None,
        unlinked_only: bool = False,
    ) -> pa.Table:
        """Read `columns` of `source`'s traces within the window, corrections applied.

        With `unlinked_only`, only the traces that matched nobody (person_id -1).
        """
        wanted = list(dict.fromkeys([*columns, "person_id"])) if unlinked_only else columns
        batches = self.scan(
            session, source=source, columns=wanted, first_day=first_day, last_day=last_day,
            unlinked_only=unlinked_only,
        )  # fmt: skip
        tables = [
            table.filter(pc.less(table["person_id"], 0)).select(columns).combine_chunks()
            if unlinked_only
            else table.combine_chunks()
            for table in batches
        ]
        schema = part_schema(source)
        if not tables:
            return schema.empty_table().select(columns)
        table = pa.concat_tables([_decoded(t) for t in tables])
        return table.cast(pa.schema([schema.field(name) for name in columns]))

    def read_window(
        self,
        session: Session,
        *,
        source: str,
        first_day: dt.date,
        last_day: dt.date,
        kinds: Mapping[str, int],
    ) -> Iterator[TraceWindow]:
        """Yield the person, day and kind code of `source`'s traces within the window, in batches.

        `kinds` gives the code of each known kind. Kinds are mapped through each chunk's
        dictionary, never decoded row by row; an unknown kind gets -1.
        """
        plan = self.window_plan(
            session, source=source, first_day=first_day, last_day=last_day, kinds=kinds
        )
        yield from plan.batches()

    def window_plan(
        self,
        session: Session,
        *,
        source: str,
        first_day: dt.date,
        last_day: dt.date,
        kinds: Mapping[str, int],
    ) -> WindowPlan:
        """Return the parts and corrections a window read needs, every database query made.

        The plan only reads files, so it may be read in another thread than the session's.
        """
        # Plain values, so that the reading thread never touches an ORM object.
        parts = [
            WindowPart(
                path=self.path_of(part),
                min_day=day_number(part.min_day),
                max_day=day_number(part.max_day),
            )
            for part in self.parts(session, source=source, first_day=first_day, last_day=last_day)
        ]
        return WindowPlan(
            store=self, source=source, parts=parts,
            corrections=self._corrections(session, source=source), code_of=dict(kinds),
            low=day_number(first_day), high=day_number(last_day),
        )  # fmt: skip

    def record_index(self, session: Session, *, source: str) -> RecordIndex:
        """Return the index of every record `source` holds, brought up to the manifest."""
        manifest = {part.path: self.path_of(part) for part in self.parts(session, source=source)}
        return RecordIndex.open(self.records_folder(source), source=source, manifest=manifest)

    def records_folder(self, source: str) -> Path:
        """Return the folder of `source`'s record index, beside the parts."""
        return self.root / RECORDS_FOLDER / f"source={source}"

    def row_group_batches(
        self, path: Path, columns: list[str], *, low: int, high: int
    ) -> Iterator[tuple[pa.Table, bool]]:
        """Yield a part's row groups that may hold days in [low, high], a few at a time."""
        file = pq.ParquetFile(path, read_dictionary=["kind"])
        metadata = file.metadata
        clustered = (metadata.metadata or {}).get(SORTED_KEY) == SORTED_VALUE
        day_column = file.schema_arrow.get_field_index("day")
        group: list[int] = []
        rows = 0
        for index in range(metadata.num_row_groups):
            stats = metadata.row_group(index).column(day_column).statistics
            # Row groups whose days all fall outside the window are never decoded.
            if stats is not None and stats.has_min_max and (stats.max < low or stats.min > high):
                continue
            group.append(index)
            rows += metadata.row_group(index).num_rows
            if rows >= BATCH_ROWS:
                yield file.read_row_groups(group, columns=columns), clustered
                group, rows = [], 0
        if group:
            yield file.read_row_groups(group, columns=columns), clustered

    def _corrections(self, session: Session, *, source: str) -> _Corrections | None:
        """Return the latest correction of each corrected record of `source`, or None."""
        found: list[pa.Table] = []
        for order, part in enumerate(self.parts(session, source=source)):
            if not _may_hold_corrections(self.path_of(part)):
                continue
            table = pq.read_table(
                self.path_of(part),
                read_dictionary=["kind"],
                filters=pc.field("correction") == pa.scalar(True),
            )
            # Older parts of a source may lack its own columns: align before concatenating.
            table = with_source_columns(table, source).select(part_schema(source).names)
            if table.num_rows:
                found.append(
                    table.append_column("_part", pa.array(np.full(table.num_rows, order)))
                    .append_column("_row", pa.array(np.arange(table.num_rows)))
                    .combine_chunks()
                )
        if not found:
            return None
        table = pa.concat_tables([_decoded(t) for t in found])
        delivery = pc.fill_null(table["delivery_id"], -1)
        table = table.set_column(
            table.schema.get_field_index("delivery_id"), "delivery_id", delivery
        )
        # Newest first, then the first row of each record is its latest correction.
        table = table.sort_by(
            [("delivery_id", "descending"), ("_part", "descending"), ("_row", "descending")]
        )
        hashes = table["record_hash"].to_numpy()
        _, first = np.unique(hashes, return_index=True)
        latest = table.take(pa.array(np.sort(first))).drop_columns(["_part", "_row"])
        latest = latest.filter(pc.fill_null(pc.not_equal(latest["kind"], VOIDED_KIND), True))
        return _Corrections(hashes=np.unique(hashes), latest=latest)


def _as_table(traces: pd.DataFrame | pa.Table, source: str) -> pa.Table:
    """Return traces as a table of the source's part schema (its own columns may be absent)."""
    present = set(traces.columns if isinstance(traces, pd.DataFrame) else traces.column_names)
    schema = pa.schema(
        [f for f in part_schema(source) if f.name in EVIDENCE_SCHEMA.names or f.name in present]
    )
    names = schema.names
    if isinstance(traces, pd.DataFrame):
        return pa.Table.from_pandas(traces[names], schema=schema, preserve_index=False)
    return traces.select(names).cast(schema)


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


def _may_hold_corrections(path: Path) -> bool:
    """Say from a part's footer statistics whether any of its rows is a correction."""
    metadata = pq.read_metadata(path)
    column = metadata.schema.to_arrow_schema().get_field_index("correction")
    for index in range(metadata.num_row_groups):
        stats = metadata.row_group(index).column(column).statistics
        if stats is None or not stats.has_min_max or stats.max:
            return True
    return False


def _in_window(days: pa.ChunkedArray | pa.Array, low: int, high: int) -> pa.ChunkedArray:
    """Return whether each day lies in [low, high]."""
    return pc.and_(pc.greater_equal(days, low), pc.less_equal(days, high))


def _not_corrected(hashes: pa.ChunkedArray, corrected: npt.NDArray[np.uint64]) -> pa.Array:
    """Return whether each row's record has no correction anywhere."""
    values = hashes.to_numpy()
    at = np.minimum(np.searchsorted(corrected, values), corrected.size - 1)
    return pa.array(corrected[at] != values)


def _decoded(table: pa.Table) -> pa.Table:
    """Return `table` with a dictionary-encoded kind turned back into plain strings."""
    if "kind" not in table.column_names or not pa.types.is_dictionary(table["kind"].type):
        return table
    index = table.schema.get_field_index("kind")
    return table.set_column(index, "kind", table["kind"].cast(pa.string()))


def _trace_window(
    source: str, table: pa.Table, code_of: dict[str, int], *, sorted_by_person: bool
) -> TraceWindow:
    """Turn a (person_id, day, kind) table into arrays, kinds coded through their dictionary."""
    codes = [_kind_codes(chunk, code_of) for chunk in table["kind"].chunks]
    return TraceWindow(
        source=source,
        person_id=table["person_id"].to_numpy().astype(np.int32, copy=False),
        day=table["day"].to_numpy().astype(np.int32, copy=False),
        kind=np.concatenate(codes) if codes else np.empty(0, dtype=np.int16),
        sorted_by_person=sorted_by_person,
    )


def _kind_codes(chunk: pa.Array, code_of: dict[str, int]) -> npt.NDArray[np.int16]:
    """Map one chunk of kinds to codes; only its dictionary is looked at as strings."""
    if not isinstance(chunk, pa.DictionaryArray):
        chunk = chunk.dictionary_encode()
    dictionary = chunk.dictionary.to_pylist()
    # The extra last entry is the code of a missing kind.
    lookup = np.array([code_of.get(kind, -1) for kind in dictionary] + [-1], dtype=np.int16)
    indices = pc.fill_null(chunk.indices, len(dictionary)).to_numpy()
    return lookup[indices]
