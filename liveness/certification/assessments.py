"""Which assessments a run stores: those that changed, the new, the stale and the departed.

A night in which few people change writes few rows. A person's assessment is stored when its
gist differs from the one that stood (level, rule, and the facts the reasons cite: the
agreeing sources, an outage's credit and the level it kept, a death and traces after it, the
institution records, a face pass), when the scoring policy changed, when the person is new to
grading, or when the stored one is older than the refresh period (`[run]
assessment_refresh_days`); a person who left the graded roll gets a row marking it (`graded`
false). A published run confirms everybody else's standing row: "the assessments of run R" are
each graded person's latest row at or before R (`models.assessments_as_of`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import Session

from liveness.db import TextColumn, insert_rows, query_frame, read_joined
from liveness.kept import keep_table, kept_table
from liveness.scoring import Grades, fill_reasons
from models import Assessment, Base, Run, RunStatus, assessments_as_of

# Assessments go to the table as plain rows, past the ORM (`insert_rows`).
ASSESSMENTS = Base.metadata.tables["assessments"]
# What stood after the latest run is kept in the roll cache's table under this id, tagged
# with the run (`mark`): the next run reads it instead of finding each person's latest row.
STANDING_CACHE_ID = 2
# Bumped whenever the kept standing frame's columns or their meaning change.
STANDING_FORMAT = 2  # 2: Arrow IPC, no longer Parquet (`liveness.kept.encoded`)
# The standing frame's columns, as read.
STANDING_COLUMNS = ["person_id", "previous", "rule", "gist", "policy_version", "stored_on"]


def assessment_gists(
    grades: Grades, *, post_death: npt.NDArray[Any], face_pass_day: npt.NDArray[Any]
) -> npt.NDArray[np.int64]:
    """Return each person's gist: a hash of what their assessment says, not of drifting numbers.

    The last days and the recent weights move every night for an active person; the level,
    the rule, which sources agree, an outage's credit, a death, the institution records and
    the face pass change only when the assessment does.
    """
    columns: dict[str, npt.NDArray[Any]] = {
        "level": grades.level.astype(np.int64),
        "rule": grades.rule.astype(np.int64),
        # The level an outage's credit kept, where it kept one.
        "kept": np.where(grades.held, grades.previous_level, -1).astype(np.int64),
        "death": grades.death_day.astype(np.int64),
        "post_death": (np.asarray(post_death) > 0).astype(np.int64),
        "face": np.asarray(face_pass_day).astype(np.int64),
    }
    for name, matrix in (
        ("agreeing", grades.agreeing),
        ("credited", grades.credited),
        ("in_care", grades.in_care),
    ):
        columns[name] = _bits(matrix)
    hashed = pd.util.hash_pandas_object(pd.DataFrame(columns), index=False).to_numpy()
    return hashed.view(np.int64)


def _bits(matrix: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Return each row of a person x source flag matrix as one integer (a bit per source)."""
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        return np.zeros(len(matrix), dtype=np.int64)
    packed = np.packbits(matrix.astype(np.bool_), axis=1, bitorder="little")
    # Bytes beyond the eighth fold in by hashing: the gist needs only to tell rows apart.
    if packed.shape[1] <= 8:
        padded = np.zeros((len(packed), 8), dtype=np.uint8)
        padded[:, : packed.shape[1]] = packed
        return padded.view(np.int64).ravel()
    frame = pd.DataFrame(packed)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy().view(np.int64)


def standing_assessments(session: Session, *, run: Run | None, kept: bool = True) -> pd.DataFrame:
    """Return, for each person graded as of `run`, the assessment that stood and when stored.

    Columns: person_id, previous (level), rule, gist (None on rows stored before gists),
    policy_version, stored_on (the as-of date of the run that stored it), by person. Empty
    without a run. The frame the run kept (`keep_standing`) is read when it is the one of
    `run` (with `kept`); else the database's rows, the same frame read slower.
    """
    if run is None:
        return _empty_standing()
    if kept:
        frame = _kept_standing(session, run_id=run.id)
        if frame is not None:
            return frame
    standing = assessments_as_of(run.id)
    stored_on = (
        select(Run.as_of).where(Run.id == standing.run_id).scalar_subquery().label("stored_on")
    )
    columns: dict[str, tuple[TextColumn, pa.DataType]] = {
        "person_id": (standing.person_id, pa.int64()),
        "previous": (standing.level, pa.string()),
        "rule": (standing.rule, pa.string()),
        "gist": (standing.gist, pa.int64()),
        "policy_version": (standing.policy_version, pa.string()),
        "stored_on": (stored_on, pa.date32()),
    }
    # One text the database joins, parsed by Arrow: a million rows without a Python object each.
    table = read_joined(session, columns, nullable=True)
    if table is not None:
        frame = table.to_pandas(date_as_object=True)
    else:
        frame = query_frame(
            session, select(*(column for column, _ in columns.values())), STANDING_COLUMNS
        )
    if frame.empty:
        return _empty_standing()
    frame["previous"] = frame["previous"].astype(object).map(str)
    frame["gist"] = frame["gist"].astype("Int64")
    frame = frame.astype({"person_id": "int64"})
    return frame.sort_values("person_id", ignore_index=True)


