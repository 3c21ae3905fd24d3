"""The benefit roll as the nightly run reads it, and the roll kept between runs.

A million rows read on every run cost more than everything else the run reads, yet only a few
thousand change from one night to the next. So the run keeps the roll it read (as Parquet, in
`roll_cache`, inside its own transaction), and the next run re-reads only the persons that
the database's triggers logged in `roll_changes` since (migration 0007): a person inserted,
deleted, or whose reference, grid, region or benefits changed. No write can bypass a trigger,
so the kept roll plus the re-read persons is exactly what a full read returns.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    cast,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from liveness.arrays import unique_sorted
from liveness.db import TextColumn, read_joined
from liveness.kept import decoded, encoded, kept_table, put_table
from models import Benefit, BenefitStatus, Person, RollCache, RollChange

__all__ = ["ROLL_COLUMNS", "RollRead", "certified_rows", "kept_roll", "read_roll", "roll_frame"]

ROLL_COLUMNS = [
    "person_id", "person_ref", "grid_code", "region_code", "benefit_type", "monthly_amount",
    "benefit_status",
]  # fmt: skip


def _columns(session: Session, statement: Select[*tuple[Any, ...]]) -> list[Sequence[Any]]:
    """Run a select through the DB-API cursor and return its result column by column.

    The exact, slower path of `_read_table`: SQLAlchemy's row objects and result processing
    cost several times the database's own work, so the statement (which takes no parameters)
    is compiled to the connection's SQL and fetched as plain tuples.
    """
    connection = session.connection()
    sql = str(statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    # A million fresh tuples would set off the cycle collector again and again, for nothing:
    # rows hold no cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        cursor.execute(sql)
        rows = cursor.fetchall()
        if not rows:
            return [() for _ in statement.selected_columns]
        return list(zip(*rows, strict=True))
    finally:
        cursor.close()
        if collecting:
            gc.enable()


def _read_table(
    session: Session, columns: dict[str, tuple[TextColumn, pa.DataType]],
    *where: ColumnElement[bool],
) -> pa.Table:  # fmt: skip
    """Read many rows as one Arrow table, in the order of the first column (then the second).

    The roll is a million rows: read as one text the database joins (`read_joined`), or row
    by row through the cursor where that text would not split back exactly.
    """
    table = read_joined(session, columns, *where)
    if table is None:
        values = _columns(session, select(*(expr for expr, _ in columns.values())).where(*where))
        schema = pa.schema([(name, kind) for name, (_, kind) in columns.items()])
        table = pa.table(
            [
                pa.array(column, type=kind)
                for column, kind in zip(values, schema.types, strict=True)
            ],
            schema=schema,
        )
    if table.num_rows == 0:
        return table
    names = list(columns)
    keys = [table[names[0]].to_numpy(), table[names[1]].to_numpy()]
    if np.all(keys[0][1:] > keys[0][:-1]):
        return table  # already in order (the usual case): no gather
    return table.take(pa.array(np.lexsort(keys[::-1])))


@dataclass(frozen=True, eq=False)
class _Holders:
    """The roll's benefits, one row per person (their first benefit), before names are read."""

    person_id: npt.NDArray[np.int64]
    benefit_type: pd.Series
    monthly_amount: npt.NDArray[np.float64]
    benefit_status: pd.Series


def _strings(column: pa.ChunkedArray, rows: npt.NDArray[np.intp] | None = None) -> pd.Series:
    """Return a text column (optionally picked by row) as a pandas Series."""
    if rows is not None:
        column = column.take(pa.array(rows))
    return column.to_pandas()


def _holders(session: Session, *where: ColumnElement[bool]) -> _Holders | None:
    """Read the benefits still drawn: the persons on the roll, in id order; None if nobody."""
    table = _read_table(
        session,
        {
            "person_id": (Benefit.person_id, pa.int64()),
            "id": (Benefit.id, pa.int64()),
            "benefit_type": (Benefit.benefit_type, pa.string()),
            "amount": (cast(Benefit.monthly_amount, Float(precision=53)), pa.float64()),
            "status": (Benefit.status, pa.string()),
        },
        Benefit.status != BenefitStatus.TERMINATED.value,
        *where,
    )
    holders = table["person_id"].to_numpy()
    if holders.size == 0:
        return None
    # A person is graded once, by their first benefit; the amount at stake is the sum.
    first = np.flatnonzero(np.r_[True, holders[1:] != holders[:-1]])
    totals = np.add.reduceat(table["amount"].to_numpy(), first)
    first_rows = None if first.size == holders.size else first
    return _Holders(
        person_id=holders[first], benefit_type=_strings(table["benefit_type"], first_rows),
        monthly_amount=totals, benefit_status=_strings(table["status"], first_rows),
    )  # fmt: skip


