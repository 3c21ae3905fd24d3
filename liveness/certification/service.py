"""Silent certification of strong cases, once per cycle."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from liveness.certification.kept_ends import kept_ends
from liveness.certification.policy import CertificationPolicy
from liveness.db import TextColumn, insert_records, query_frame, read_joined
from liveness.scoring import fill_reasons
from models import Base, Benefit, Certification, CertificationSource

# Certifications go to the table as plain rows, past the ORM (a first run makes a million).
CERTIFICATIONS = Base.metadata.tables["certifications"]


def add_months(day: dt.date, months: int) -> dt.date:
    """Return `day` moved by `months`, clamped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


def add_months_array(
    days: npt.NDArray[np.datetime64], months: npt.NDArray[np.int64]
) -> npt.NDArray[np.datetime64]:
    """Return `add_months` of each day and its months, as whole columns (datetime64[D])."""
    days = days.astype("datetime64[D]")
    month = days.astype("datetime64[M]")
    day_of_month = (days - month.astype("datetime64[D]")).astype(np.int64)  # 0-based
    target = month + months.astype("timedelta64[M]")
    length = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(
        np.int64
    )
    result: npt.NDArray[np.datetime64] = target.astype("datetime64[D]") + np.minimum(
        day_of_month, length - 1
    ).astype("timedelta64[D]")
    return result


def cycle_days(
    policy: CertificationPolicy, benefit_types: pd.Series, *, field: str
) -> npt.NDArray[np.int64]:
    """Return a cycle number (`valid_months`, ...) of each benefit type, as a column."""
    # Each distinct type looked up once and spread by its code: a map over a million
    # strings costs a second a run.
    codes, kinds = pd.factorize(benefit_types)
    if (codes < 0).any():
        # A missing type is looked up as its text, as it always was.
        text = benefit_types.astype(str)
        found = {kind: getattr(policy.cycle_for(kind), field) for kind in text.unique()}
        return text.map(found).to_numpy(dtype=np.int64)
    values = np.array(
        [getattr(policy.cycle_for(str(kind)), field) for kind in kinds], dtype=np.int64
    )
    return values[codes]


@dataclass(frozen=True)
class CertificationEnds:
    """Each person's certification end in its two parts, as read once per run."""

    recorded: pd.Series  # per person, the latest end of a certification the engine recorded
    carried: pd.Series  # per person, the roll's last certification carried over for a cycle

    def merged(self) -> pd.Series:
        """Return when each person's certification ends: recorded, else carried (`valid_until`)."""
        return date_objects(self.merged_days())

    def merged_days(self) -> pd.Series:
        """Return `merged()` as datetime64: compared as a column without a date object each."""
        # A certification the engine recorded wins over what the roll carried: what
        # `recorded.combine_first(carried)` gives, without aligning two million-row indexes.
        recorded, carried = self.recorded, self.carried
        if recorded.empty or carried.empty:
            return carried.sort_index() if recorded.empty else recorded.sort_index()
        only = ~np.isin(carried.index.to_numpy(), recorded.index.to_numpy(), assume_unique=True)
        ids = np.concatenate(
            [recorded.index.to_numpy(np.int64), carried.index.to_numpy(np.int64)[only]]
        )
        days = np.concatenate([recorded.to_numpy(), carried.to_numpy()[only]])
        order = np.argsort(ids, kind="stable")
        return pd.Series(days[order], index=ids[order])

    def with_run(
        self, session: Session, *, run_id: int, where: ColumnElement[bool] | None = None
    ) -> CertificationEnds:
        """Return the ends with what run `run_id` has certified (flushed) added.

        Equal to reading them all again: a person's latest recorded end is the later of the
        one read before and those the run recorded since; the roll's carried ends stay.
        `where` narrows the run's certifications (to a partition's persons, whose ends these are).
        """
        conditions = [Certification.run_id == run_id, *([] if where is None else [where])]
        added = _recorded_ends(session, *conditions)
        return CertificationEnds(recorded=_later(self.recorded, added), carried=self.carried)

    def between(self, lo: int, hi: int) -> CertificationEnds:
        """Return the ends of the persons with ids in [lo, hi) (a run's partition)."""

        def cut(ends: pd.Series) -> pd.Series:
            ids = ends.index.to_numpy(dtype=np.int64)
            return ends[(ids >= lo) & (ids < hi)]

        return CertificationEnds(recorded=cut(self.recorded), carried=cut(self.carried))


