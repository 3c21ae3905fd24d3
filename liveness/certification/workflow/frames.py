"""Small reads and frames the workflow's steps share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from liveness.arrays import unique_sorted
from liveness.db import any_ids, read_frame
from liveness.evidence.store import EvidenceStore
from models import Benefit


def frame_in(
    session: Session, ids: Iterable[int], statement: Callable[[list[int] | Select[Any]], Any],
    columns: list[str],
) -> pd.DataFrame:  # fmt: skip
    """Run `statement(ids)` (`column.in_(ids)`) and return the rows as one frame.

    A set that grows with the roll (the dead of years, a first run's lapses) is never sent
    as one IN list, since SQLite caps the parameters of a statement, nor in many chunks: as
    one parameter the database unpacks (`id_rows`). The rows come in no particular order.
    """
    ordered = sorted_ids(ids)
    if not ordered:
        return pd.DataFrame(columns=columns)
    return read_frame(session, statement(any_ids(session, ordered)), columns)


def sorted_ids(ids: Iterable[Any]) -> list[int]:
    """Return the distinct ids in ascending order, as plain ints, without Python per id."""
    if isinstance(ids, np.ndarray | pd.Series | pd.Index):
        values = np.asarray(ids).astype(np.int64)
    else:
        values = np.fromiter(ids, dtype=np.int64)
    ordered: list[int] = unique_sorted(values).tolist()
    return ordered


def earliest_dates(dates: pd.Series) -> pd.Series:
    """Return `dates.groupby(level=0).min()` of date objects, as day numbers (no Python per group).

    Over date objects pandas takes each group's minimum in Python; as day numbers in C. The
    same Series (date objects, the index and name); anything but plain dates (a null, a
    timestamp) is left to pandas.
    """
    values = dates.to_numpy()
    plain = len(values) and values.dtype == object and all(type(v) is dt.date for v in values)
    if not plain:
        return dates.groupby(level=0).min()
    days = np.array(values, dtype="datetime64[D]").astype(np.int64)
    least = pd.Series(days, index=dates.index).groupby(level=0).min()
    return pd.Series(
        least.to_numpy().astype("datetime64[D]").astype(object), index=least.index,
        name=dates.name, dtype=object,
    )  # fmt: skip


def date_of_day(number: Any) -> dt.date:
    """Return the date of a day number counted from 1970-01-01."""
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(number))


def proofs_of_life(person_id: Iterable[Any], source: Iterable[Any], day: Iterable[dt.date],
                   evidence: Iterable[dict[str, Any]]) -> pd.DataFrame:  # fmt: skip
    """Return proofs of life: who, how (a certification source), on which day, with what."""
    frame = pd.DataFrame(
        {"person_id": list(person_id), "source": list(source), "day": list(day),
         "evidence": list(evidence)}
    )  # fmt: skip
    return frame.astype({"person_id": np.int64})


def face_results(
    session: Session, *, store: EvidenceStore, first_day: dt.date, as_of: dt.date,
    persons: tuple[int, int] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the linked face verification results in a window: person_id, day, kind.

    With `persons` (ids [lo, hi): a partition's), only theirs.
    """
    table = store.read_table(
        session, source="face", columns=["person_id", "day", "kind"], first_day=first_day,
        last_day=as_of, persons=persons,
    ).to_pandas()  # fmt: skip
    table = table[table["person_id"] >= 0]
    return table.assign(kind=table["kind"].astype(object))


def benefits(session: Session, *where: Any) -> pd.DataFrame:
    """Return benefits matching `where`: id, person, type, start, payment status and reason."""
    frame = read_frame(
        session,
        select(Benefit.id, Benefit.person_id, Benefit.benefit_type, Benefit.benefit_start,
               Benefit.status, Benefit.suspension_reason, Benefit.held_entry_id).where(*where),
        ["benefit_id", "person_id", "benefit_type", "benefit_start", "status", "reason", "held"],
    )  # fmt: skip
    for column in ("benefit_type", "status", "reason"):
        frame[column] = frame[column].astype(object).map(lambda v: None if v is None else str(v))
    return frame


def of_persons(session: Session, persons: Iterable[int], *where: Any) -> pd.DataFrame:
    """Return the benefits of some persons (matching `where`), in one read (`frame_in`)."""
    ids = sorted_ids(persons)
    if not ids:
        return benefits(session, False)
    return benefits(session, Benefit.person_id.in_(any_ids(session, ids)), *where)