def _roll_of(session: Session, holders: _Holders, *where: ColumnElement[bool]) -> pd.DataFrame:
    """Return the roll: the holders with their reference, grid and region."""
    table = _read_table(
        session,
        {
            "id": (Person.id, pa.int64()),
            "person_ref": (Person.person_ref, pa.string()),
            "grid_code": (Person.grid_code, pa.string()),
            "region_code": (Person.region_code, pa.string()),
        },
        *where,
    )
    all_ids = table["id"].to_numpy()
    at = np.searchsorted(all_ids, holders.person_id)
    # Most rolls hold every person: then no row needs picking.
    at_rows = None if at.size == all_ids.size else at
    return pd.DataFrame(
        {
            "person_id": holders.person_id,
            "person_ref": _strings(table["person_ref"], at_rows),
            "grid_code": _strings(table["grid_code"], at_rows),
            "region_code": _strings(table["region_code"], at_rows),
            "benefit_type": holders.benefit_type,
            "monthly_amount": holders.monthly_amount,
            "benefit_status": holders.benefit_status,
        }
    )


def _empty_roll() -> pd.DataFrame:
    """Return a roll of nobody, with the columns and types of any other."""
    return pd.DataFrame(
        {
            name: pd.Series(
                dtype=np.int64 if name == "person_id"
                else np.float64 if name == "monthly_amount" else object
            )
            for name in ROLL_COLUMNS
        }
    )  # fmt: skip


def roll_frame(session: Session) -> pd.DataFrame:
    """Return one row per person drawing a benefit, with their main benefit's type and amount."""
    holders = _holders(session)
    if holders is None:
        return _empty_roll()
    return _roll_of(session, holders)


# Bumped whenever the kept roll's columns or their meaning change: an old one is then unread
# (2: kept as Arrow IPC, `liveness.kept.encoded`, no longer Parquet).
ROLL_FORMAT = 2
CACHE_ID = 1
# The roll's certifications, kept beside the roll with its mark (`RollRead.certified`).
CERTIFIED_CACHE_ID = 4
CERTIFIED_FORMAT = 2
CERTIFIED_COLUMNS = ["person_id", "benefit_type", "certified_on"]
# Past this share of the roll changed, one full read costs less than re-reading persons.
FULL_READ_SHARE = 0.1
# Persons re-read per statement (within every backend's limit of bound parameters).
REREAD_CHUNK = 5_000


def _mark(session: Session) -> int:
    """Return the change-log mark of this moment: every change after it will be re-read.

    SQLite runs one writer at a time, so log ids follow commit order and the mark is the last
    id. On PostgreSQL they do not: the mark is the oldest transaction still running, and the
    next read re-reads everything logged by it or any later transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        return int(
            session.execute(text("SELECT txid_snapshot_xmin(txid_current_snapshot())")).scalar_one()
        )
    return int(session.scalar(select(func.coalesce(func.max(RollChange.id), 0))) or 0)


def _changed_since(session: Session, mark: int) -> npt.NDArray[np.int64]:
    """Return the persons logged as changed after `mark`, sorted and unique."""
    if session.get_bind().dialect.name == "postgresql":
        after = RollChange.xact_id >= mark
    else:
        after = RollChange.id > mark
    ids = session.scalars(select(RollChange.person_id).where(after).distinct()).all()
    return unique_sorted(np.asarray(ids, dtype=np.int64))


def _decoded_roll(content: bytes) -> pa.Table | None:
    """Return a kept roll as Arrow, or None if it does not read back as one."""
    table = decoded(content)
    return table if table is not None and table.column_names == ROLL_COLUMNS else None


def _reread(session: Session, persons: npt.NDArray[np.int64]) -> pd.DataFrame:
    """Read the roll rows of some persons only (those of them still on the roll)."""
    frames = []
    for start in range(0, persons.size, REREAD_CHUNK):
        chunk = [int(p) for p in persons[start : start + REREAD_CHUNK]]
        holders = _holders(session, Benefit.person_id.in_(chunk))
        if holders is not None:
            frames.append(_roll_of(session, holders, Person.id.in_(chunk)))
    if not frames:
        return _empty_roll()
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True, eq=False)
class RollRead:
    """The roll, and each benefit's last certification on it, as one run reads them."""

    roll: pd.DataFrame
    # person_id, benefit_type, certified_on (a date) of every benefit, of any status, whose
    # roll row carries a last certification: what carries a person's certification over
    # until the engine records one (`liveness.certification.read_ends`).
    certified: pd.DataFrame


def kept_roll(session: Session, *, keep: bool) -> pd.DataFrame:
    """Return the roll, from the one kept by the last run plus the persons changed since.

    Equal to `roll_frame`. With `keep`, the roll read is kept for the next run (in this
    transaction: a run that rolls back keeps nothing); without, nothing is written.
    """
    return read_roll(session, keep=keep).roll


def certified_rows(session: Session, *where: ColumnElement[bool]) -> pa.Table:
    """Return each benefit's last certification on the roll: person, type, day, by person."""
    return _read_table(
        session,
        {
            "person_id": (Benefit.person_id, pa.int64()),
            "benefit_type": (Benefit.benefit_type, pa.string()),
            "certified_on": (Benefit.last_certified_on, pa.date32()),
        },
        Benefit.last_certified_on.is_not(None),
        *where,
    )