def _kept_standing(session: Session, *, run_id: int) -> pd.DataFrame | None:
    """Return the standing frame kept by run `run_id`, or None when there is none to trust."""
    kept = kept_table(
        session, STANDING_CACHE_ID, format=STANDING_FORMAT, columns=STANDING_COLUMNS, mark=run_id
    )
    if kept is None:
        return None
    frame = kept[1].to_pandas(date_as_object=True)
    # Levels, rules and policies stay Arrow-backed text: a Python string per row and column
    # would hold 190 MB at a million persons through the whole run.
    frame["gist"] = frame["gist"].astype("Int64")
    return frame.astype({"person_id": "int64"})


def keep_standing(
    session: Session,
    *,
    run_id: int,
    standing: pd.DataFrame,
    stored: pd.DataFrame,
    as_of: dt.date,
) -> None:
    """Keep what stands after run `run_id` for the next run to read, in this transaction.

    `standing` is what stood before the run; `stored` holds the rows the run wrote (with
    `graded`). A run that rolls back keeps nothing; the next reads the database instead.
    """
    changed = standing["person_id"].isin(stored["person_id"])
    fresh = stored[stored["graded"].to_numpy(dtype=bool)]
    after = pd.concat(
        [
            standing[~changed],
            pd.DataFrame(
                {
                    "person_id": fresh["person_id"].astype("int64"),
                    # Text as pandas' own (Arrow-backed) strings, as the kept frame reads
                    # back: a column of objects would turn a million of them into Python.
                    "previous": fresh["level"].astype("str"),
                    "rule": fresh["rule"].astype("str"),
                    "gist": fresh["gist"].astype("Int64"),
                    "policy_version": fresh["policy_version"].astype("str"),
                    "stored_on": [as_of] * len(fresh),
                }
            ),
        ],
        ignore_index=True,
    ).sort_values("person_id", ignore_index=True, kind="stable")  # two sorted runs: merged
    keep_table(
        session, STANDING_CACHE_ID, format=STANDING_FORMAT, mark=run_id,
        table=pa.Table.from_pandas(after, preserve_index=False),
    )  # fmt: skip


def _empty_standing() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_id": pd.Series(dtype="int64"),
            "previous": pd.Series(dtype=object),
            "rule": pd.Series(dtype=object),
            "gist": pd.Series(dtype="Int64"),
            "policy_version": pd.Series(dtype=object),
            "stored_on": pd.Series(dtype=object),
        }
    )


def changed_assessments(
    *,
    person_id: npt.NDArray[np.int64],
    gist: npt.NDArray[np.int64],
    standing: pd.DataFrame,
    as_of: dt.date,
    policy_version: str,
    refresh_days: int,
) -> npt.NDArray[np.bool_]:
    """Return which of tonight's persons need their assessment stored (see the module's text)."""
    where = pd.Index(standing["person_id"].to_numpy(dtype=np.int64)).get_indexer(person_id)
    found = where >= 0
    store = ~found
    rows = where[found]
    stored_gist = standing["gist"].to_numpy(dtype=np.int64, na_value=0)[rows]
    known = standing["gist"].notna().to_numpy()[rows]
    stored_on = pd.to_datetime(standing["stored_on"]).to_numpy()[rows]
    stale = stored_on <= np.datetime64(as_of - dt.timedelta(days=refresh_days), "ns")
    other_policy = standing["policy_version"].to_numpy(dtype=object)[rows] != policy_version
    store[found] = ~known | (stored_gist != gist[found]) | stale | other_policy
    return store