def date_objects(days: pd.Series) -> pd.Series:
    """Return a Series of datetime64 values as date objects (what `valid_until` returns)."""
    return pd.Series(
        days.to_numpy().astype("datetime64[D]").astype(object), index=days.index, dtype=object
    )


def read_ends(
    session: Session, *, policy: CertificationPolicy, roll_certified: pd.DataFrame | None = None
) -> CertificationEnds:
    """Read each person's certification end: the latest recorded, and carried from the roll.

    `roll_certified`: the roll's certifications as the run read them with the roll
    (`liveness.evidence.roll.RollRead`), else read here.
    """
    roll = roll_certified
    if roll is None:
        roll = _read_columns(
            session,
            {"person_id": (Benefit.person_id, pa.int64()),
             "benefit_type": (Benefit.benefit_type, pa.string()),
             "certified_on": (Benefit.last_certified_on, pa.date32())},
            Benefit.last_certified_on.is_not(None),
        )  # fmt: skip
    # The roll's last certification carries over for a cycle, the shortest of a person's.
    carried_end = add_months_array(
        _days(roll["certified_on"]), cycle_days(policy, roll["benefit_type"], field="valid_months")
    )
    carried = (
        pd.Series(carried_end, index=roll["person_id"].astype(np.int64)).groupby(level=0).min()
    )
    return CertificationEnds(recorded=recorded_ends(session), carried=carried)


def valid_until(session: Session, *, policy: CertificationPolicy) -> pd.Series:
    """Return when each person's certification ends (latest, else carried over from the roll)."""
    return read_ends(session, policy=policy).merged()


def recorded_ends(session: Session) -> pd.Series:
    """Return each person's latest certification end (kept by the last run, plus any since)."""
    kept = kept_ends(session)
    if kept is None:
        return _recorded_ends(session)
    mark, ends = kept
    return _later(ends, _recorded_ends(session, Certification.id > mark))


def _later(ends: pd.Series, added: pd.Series) -> pd.Series:
    """Return per person the later of their end in `ends` and those `added` (by person id)."""
    if added.empty:
        return ends
    return pd.concat([ends, added]).groupby(level=0).max()


def _recorded_ends(session: Session, *where: ColumnElement[bool]) -> pd.Series:
    """Return per person the latest end of their certifications (those matching `where`)."""
    latest = (
        select(Certification.person_id.label("person_id"),
               func.max(Certification.valid_until).label("end"))
        .where(*where).group_by(Certification.person_id).subquery()
    )  # fmt: skip
    frame = _read_columns(
        session, {"person_id": (latest.c.person_id, pa.int64()), "end": (latest.c.end, pa.date32())}
    )
    return pd.Series(_days(frame["end"]), index=frame["person_id"].astype(np.int64))


def _read_columns(
    session: Session, columns: dict[str, tuple[TextColumn, pa.DataType]],
    *where: ColumnElement[bool],
) -> pd.DataFrame:  # fmt: skip
    """Read rows as a frame: as one text the database joins, else row by row (`read_joined`).

    A joined read gives dates as datetime64[D], a row read as dates: `_days` takes either.
    """
    table = read_joined(session, columns, *where)
    if table is None:
        statement = select(*(expr for expr, _ in columns.values())).where(*where)
        return query_frame(session, statement, list(columns))
    return pd.DataFrame({name: _arrow_column(table[name]) for name in columns})


def _arrow_column(column: pa.ChunkedArray) -> Any:
    """Return an Arrow column as NumPy: dates as datetime64[D], text as Python strings."""
    if pa.types.is_string(column.type):
        return column.to_numpy().astype(object)
    return column.to_numpy()


def dates_of(person_ids: pd.Series, dates: pd.Series) -> npt.NDArray[np.datetime64]:
    """Return each person's date from `dates` (by person id; NaT where none), as a column."""
    days = pd.Series(_days(dates), index=dates.index.astype(np.int64))
    found = days.reindex(person_ids.astype(np.int64).to_numpy())
    return found.to_numpy().astype("datetime64[D]")


