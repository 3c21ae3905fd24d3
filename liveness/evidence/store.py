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

import datetime as dt
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from liveness.arrays import unique_sorted
from liveness.evidence.parts import (
    EVIDENCE_SCHEMA,
    ROW_GROUP_ROWS,
    SORTED_KEY,
    SORTED_VALUE,
    VOIDED_KIND,
    day_from_number,
    day_number,
    part_schema,
    unlinked_count,
    with_source_columns,
)
from liveness.evidence.records.index import RECORDS_FOLDER, RecordIndex
from liveness.evidence.windows import (
    TraceWindow,
    WindowPart,
    WindowPlan,
    _Corrections,
    _in_window,
    _not_corrected,
)
from liveness.evidence.writer import DeliveryWriter
from models import EvidencePart

if TYPE_CHECKING:
    from liveness.evidence.engines import FeatureEngine

# Rows decoded at a time: bounds a reader's memory whatever the size of a part.
BATCH_ROWS = 4_000_000


class EvidenceStore:
    """The Parquet evidence store rooted at one folder."""

    def __init__(self, root: Path, *, engine: FeatureEngine | None = None) -> None:
        self.root = root
        # What computes features from this store (None: the local engine, on this machine).
        self.engine = engine

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
        persons: tuple[int, int] | None = None,
    ) -> Iterator[pa.Table]:
        """Yield `columns` of `source`'s traces in the window batch by batch, corrections applied.

        `kind` comes dictionary-encoded, as stored: map it through its dictionary. With
        `unlinked_only`, parts without traces that matched nobody are skipped (the batches
        still hold linked traces: filter them). With `persons` (ids [lo, hi)), only their
        traces, and of a part clustered by person only the row groups that may hold them are
        decoded.
        """
        corrections = self._corrections(session, source=source)
        wanted = list(dict.fromkeys([*columns, "day"]))
        if corrections is not None:
            wanted.append("record_hash")
        if persons is not None:
            wanted = list(dict.fromkeys([*wanted, "person_id"]))
        low = -(2**31) if first_day is None else day_number(first_day)
        high = 2**31 - 1 if last_day is None else day_number(last_day)
        for part in self.parts(
            session, source=source, first_day=first_day, last_day=last_day,
            unlinked_only=unlinked_only,
        ):  # fmt: skip
            inside = day_number(part.min_day) >= low and day_number(part.max_day) <= high
            for table, _ in self.row_group_batches(
                self.path_of(part),
                wanted,
                low=low,
                high=high,
                persons=persons,
            ):
                if persons is not None:
                    # Ids in [lo, hi): the closed range [lo, hi - 1].
                    table = table.filter(_in_window(table["person_id"], persons[0], persons[1] - 1))
                if not inside:
                    table = table.filter(_in_window(table["day"], low, high))
                if corrections is not None:
                    table = table.filter(_not_corrected(table["record_hash"], corrections.hashes))
                yield with_source_columns(table, source).select(list(columns))
        if corrections is not None:
            latest = corrections.latest
            latest = latest.filter(_in_window(latest["day"], low, high))
            if persons is not None:
                latest = latest.filter(_in_window(latest["person_id"], persons[0], persons[1] - 1))
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
        persons: tuple[int, int] | None = None,
    ) -> pa.Table:
        """Read `columns` of `source`'s traces within the window, corrections applied.

        With `unlinked_only`, only the traces that matched nobody (person_id -1); with
        `persons` (ids [lo, hi)), only theirs.
        """
        wanted = list(dict.fromkeys([*columns, "person_id"])) if unlinked_only else columns
        batches = self.scan(
            session, source=source, columns=wanted, first_day=first_day, last_day=last_day,
            unlinked_only=unlinked_only, persons=persons,
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
        persons: tuple[int, int] | None = None,
    ) -> Iterator[TraceWindow]:
        """Yield the person, day and kind code of `source`'s traces within the window, in batches.

        `kinds` gives the code of each known kind. Kinds are mapped through each chunk's
        dictionary, never decoded row by row; an unknown kind gets -1. With `persons` (ids
        [lo, hi)), a part clustered by person is read in the row groups that may hold them
        only; other persons' traces still come, for the caller to leave out.
        """
        plan = self.window_plan(
            session, source=source, first_day=first_day, last_day=last_day, kinds=kinds
        )
        yield from plan.batches(persons)

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
        self, path: Path, columns: list[str], *, low: int, high: int,
        persons: tuple[int, int] | None = None,
    ) -> Iterator[tuple[pa.Table, bool]]:  # fmt: skip
        """Yield a part's row groups that may hold days in [low, high], a few at a time.

        With `persons` (a range of ids [lo, hi)), only the row groups whose persons may fall in
        it (a part clustered by person holds each person in one or two). Their rows are not
        filtered.
        """
        file = pq.ParquetFile(path, read_dictionary=["kind"])
        metadata = file.metadata
        clustered = (metadata.metadata or {}).get(SORTED_KEY) == SORTED_VALUE
        day_column = file.schema_arrow.get_field_index("day")
        person_column = file.schema_arrow.get_field_index("person_id")
        group: list[int] = []
        rows = 0
        for index in range(metadata.num_row_groups):
            stats = metadata.row_group(index).column(day_column).statistics
            # Row groups whose days all fall outside the window are never decoded.
            if stats is not None and stats.has_min_max and (stats.max < low or stats.min > high):
                continue
            if persons is not None:
                ids = metadata.row_group(index).column(person_column).statistics
                if (
                    ids is not None and ids.has_min_max
                    and (ids.max < persons[0] or ids.min >= persons[1])
                ):  # fmt: skip
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
        return _Corrections(hashes=unique_sorted(hashes), latest=latest)


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


def _may_hold_corrections(path: Path) -> bool:
    """Say from a part's footer statistics whether any of its rows is a correction."""
    metadata = pq.read_metadata(path)
    column = metadata.schema.to_arrow_schema().get_field_index("correction")
    for index in range(metadata.num_row_groups):
        stats = metadata.row_group(index).column(column).statistics
        if stats is None or not stats.has_min_max or stats.max:
            return True
    return False


def _decoded(table: pa.Table) -> pa.Table:
    """Return `table` with a dictionary-encoded kind turned back into plain strings."""
    if "kind" not in table.column_names or not pa.types.is_dictionary(table["kind"].type):
        return table
    index = table.schema.get_field_index("kind")
    return table.set_column(index, "kind", table["kind"].cast(pa.string()))
