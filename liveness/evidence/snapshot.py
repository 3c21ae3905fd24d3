"""An evidence snapshot: everything known about every person on the roll as of one day.

The run grades from it and the learned estimator trains on it, so both see the same features.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liveness.errors import RollMissing
from liveness.evidence.engines import RangeEvidence
from liveness.evidence.health import HealthPolicy, SourceHealth, source_health
from liveness.evidence.local_engine import LocalEngine, PersonIndex
from liveness.evidence.roll import RollRead, read_roll
from liveness.evidence.store import EvidenceStore
from liveness.scoring import EvidenceFeatures, ScoringPolicy, post_death_traces
from models import (
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
    health: SourceHealth
    trace_count: int = 0
    # Each benefit's last certification on the roll, read with the roll (`RollRead`).
    roll_certified: pd.DataFrame | None = None
    # The person ids [lo, hi) whose rows the snapshot holds; None: everyone's.
    person_range: tuple[int, int] | None = None

    @property
    def outages(self) -> dict[str, list[dt.date]]:
        """Return, per scoring source, its degraded days in the recent window."""
        return self.health.degraded

    @property
    def degraded(self) -> np.ndarray:
        """Return, per scoring source, whether it was degraded in the recent window."""
        return np.array([bool(days) for days in self.outages.values()], dtype=bool)


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


def _first_deaths(deaths: pd.DataFrame) -> pd.Series:
    """Return each person's first death day among the records that act alone."""
    acting = deaths[deaths["match"].isin([m.value for m in ACTING_MATCHES])]
    return acting.groupby("person_id")["died_on"].min()


def _recent_health(
    session: Session, *, as_of: dt.date, scoring: ScoringPolicy, health: HealthPolicy
) -> SourceHealth:
    """Return the scoring sources' health over the recent window.

    A source that collapsed in it is degraded: its silence lowers nobody (grading keeps the
    previous level of whoever it showed before the outage).
    """
    return source_health(
        session, sources=scoring.sources,
        first_day=as_of - dt.timedelta(days=scoring.recent - 1), last_day=as_of, policy=health,
    )  # fmt: skip


def _death_days(first_death: pd.Series, persons: PersonIndex) -> npt.NDArray[np.int32]:
    """Return each indexed person's first death day (-1: none)."""
    death_day = np.full(persons.size, -1, dtype=np.int32)
    known = first_death.index.to_numpy(dtype=np.int64)
    # Ids past int32 are on no roll (the store's person ids are int32).
    known = known[(known >= 0) & (known <= np.iinfo(np.int32).max)]
    index = persons.map(known.astype(np.int32))
    on_roll = index < persons.size
    days = np.array(first_death.loc[known[on_roll]].tolist(), dtype="datetime64[D]")
    # Day numbers count from 1970 and -1 means no death: a death dated before (a typed year,
    # an old record) is still a death, on day 0, its date kept in the death records.
    death_day[index[on_roll]] = np.maximum(days.astype(np.int64), 0)
    return death_day


# Long by design: a linear recipe: deaths, the engine's job, the roll, then the roll's view.
def take_snapshot(
    session: Session,
    *,
    as_of: dt.date,
    store: EvidenceStore,
    scoring: ScoringPolicy,
    health: HealthPolicy,
    keep_roll: bool = False,
) -> EvidenceSnapshot:
    """Read the roll, the long window's traces and death evidence; compute the features.

    The roll is read from the one the last run kept plus the persons changed since; with
    `keep_roll` (the nightly run), the roll read is kept in turn for the next run.

    The store's feature engine (local by default, or Spark) computes the features by person
    id while this thread reads the roll from the database (which runs without holding the
    GIL); the features of the persons on the roll are then picked out. The engine only reads
    the store: every database query it needs is made before it starts.
    """
    deaths = _death_evidence(session, as_of)
    first_death = _first_deaths(deaths)
    top = int(session.scalar(select(func.max(Person.id))) or 0)
    everyone = PersonIndex(np.arange(top + 1, dtype=np.int64))
    engine = store.engine if store.engine is not None else LocalEngine()
    job = engine.features_as_of(
        session, as_of=as_of, store=store, scoring=scoring,
        death_day=_death_days(first_death, everyone),
    )  # fmt: skip
    try:
        read = read_roll(session, keep=keep_roll)
        roll = read.roll
        # A roll whose every benefit ended is still a roll (its deaths may be withdrawn):
        # only one never delivered is missing.
        if roll.empty and top == 0:
            raise RollMissing("the benefit roll is empty: ingest the registry source first")
        health_of_sources = _recent_health(session, as_of=as_of, scoring=scoring, health=health)
    except BaseException:
        job.cancel()
        raise
    evidence = job.result()
    return _on_roll(
        RangeEvidence(
            lo=0, hi=top + 1, features=evidence.features, traces=evidence.traces,
            count=evidence.count,
        ),
        as_of=as_of, read=read, deaths=deaths, first_death=first_death,
        health=health_of_sources, scoring=scoring,
    )  # fmt: skip