def store_assessments(
    session: Session,
    *,
    run_id: int,
    assessed: pd.DataFrame,
    gist: npt.NDArray[np.int64],
    standing: pd.DataFrame,
    as_of: dt.date,
    policy_version: str,
    refresh_days: int,
    explain: Callable[[npt.ArrayLike], list[dict[str, Any]]] | None = None,
) -> dict[str, int]:
    """Store tonight's changed assessments and the departures; return the counts stored.

    `assessed` holds person_id, level, score, rule and reasons per graded person, in the
    order of `gist`; reasons not built yet (None) are built by `explain` for those stored.
    Returns `stored` (assessments written), `departed` (persons who left the graded roll
    since the standing run) and `confirmed` (standing assessments left as they are).
    """
    written = write_assessments(
        session, run_id=run_id, assessed=assessed, gist=gist, standing=standing, as_of=as_of,
        policy_version=policy_version, refresh_days=refresh_days, explain=explain,
    )  # fmt: skip
    keep_standing(session, run_id=run_id, standing=standing, as_of=as_of, stored=written.rows)
    return written.counts


@dataclass(frozen=True, eq=False)
class WrittenAssessments:
    """The assessment rows a run wrote (with `graded`), and their counts for its report."""

    rows: pd.DataFrame
    counts: dict[str, int]


def write_assessments(
    session: Session,
    *,
    run_id: int,
    assessed: pd.DataFrame,
    gist: npt.NDArray[np.int64],
    standing: pd.DataFrame,
    as_of: dt.date,
    policy_version: str,
    refresh_days: int,
    explain: Callable[[npt.ArrayLike], list[dict[str, Any]]] | None = None,
) -> WrittenAssessments:
    """Write the changed assessments of `assessed`'s persons and the departures of `standing`'s.

    `store_assessments` without keeping what stands after: a run by partitions writes each
    partition's (its persons' standing rows only), then keeps what stands once, from all.
    """
    person_id = assessed["person_id"].to_numpy(dtype=np.int64)
    store = changed_assessments(
        person_id=person_id, gist=gist, standing=standing, as_of=as_of,
        policy_version=policy_version, refresh_days=refresh_days,
    )  # fmt: skip
    picked = np.flatnonzero(store)
    # Who stood graded and is not tonight: their row says they left, keeping their last level.
    gone = standing[~standing["person_id"].isin(person_id)]
    n_gone = len(gone)
    rows: dict[str, list[Any]] = {
        "run_id": [run_id] * (len(picked) + n_gone),
        "person_id": person_id[picked].tolist() + gone["person_id"].tolist(),
        "level": assessed["level"].to_numpy(dtype=object)[picked].tolist()
        + gone["previous"].tolist(),
        "score": assessed["score"].to_numpy(dtype=float)[picked].tolist() + [0.0] * n_gone,
        "rule": assessed["rule"].to_numpy(dtype=object)[picked].tolist() + gone["rule"].tolist(),
        "reasons": fill_reasons(assessed.iloc[picked], explain).tolist() + [{}] * n_gone,
        "policy_version": [policy_version] * (len(picked) + n_gone),
        "gist": gist[picked].tolist() + [None] * n_gone,
        "graded": [True] * len(picked) + [False] * n_gone,
    }
    insert_rows(session, ASSESSMENTS, rows)
    return WrittenAssessments(
        # Gists are 64-bit: a column holding None as well must not pass through floats.
        rows=pd.DataFrame({**rows, "gist": pd.array(rows["gist"], dtype="Int64")}),
        counts={
            "stored": len(picked),
            "departed": n_gone,
            "confirmed": len(person_id) - len(picked),
        },
    )


def prune_assessments(session: Session, *, today: dt.date, retention_days: int) -> int:
    """Delete the assessments superseded before the retention period; return how many.

    The boundary is the latest published run at least `retention_days` before `today`. Each
    person's latest row at or before it stands for it and every later run, so it stays (but
    a row saying the person left the graded roll goes with everything before it: with no row
    the person is equally not graded); every earlier row of theirs goes. What stood at the
    boundary and at every later run reads back exactly as before.
    """
    boundary = session.scalar(
        select(func.max(Run.id)).where(
            Run.status == RunStatus.PUBLISHED,
            Run.as_of <= today - dt.timedelta(days=retention_days),
        )
    )
    if boundary is None:
        return 0
    latest = (
        select(Assessment.person_id, func.max(Assessment.run_id).label("run_id"))
        .where(Assessment.run_id <= boundary)
        .group_by(Assessment.person_id)
        .subquery()
    )
    standing = (
        select(Assessment.id)
        .join(
            latest,
            and_(Assessment.person_id == latest.c.person_id, Assessment.run_id == latest.c.run_id),
        )
        .where(Assessment.graded)
    )
    deleted = session.execute(
        delete(Assessment).where(Assessment.run_id <= boundary, Assessment.id.not_in(standing))
    )
    return int(deleted.rowcount)  # type: ignore[attr-defined]
