"""Append-only Parquet store of traces, partitioned by source and month.

A part is written to a temporary file, renamed into place, and only then entered in the
`evidence_parts` manifest inside the caller's transaction: a part whose transaction rolled back
is an orphan file that no reader sees, so a crashed ingest publishes nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

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


def day_number(day: dt.date) -> int:
    """Return `day` as days since 1970-01-01, the store's day unit."""
    return (day - EPOCH).days


def day_from_number(number: int) -> dt.date:
    """Return the date of a store day number."""
    return EPOCH + dt.timedelta(days=int(number))


def record_hashes(record_ids: pd.Series) -> np.ndarray:
    """Return a stable 64-bit hash per record id, the key of re-delivery checks."""
    values = record_ids.astype(object).to_numpy()
    return pd.util.hash_array(values, categorize=False)


@dataclass(frozen=True)
class TraceWindow:
    """Traces of one source read from the store, as aligned arrays."""

    source: str
    person_id: np.ndarray
    day: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return int(self.person_id.shape[0])


class EvidenceStore:
    """The Parquet evidence store rooted at one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def append(
        self, session: Session, *, source: str, traces: pd.DataFrame, delivery_id: int
    ) -> list[EvidencePart]:
        """Write `traces` (columns of EVIDENCE_SCHEMA) as one part per month; flush the manifest."""
        if traces.empty:
            return []
        months = (traces["day"].to_numpy(np.int64).astype("datetime64[D]")).astype("datetime64[M]")
        parts: list[EvidencePart] = []
        for month in np.unique(months):
            chunk = traces.loc[months == month]
            label = str(month)
            folder = self.root / f"source={source}" / f"month={label}"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"part-{delivery_id:08d}-{uuid.uuid4().hex[:12]}.parquet"
            temporary = final.with_suffix(".parquet.tmp")
            table = pa.Table.from_pandas(
                chunk[EVIDENCE_SCHEMA.names], schema=EVIDENCE_SCHEMA, preserve_index=False
            )
            pq.write_table(table, temporary, compression="zstd")
            os.replace(temporary, final)
            part = EvidencePart(
                source=source,
                month=label,
                path=str(final.relative_to(self.root)),
                rows=len(chunk),
                min_day=day_from_number(int(chunk["day"].min())),
                max_day=day_from_number(int(chunk["day"].max())),
                delivery_id=delivery_id,
            )
            session.add(part)
            parts.append(part)
        session.flush()
        return parts

    def parts(
        self,
        session: Session,
        *,
        source: str,
        first_day: dt.date | None = None,
        last_day: dt.date | None = None,
    ) -> list[EvidencePart]:
        """Return the manifest entries of `source` that may hold days in the window."""
        query = select(EvidencePart).where(EvidencePart.source == source)
        if first_day is not None:
            query = query.where(EvidencePart.max_day >= first_day)
        if last_day is not None:
            query = query.where(EvidencePart.min_day <= last_day)
        return list(session.scalars(query.order_by(EvidencePart.id)))

    def read_table(
        self,
        session: Session,
        *,
        source: str,
        columns: list[str],
        first_day: dt.date | None = None,
        last_day: dt.date | None = None,
    ) -> pa.Table:
        """Read `columns` of `source`'s traces within the window, corrections applied."""
        wanted = list(dict.fromkeys([*columns, "record_hash", "correction", "day"]))
        tables = [
            pq.read_table(self.root / part.path, columns=wanted)
            for part in self.parts(session, source=source, first_day=first_day, last_day=last_day)
        ]
        if not tables:
            return EVIDENCE_SCHEMA.empty_table().select(columns)
        table = pa.concat_tables(tables)
        if first_day is not None:
            table = table.filter(pc.greater_equal(table["day"], day_number(first_day)))
        if last_day is not None:
            table = table.filter(pc.less_equal(table["day"], day_number(last_day)))
        table = _apply_corrections(table)
        return table.select(columns)

    def read_window(
        self, session: Session, *, source: str, first_day: dt.date, last_day: dt.date
    ) -> TraceWindow:
        """Read the person, day and kind of `source`'s linked traces within the window."""
        table = self.read_table(
            session,
            source=source,
            columns=["person_id", "day", "kind"],
            first_day=first_day,
            last_day=last_day,
        )
        table = table.filter(pc.greater_equal(table["person_id"], 0))
        return TraceWindow(
            source=source,
            person_id=table["person_id"].to_numpy().astype(np.int32, copy=False),
            day=table["day"].to_numpy().astype(np.int32, copy=False),
            kind=table["kind"].to_numpy(zero_copy_only=False),
        )

    def existing_hashes(self, session: Session, *, source: str, months: list[str]) -> np.ndarray:
        """Return the sorted record hashes already stored for `source` in `months`."""
        paths = [
            self.root / part.path
            for part in session.scalars(
                select(EvidencePart).where(
                    EvidencePart.source == source, EvidencePart.month.in_(months)
                )
            )
        ]
        if not paths:
            return np.empty(0, dtype=np.uint64)
        hashes = [pq.read_table(path, columns=["record_hash"])["record_hash"] for path in paths]
        return np.unique(np.concatenate([column.to_numpy() for column in hashes]))


def _apply_corrections(table: pa.Table) -> pa.Table:
    """Keep only the latest version of records that a correction replaced."""
    corrected = table["correction"].to_numpy(zero_copy_only=False)
    if not corrected.any():
        return table
    hashes = table["record_hash"].to_numpy()
    replaced = np.unique(hashes[corrected])
    affected = np.flatnonzero(np.isin(hashes, replaced))
    # Rows are in write order, so the last row of each affected hash is the newest version.
    order = affected[::-1]
    _, first_in_reverse = np.unique(hashes[order], return_index=True)
    keep = np.ones(len(hashes), dtype=bool)
    keep[affected] = False
    keep[order[first_in_reverse]] = True
    return table.filter(pa.array(keep))