def _on_roll(
    evidence: RangeEvidence, *, as_of: dt.date, read: RollRead, deaths: pd.DataFrame,
    first_death: pd.Series, health: SourceHealth, scoring: ScoringPolicy,
) -> EvidenceSnapshot:  # fmt: skip
    """Return the snapshot of the roll's persons, every one in the evidence's range."""
    roll = read.roll
    ids = roll["person_id"].to_numpy(dtype=np.int64)
    # From person ids to the roll's dense index: pick the roll's rows out of the range's.
    persons = PersonIndex(ids)
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
        death_day=death_day,
        features=evidence.features.take(ids - evidence.lo if evidence.lo else ids),
        post_death=post_death, health=health, trace_count=evidence.count,
        roll_certified=read.certified, person_range=(evidence.lo, evidence.hi),
    )  # fmt: skip


def snapshots_by_range(
    session: Session,
    *,
    as_of: dt.date,
    store: EvidenceStore,
    scoring: ScoringPolicy,
    health: HealthPolicy,
    range_persons: int,
    keep_roll: bool = False,
) -> Iterator[EvidenceSnapshot]:
    """Yield the snapshot of the roll's persons a range of person ids at a time.

    The ranges are consecutive, of at most `range_persons` ids from id 0 past the highest;
    each range's snapshot equals `take_snapshot`'s rows of its persons (their features, death
    evidence, certifications and dead's traces), its `trace_count` that range's share of the
    whole count. The roll, the death records and the sources' health are read once, before
    the first range; the engine's features come a range at a time (with the Spark engine, only
    then computed into arrays), so a caller that keeps what it needs of each range holds one
    range's features at a time.
    """
    deaths = _death_evidence(session, as_of)
    first_death = _first_deaths(deaths)
    top = int(session.scalar(select(func.max(Person.id))) or 0)
    read = read_roll(session, keep=keep_roll)
    if read.roll.empty and top == 0:
        raise RollMissing("the benefit roll is empty: ingest the registry source first")
    health_of_sources = _recent_health(session, as_of=as_of, scoring=scoring, health=health)
    everyone = PersonIndex(np.arange(top + 1, dtype=np.int64))
    engine = store.engine if store.engine is not None else LocalEngine()
    for evidence in engine.evidence_by_range(
        session, as_of=as_of, store=store, scoring=scoring,
        death_day=_death_days(first_death, everyone), range_persons=range_persons,
    ):  # fmt: skip
        lo, hi = evidence.lo, evidence.hi
        # The range's persons' rows only: nobody else's roll rows, deaths or certifications.
        yield _on_roll(
            evidence, as_of=as_of,
            read=RollRead(
                rows_between(read.roll, lo, hi), rows_between(read.certified, lo, hi)
            ),
            deaths=rows_between(deaths, lo, hi),
            first_death=first_death[(first_death.index >= lo) & (first_death.index < hi)],
            health=health_of_sources, scoring=scoring,
        )  # fmt: skip


def rows_between(frame: pd.DataFrame, lo: int, hi: int) -> pd.DataFrame:
    """Return the rows of a frame whose `person_id` lies in [lo, hi), numbered from 0."""
    ids = frame["person_id"].to_numpy(dtype=np.int64)
    return frame[(ids >= lo) & (ids < hi)].reset_index(drop=True)
