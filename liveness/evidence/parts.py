"""The evidence part format: its schema, each source's own columns, and the keys of its rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from liveness.identity.keys import pandas_string_hashes

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
# Rows per Parquet row group in written parts.
ROW_GROUP_ROWS = 1 << 20


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