def _days(column: pd.Series) -> npt.NDArray[np.datetime64]:
    """Return a column of dates as datetime64[D] (no nanosecond limit on far dates)."""
    values = column.to_numpy()
    if values.dtype.kind == "M":
        return values.astype("datetime64[D]")
    if values.dtype == object:
        # Arrow converts date objects in C, ten times as fast as NumPy one by one; what it
        # refuses (text, NumPy's own datetimes) NumPy converts as it always did.
        try:
            return pa.array(values, type=pa.date32(), from_pandas=True).to_numpy(
                zero_copy_only=False
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            pass
    return np.array(column.tolist(), dtype="datetime64[D]")


def certify_persons(
    session: Session,
    *,
    run_id: int,
    as_of: dt.date,
    proofs: pd.DataFrame,
    policy: CertificationPolicy,
    policy_version: str,
) -> int:
    """Certify persons on a fresh proof of life; return how many.

    `proofs` has person_id, benefit_type, source (a CertificationSource) and evidence (a dict).
    A fresh proof renews the cycle whenever it comes.
    """
    valid_months = cycle_days(policy, proofs["benefit_type"], field="valid_months")
    rows = _certification_rows(
        proofs, run_id=run_id, as_of=as_of, policy_version=policy_version,
        source=proofs["source"], valid_months=valid_months, evidence=proofs["evidence"],
    )  # fmt: skip
    if rows:
        insert_records(session, CERTIFICATIONS, rows)
    return len(rows)


def certify_silently(
    session: Session,
    *,
    run_id: int,
    as_of: dt.date,
    strong: pd.DataFrame,
    policy: CertificationPolicy,
    policy_version: str,
    ends: pd.Series | None = None,
    explain: Callable[[npt.ArrayLike], list[dict[str, Any]]] | None = None,
) -> int:
    """Certify strong persons whose certification is due for renewal; return how many.

    `strong` has person_id, benefit_type and reasons. Someone certified recently is not
    certified again until the renewal window of their cycle opens. `ends` is `valid_until`
    if the caller has read it already; `explain` builds the reasons not built yet (None).
    """
    if strong.empty:
        return 0
    if ends is None:
        ends = valid_until(session, policy=policy)
    window = cycle_days(policy, strong["benefit_type"], field="renewal_window_days")
    end = dates_of(strong["person_id"], ends)
    # Someone whose certification ends beyond the renewal window is not certified again yet.
    ahead = (end - np.datetime64(as_of, "D")).astype(np.int64)
    due = strong[np.isnat(end) | (ahead <= window)]
    rows = _certification_rows(
        due, run_id=run_id, as_of=as_of, policy_version=policy_version,
        source=CertificationSource.DATA_COMPARISON,
        valid_months=cycle_days(policy, due["benefit_type"], field="valid_months"),
        evidence=fill_reasons(due, explain),
    )  # fmt: skip
    if rows:
        insert_records(session, CERTIFICATIONS, rows)
    return len(rows)


def _certification_rows(
    persons: pd.DataFrame, *, run_id: int, as_of: dt.date, policy_version: str,
    source: pd.Series | CertificationSource, valid_months: npt.NDArray[np.int64],
    evidence: pd.Series,
) -> list[dict[str, Any]]:  # fmt: skip
    """Return the certification rows of `persons`: dates and cycles computed as columns.

    Only the insert's parameters are made row by row (the bulk write takes dicts).
    """
    until = add_months_array(np.full(len(persons), np.datetime64(as_of, "D")), valid_months)
    sources = source.tolist() if isinstance(source, pd.Series) else [source] * len(persons)
    return [
        {
            "person_id": person_id, "source": person_source, "mark": "certified",
            "certified_on": as_of, "valid_until": end_on, "run_id": run_id,
            "policy_version": policy_version, "evidence": person_evidence,
        }
        for person_id, person_source, end_on, person_evidence in zip(
            persons["person_id"].to_numpy(dtype=np.int64).tolist(), sources,
            until.astype(object).tolist(), evidence.tolist(), strict=True,
        )
    ]  # fmt: skip
