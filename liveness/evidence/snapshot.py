"""An evidence snapshot: everything known about every person on the roll as of one day.

The run grades from it and the learned estimator trains on it, so both see the same features.
"""

from __future__ import annotations

import datetime as dt
import gc
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import ColumnElement, Float, Select, String, cast, func, literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import QueryableAttribute, Session

from liveness.errors import RollMissing
from liveness.evidence.health import HealthPolicy, source_health
from liveness.evidence.store import EvidenceStore, TraceWindow, day_number
from liveness.scoring import EvidenceFeatures, ScoringPolicy, post_death_traces
from liveness.scoring.features import FeatureAccumulator
from models import (
    Benefit,
    BenefitStatus,
    DeathMatch,
    DeathRecord,
    Person,
    RecordStatus,
)

ACTING_MATCHES = (DeathMatch.ID_NUMBER, DeathMatch.DEMOGRAPHIC)


@dataclass(frozen=True, eq=False)
class EvidenceSnapshot:
    """The roll, its linked traces, death evidence and features as of one day.

    Arrays are indexed by the dense person index: the row of the person in `roll`.
    `traces` holds, one by one, only the traces of persons with death evidence (what the
    post-death check needs); `trace_count` counts every linked trace read in the long window.
    """

    as_of: dt.date
    roll: pd.DataFrame
    traces: dict[str, np.ndarray]
    deaths: pd.DataFrame
    first_death: pd.Series
    death_day: np.ndarray
    features: EvidenceFeatures
    post_death: np.ndarray
    outages: dict[str, list[dt.date]]
    trace_count: int = 0

    @property
    def degraded(self) -> np.ndarray:
        """Return, per scoring source, whether it was degraded in the recent window."""
        return np.array([bool(days) for days in self.outages.values()], dtype=bool)


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


# Fields of the text the database builds are split by the ASCII unit separator, which no
# code, reference or amount holds; a value that did hold it (or a line break) would fail the
# parse or the row count, and the table is then read through the cursor instead.
FIELD_SEP = "\x1f"
_Column = ColumnElement[Any] | QueryableAttribute[Any]


def _read_table(
    session: Session, columns: dict[str, tuple[_Column, pa.DataType]],
    *where: ColumnElement[bool],
) -> pa.Table:  # fmt: skip
    """Read many rows as one Arrow table, in the order of the first column (then the second).

    The roll is a million rows read on every run. Fetched row by row, each value becomes a
    Python object (seconds); here the database joins the rows into one text, the same SQL on
    SQLite (group_concat) and PostgreSQL (string_agg), and Arrow parses it in C (a fraction).
    """
    names = list(columns)
    line: ColumnElement[Any] = cast(columns[names[0]][0], String)
    for name in names[1:]:
        line = line + literal(FIELD_SEP, String) + cast(columns[name][0], String)
    try:
        # A savepoint: a refused aggregate (text over the database's size limit) leaves the
        # transaction usable for the row-by-row read.
        with session.begin_nested():
            count, text = session.execute(
                select(func.count(), func.aggregate_strings(line, "\n")).where(*where)
            ).one()
    except DBAPIError:
        count, text = None, None
    schema = pa.schema([(name, kind) for name, (_, kind) in columns.items()])
    if count == 0:
        return schema.empty_table()
    table = _parsed(text, schema)
    if table is None or table.num_rows != count:
        values = _columns(session, select(*(expr for expr, _ in columns.values())).where(*where))
        table = pa.table(
            [
                pa.array(column, type=kind)
                for column, kind in zip(values, schema.types, strict=True)
            ],
            schema=schema,
        )
    keys = [table[names[0]].to_numpy(), table[names[1]].to_numpy()]
    if np.all(keys[0][1:] > keys[0][:-1]):
        return table  # already in order (the usual case): no gather
    return table.take(pa.array(np.lexsort(keys[::-1])))


def _parsed(text: str | None, schema: pa.Schema) -> pa.Table | None:
    """Parse the database's joined text into a table, or None where it does not split cleanly."""
    if text is None:
        return None
    try:
        return pa_csv.read_csv(
            pa.py_buffer(text.encode()),
            read_options=pa_csv.ReadOptions(column_names=schema.names),
            parse_options=pa_csv.ParseOptions(
                delimiter=FIELD_SEP, quote_char=False, double_quote=False, escape_char=False
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=schema, null_values=[], strings_can_be_null=False
            ),
        ).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


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


def _holders(session: Session) -> _Holders | None:
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


