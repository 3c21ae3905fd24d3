"""What a record's content is: its hashes, and the judgement of a batch's rows by them."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from liveness.identity.keys import as_strings, mix64, string_hashes

__all__ = [
    "content_columns",
    "content_hashes",
    "judge",
    "version_hashes",
]

# A content hash is 32 bits, never 0: 0 means "unknown" (a part lacking a content column).
UNKNOWN = 0
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_VERSION_SALT = np.uint64(0xD6E8FEB86659FD93)
SOURCE_CONTENT: dict[str, tuple[str, ...]] = {
    "face": ("face_id",),
    "medical": ("discharge_outcome",),
}
_COLUMN_WEIGHTS = tuple(
    np.uint64(weight)
    for weight in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                   0xFF51AFD7ED558CCD)
)  # fmt: skip
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
    acc = np.zeros(n, dtype=np.uint64)
    for position, name in enumerate(names):
        column = table[name]
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_timestamp(column.type):
            # Whole seconds, whatever unit a file gives back (Parquet keeps seconds as ms).
            seconds = pc.cast(column, pa.timestamp("s", column.type.tz), safe=False)
            values = pc.fill_null(seconds.cast(pa.int64()), -1).to_numpy().view(np.uint64)
        else:
            values = _text_hashes(column, few=name in _FEW_VALUES)
        # Each column weighed by its own odd multiplier, then one mix of them all.
        acc ^= values * _COLUMN_WEIGHTS[position]
    acc = mix64(acc)
    folded = ((acc >> np.uint64(32)) ^ acc) & np.uint64(0xFFFFFFFF)
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


def version_hashes(
    records: npt.NDArray[np.uint64], contents: npt.NDArray[Any]
) -> npt.NDArray[np.uint64]:
    """Return the hash of each record's version: its record hash mixed with its content hash."""
    mixed = contents.astype(np.uint64) * _VERSION_SALT + np.uint64(1)
    return mix64(records ^ mixed)


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