def read_roll(session: Session, *, keep: bool) -> RollRead:
    """Return the roll and its certifications: kept plus the persons changed since (`kept_roll`).

    Equal to reading both in full (`roll_frame`, `certified_rows`).
    """
    mark = _mark(session)
    cached = session.execute(
        select(RollCache.mark, RollCache.format, RollCache.content).where(RollCache.id == CACHE_ID)
    ).first()
    # The kept roll is merged with the re-read persons as Arrow (filter, concat and take in C),
    # and becomes a frame once: pandas' text columns are slow to filter and sort row by row.
    table = certified = None
    if cached is not None and cached.format == ROLL_FORMAT:
        table = _decoded_roll(cached.content)
        certified = _kept_certified(session, mark=cached.mark)
    if table is not None and cached is not None:
        changed = _changed_since(session, cached.mark)
        if changed.size == 0 and certified is not None:
            return RollRead(table.to_pandas(), _certified_frame(certified))
        if changed.size <= FULL_READ_SHARE * max(table.num_rows, 1):
            fresh = _reread(session, changed)
            table = _replaced(
                table, changed,
                [] if fresh.empty
                else [pa.Table.from_pandas(fresh, schema=table.schema, preserve_index=False)],
            )  # fmt: skip
            if certified is not None:
                certified = _with_reread(session, certified, changed)
        else:
            table = certified = None
    if table is None:
        roll = roll_frame(session)
        table = pa.Table.from_pandas(roll, preserve_index=False)
    else:
        roll = table.to_pandas()
    if certified is None:
        certified = certified_rows(session)
    if keep and len(roll):
        _keep(
            session, table, certified, mark=mark,
            replaces=None if cached is None else cached.mark,
        )  # fmt: skip
    return RollRead(roll, _certified_frame(certified))


def _kept_certified(session: Session, *, mark: int) -> pa.Table | None:
    """Return the roll's certifications kept with the roll of `mark`, or None."""
    kept = kept_table(
        session, CERTIFIED_CACHE_ID, format=CERTIFIED_FORMAT, columns=CERTIFIED_COLUMNS,
        mark=mark,
    )  # fmt: skip
    return None if kept is None else kept[1]


def _with_reread(session: Session, kept: pa.Table, changed: npt.NDArray[np.int64]) -> pa.Table:
    """Return the kept certifications with those of the changed persons read again."""
    fresh = []
    for start in range(0, changed.size, REREAD_CHUNK):
        chunk = [int(p) for p in changed[start : start + REREAD_CHUNK]]
        fresh.append(certified_rows(session, Benefit.person_id.in_(chunk)).cast(kept.schema))
    return _replaced(kept, changed, fresh)


def _replaced(kept: pa.Table, changed: npt.NDArray[np.int64], fresh: list[pa.Table]) -> pa.Table:
    """Return `kept` (in person order) with the rows of `changed` persons replaced by `fresh`."""
    unchanged = kept.filter(pa.array(~np.isin(kept["person_id"].to_numpy(), changed)))
    fresh = [part for part in fresh if part.num_rows]
    if not fresh:
        return unchanged
    merged = pa.concat_tables([unchanged, *fresh])
    order = np.argsort(merged["person_id"].to_numpy(), kind="stable")
    return merged.take(pa.array(order))


def _certified_frame(table: pa.Table) -> pd.DataFrame:
    """Return the roll's certifications as a frame, days as datetime64 (no date objects)."""
    return table.to_pandas(date_as_object=False)


def _keep(
    session: Session, roll: pa.Table, certified: pa.Table, *, mark: int, replaces: int | None
) -> None:
    """Keep `roll` and its certifications as of `mark`; prune the log.

    Unless another transaction kept a roll meanwhile: then nothing is written.
    """
    values = {
        "format": ROLL_FORMAT, "mark": mark, "persons": roll.num_rows, "content": encoded(roll),
        "written_at": dt.datetime.now(dt.UTC),
    }  # fmt: skip
    try:
        with session.begin_nested():
            if replaces is None:
                session.execute(insert(RollCache).values(id=CACHE_ID, **values))
            else:
                # Only over the row this read started from: a newer one kept meanwhile stays.
                kept = session.execute(
                    update(RollCache)
                    .where(RollCache.id == CACHE_ID, RollCache.mark == replaces)
                    .values(**values)
                    .returning(RollCache.id)
                ).first()
                if kept is None:
                    return
            # The roll's certifications, of the same mark (read only with that roll).
            put_table(
                session, CERTIFIED_CACHE_ID, format=CERTIFIED_FORMAT, mark=mark, table=certified
            )
            # What the kept roll holds needs no re-reading: its log entries go.
            if session.get_bind().dialect.name == "postgresql":
                session.execute(delete(RollChange).where(RollChange.xact_id < mark))
            else:
                session.execute(delete(RollChange).where(RollChange.id <= mark))
    except DBAPIError:
        # Another transaction kept its roll first, or the database is busy: the next run
        # reads again from the kept roll it finds. Keeping is a saving, never a result.
        return