def _roll_of(session: Session, holders: _Holders) -> pd.DataFrame:
    """Return the roll: the holders with their reference, grid and region."""
    table = _read_table(
        session,
        {
            "id": (Person.id, pa.int64()),
            "person_ref": (Person.person_ref, pa.string()),
            "grid_code": (Person.grid_code, pa.string()),
            "region_code": (Person.region_code, pa.string()),
        },
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


def roll_frame(session: Session) -> pd.DataFrame:
    """Return one row per person drawing a benefit, with their main benefit's type and amount."""
    holders = _holders(session)
    if holders is None:
        return pd.DataFrame({name: [] for name in ROLL_COLUMNS})
    return _roll_of(session, holders)


def _death_evidence(session: Session, as_of: dt.date) -> pd.DataFrame:
    """Return active death records known by `as_of` that name a person."""
    rows = session.execute(
        select(
            DeathRecord.person_id, DeathRecord.died_on, DeathRecord.match, DeathRecord.source,
            DeathRecord.record_id, DeathRecord.name, DeathRecord.recorded_on,
        ).where(
            DeathRecord.status == RecordStatus.ACTIVE,
            DeathRecord.person_id.is_not(None),
            DeathRecord.recorded_on <= as_of,
            DeathRecord.died_on <= as_of,
        )
    ).all()  # fmt: skip
    frame = pd.DataFrame(
        rows,
        columns=["person_id", "died_on", "match", "source", "record_id", "name", "recorded_on"],
    )
    frame["match"] = frame["match"].astype(object).map(str)
    return frame


class _PersonIndex:
    """Maps roll person ids to the dense person index, trace by trace."""

    def __init__(self, ids: npt.NDArray[np.int64]) -> None:
        self.size = len(ids)
        self.first = int(ids[0])
        # A roll of consecutive ids (the usual case) needs a subtraction, not a gather.
        self.contiguous = bool(int(ids[-1]) - self.first == self.size - 1)
        self.dense = np.full(int(ids.max()) + 1, -1, dtype=np.int32)
        self.dense[ids] = np.arange(self.size, dtype=np.int32)

    def map(self, person_id: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
        """Return the dense index of each person id; `size` for ids not on the roll."""
        nobody = np.int32(self.size)
        if self.contiguous:
            index = person_id - np.int32(self.first)
            # One unsigned comparison rejects unlinked (-1) and off-roll ids alike.
            return np.where(index.view(np.uint32) < self.size, index, nobody)
        inside = (person_id >= 0) & (person_id < self.dense.size)
        index = self.dense[np.where(inside, person_id, 0)]
        return np.where(inside & (index >= 0), index, nobody)


@dataclass(frozen=True, eq=False)
class _Evidence:
    """What the stream of traces leaves behind: features, the dead's traces and a count."""

    features: EvidenceFeatures
    traces: dict[str, np.ndarray]
    count: int


# Batches read ahead while the current one is scattered (each a few tens of MB).
READ_AHEAD = 2
_DONE = object()


def _prefetched(
    readers: list[tuple[int, Iterator[TraceWindow]]],
) -> Iterator[tuple[int, TraceWindow]]:
    """Yield each reader's batches in order, read in a thread ahead of the consumer.

    Parquet decoding releases the GIL, so the next batch is read while this one is scattered.
    The readers only read files (their database queries are already made).
    """
    slots: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def work() -> None:
        try:
            for code, reader in readers:
                for batch in reader:
                    if not put((code, batch)):
                        return
        except BaseException as error:  # handed to the consumer, raised there
            put(error)
            return
        put(_DONE)

    thread = threading.Thread(target=work, name="evidence-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _readers(
    session: Session, *, store: EvidenceStore, policy: ScoringPolicy, as_of: dt.date
) -> list[tuple[int, Iterator[TraceWindow]]]:
    """Open the long window's readers, source by source (their database queries made now)."""
    first_day = as_of - dt.timedelta(days=policy.long - 1)
    readers = []
    for source_code, source in enumerate(policy.sources):
        codes = {kind: code for code, (src, kind) in enumerate(policy.kinds) if src == source}
        reader = store.window_reader(
            session, source=source, first_day=first_day, last_day=as_of, kinds=codes
        )
        readers.append((source_code, reader))
    return readers


def _scatter(
    readers: list[tuple[int, Iterator[TraceWindow]]], *, policy: ScoringPolicy, as_of: dt.date,
    persons: _PersonIndex, death_day: npt.NDArray[np.int32], stop: threading.Event | None = None,
) -> _Evidence:  # fmt: skip
    """Scatter every batch of the readers into the features; keep the traces of the dead.

    Only the traces of persons with death evidence are kept one by one (post-death use of
    their cards); everyone else lives on as features, so memory does not grow with traces.
    """
    accumulator = FeatureAccumulator(
        n_persons=persons.size, as_of_day=day_number(as_of), policy=policy
    )
    # The spare last entry is "nobody on the roll", who never died.
    died = np.append(death_day >= 0, False)
    anyone_died = bool(died.any())
    kept: dict[str, list[np.ndarray]] = {"person": [], "source": [], "kind": [], "day": []}
    count = 0
    for source_code, batch in _prefetched(readers):
        if stop is not None and stop.is_set():
            break
        person, kind, day = persons.map(batch.person_id), batch.kind, batch.day
        # Traces of nobody on the roll, or of unknown kinds, are not filtered out (that
        # costs more than the scatter): the accumulator gives them a spare row and no weight.
        count += int(np.count_nonzero((person < persons.size) & (kind >= 0)))
        accumulator.add(person_idx=person, source=source_code, kind_code=kind, day=day)
        if anyone_died:
            dead = died[person] & (kind >= 0)
            if dead.any():
                kept["person"].append(person[dead])
                kept["source"].append(np.full(int(dead.sum()), source_code, dtype=np.int8))
                kept["kind"].append(kind[dead])
                kept["day"].append(day[dead])
    empty = {"person": np.int32, "source": np.int8, "kind": np.int16, "day": np.int32}
    traces = {
        key: np.concatenate(values) if values else np.empty(0, dtype=empty[key])
        for key, values in kept.items()
    }
    return _Evidence(features=accumulator.result(), traces=traces, count=count)


def _death_days(first_death: pd.Series, persons: _PersonIndex) -> npt.NDArray[np.int32]:
    """Return each indexed person's first death day (-1: none)."""
    death_day = np.full(persons.size, -1, dtype=np.int32)
    dense = persons.dense
    known = first_death.index.to_numpy(dtype=np.int64)
    on_roll = known[known < len(dense)]
    on_roll = on_roll[dense[on_roll] >= 0]
    death_day[dense[on_roll]] = [day_number(first_death[p]) for p in on_roll]
    return death_day


def take_snapshot(
    session: Session,
    *,
    as_of: dt.date,
    store: EvidenceStore,
    scoring: ScoringPolicy,
    health: HealthPolicy,
) -> EvidenceSnapshot:
    """Read the roll, the long window's traces and death evidence; compute the features.

    The traces are read and scattered in a worker thread, indexed by person id, while this
    thread reads the roll from the database (which runs without holding the GIL); the
    features of the persons on the roll are then picked out. The worker only reads files:
    every database query of the readers is made before it starts.
    """
    deaths = _death_evidence(session, as_of)
    acting = deaths[deaths["match"].isin([m.value for m in ACTING_MATCHES])]
    first_death = acting.groupby("person_id")["died_on"].min()
    top = int(session.scalar(select(func.max(Person.id))) or 0)
    everyone = _PersonIndex(np.arange(top + 1, dtype=np.int64))
    readers = _readers(session, store=store, policy=scoring, as_of=as_of)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence-scatter") as pool:
        scattered = pool.submit(
            _scatter, readers, policy=scoring, as_of=as_of, persons=everyone,
            death_day=_death_days(first_death, everyone), stop=stop,
        )  # fmt: skip
        try:
            holders = _holders(session)
            if holders is None:
                raise RollMissing("the benefit roll is empty: ingest the registry source first")
            roll = _roll_of(session, holders)
            # A source that collapsed in the recent window is degraded: its silence lowers
            # nobody (grading credits what the person showed before the outage).
            outages = source_health(
                session, sources=scoring.sources,
                first_day=as_of - dt.timedelta(days=scoring.recent - 1), last_day=as_of,
                policy=health,
            )  # fmt: skip
        except BaseException:
            stop.set()
            raise
        evidence = scattered.result()
    # From person ids to the roll's dense index: pick the roll's rows out of everyone's.
    rows = holders.person_id
    persons = _PersonIndex(rows)
    death_day = _death_days(first_death, persons)
    kept = evidence.traces
    on_roll = persons.map(kept["person"].astype(np.int32))
    inside = on_roll < persons.size
    traces = {**{key: value[inside] for key, value in kept.items()}, "person": on_roll[inside]}
    post_death = post_death_traces(
        person_idx=traces["person"], kind_code=traces["kind"], day=traces["day"],
        death_day=death_day, policy=scoring,
    )  # fmt: skip
    return EvidenceSnapshot(
        as_of=as_of, roll=roll, traces=traces, deaths=deaths, first_death=first_death,
        death_day=death_day, features=evidence.features.take(rows), post_death=post_death,
        outages=outages, trace_count=evidence.count,
    )  # fmt: skip
