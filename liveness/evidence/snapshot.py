"""An evidence snapshot: everything known about every person on the roll as of one day.

The run grades from it and the learned estimator trains on it, so both see the same features.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.threads import read_ahead
from liveness.errors import RollMissing
from liveness.evidence.health import HealthPolicy, SourceHealth, source_health
from liveness.evidence.parts import day_number
from liveness.evidence.roll import kept_roll
from liveness.evidence.store import EvidenceStore
from liveness.evidence.summaries import SummaryCache, summary_key
from liveness.evidence.windows import TraceWindow, WindowPart, WindowPlan
from liveness.scoring import EvidenceFeatures, ScoringPolicy, post_death_traces
from liveness.scoring.features import FeatureAccumulator, PartSummary
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


class _PersonIndex:
    """Maps roll person ids to the dense person index, trace by trace."""

    def __init__(self, ids: npt.NDArray[np.int64]) -> None:
        self.size = len(ids)
        self.first = int(ids[0]) if self.size else 0
        # A roll of consecutive ids (the usual case) needs a subtraction, not a gather.
        self.contiguous = bool(self.size == 0 or int(ids[-1]) - self.first == self.size - 1)
        self.dense = np.full(int(ids.max()) + 1 if self.size else 1, -1, dtype=np.int32)
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


# Items read ahead while the current one is scattered (each a few tens of MB).
READ_AHEAD = 2


@dataclass(frozen=True, eq=False)
class _Summarised:
    """A part whose kept summary stands for its traces."""

    source: int
    bucket: int
    summary: PartSummary


@dataclass(frozen=True, eq=False)
class _Batch:
    """Traces read from a part; `summarised` when the part's summary is to be kept."""

    source: int
    window: TraceWindow
    summarised: bool = False


@dataclass(frozen=True, eq=False)
class _PartRead:
    """The end of a summarisable part's batches: its summary can now be kept."""

    part: _Summarisable


@dataclass(frozen=True, eq=False)
class _Summarisable:
    """A part whose days all fall in one age bucket, and where its summary is kept."""

    source: int
    bucket: int
    part: WindowPart
    key: str


_Item = _Summarised | _Batch | _PartRead


def _plans(
    session: Session, *, store: EvidenceStore, policy: ScoringPolicy, as_of: dt.date
) -> list[tuple[int, WindowPlan]]:
    """Plan the long window's reads, source by source (their database queries made now)."""
    first_day = as_of - dt.timedelta(days=policy.long - 1)
    plans = []
    for source_code, source in enumerate(policy.sources):
        plan = store.window_plan(
            session, source=source, first_day=first_day, last_day=as_of,
            kinds=policy.kind_codes(source),
        )  # fmt: skip
        plans.append((source_code, plan))
    return plans


@dataclass(frozen=True, eq=False)
class _Reading:
    """What the reading thread needs to choose between a part's summary and its traces."""

    plans: list[tuple[int, WindowPlan]]
    accumulator: FeatureAccumulator
    summaries: SummaryCache
    keys: dict[int, str]
    # Person ids with death evidence, and their death days: a summary hides their traces.
    dead: npt.NDArray[np.int64]
    dead_day: npt.NDArray[np.int32]

    def items(self) -> Iterator[_Item]:
        """Yield, part by part, its kept summary or its traces."""
        for source_code, plan in self.plans:
            for part in plan.parts:
                bucket = None
                if plan.inside(part):
                    bucket = self.accumulator.part_bucket(part.min_day, part.max_day)
                if bucket is None:
                    for window in plan.read_part(part):
                        yield _Batch(source_code, window)
                    continue
                key = self.keys[source_code]
                summary = self.summaries.load(part.path, key)
                if summary is not None and self._stands_for_traces(summary):
                    yield _Summarised(source_code, bucket, summary)
                    continue
                summarisable = _Summarisable(source_code, bucket, part, key)
                for window in plan.read_part(part):
                    yield _Batch(source_code, window, summarised=True)
                yield _PartRead(summarisable)
            for window in plan.read_corrections():
                yield _Batch(source_code, window)

    def _stands_for_traces(self, summary: PartSummary) -> bool:
        """Say whether a summary may replace its part's traces in this snapshot.

        Not when it covers persons beyond today's (its counts would include them), nor when
        someone with death evidence has evidence in it after their death: that needs the
        traces themselves (they are counted one by one as possible use of a dead person's card).
        """
        if summary.n_persons > self.accumulator.n_persons:
            return False
        dead = self.dead < summary.n_persons
        return not bool(np.any(summary.last_day[self.dead[dead]] > self.dead_day[dead]))


def _scatter(
    reading: _Reading, *, persons: _PersonIndex, death_day: npt.NDArray[np.int32],
    stop: threading.Event | None = None,
) -> _Evidence:  # fmt: skip
    """Add every part's summary or scatter its traces into the features; keep the dead's traces.

    Only the traces of persons with death evidence are kept one by one (post-death use of
    their cards); everyone else lives on as features, so memory does not grow with traces.
    A part read whole in one age bucket is summarised, and its summary kept for later runs.
    """
    accumulator = reading.accumulator
    # The spare last entry is "nobody on the roll", who never died.
    died = np.append(death_day >= 0, False)
    anyone_died = bool(died.any())
    kept: dict[str, list[np.ndarray]] = {"person": [], "source": [], "kind": [], "day": []}
    count = 0
    pending: PartSummary | None = None
    for item in read_ahead(reading.items(), ahead=READ_AHEAD, name="evidence-read-ahead"):
        if stop is not None and stop.is_set():
            break
        if isinstance(item, _Summarised):
            accumulator.add_summary(source=item.source, bucket=item.bucket, summary=item.summary)
            count += item.summary.traces
            continue
        if isinstance(item, _PartRead):
            if pending is not None:
                part = item.part
                accumulator.add_summary(source=part.source, bucket=part.bucket, summary=pending)
                count += pending.traces
                reading.summaries.save(part.part.path, part.key, pending)
            pending = None
            continue
        batch = item.window
        person, kind, day = persons.map(batch.person_id), batch.kind, batch.day
        if item.summarised:
            part_summary = accumulator.summarise(
                person_idx=person, source=item.source, kind_code=kind, day=day
            )
            pending = part_summary if pending is None else pending.plus(part_summary)
        else:
            # Traces of nobody on the roll, or of unknown kinds, are not filtered out (that
            # costs more than the scatter): the accumulator gives them a spare row, no weight.
            count += int(np.count_nonzero((person < persons.size) & (kind >= 0)))
            accumulator.add(person_idx=person, source=item.source, kind_code=kind, day=day)
        if anyone_died:
            dead = died[person] & (kind >= 0)
            if dead.any():
                kept["person"].append(person[dead])
                kept["source"].append(np.full(int(dead.sum()), item.source, dtype=np.int8))
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


# Long by design: a linear recipe: deaths, plans, the threaded read, then the roll's view.
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
    plans = _plans(session, store=store, policy=scoring, as_of=as_of)
    everyone_death_day = _death_days(first_death, everyone)
    dead = np.flatnonzero(everyone_death_day >= 0)
    reading = _Reading(
        plans=plans,
        accumulator=FeatureAccumulator(
            n_persons=everyone.size, as_of_day=day_number(as_of), policy=scoring
        ),
        summaries=SummaryCache(store.root),
        keys={
            code: summary_key(scoring, source=plan.source, corrections_key=plan.corrections_key())
            for code, plan in plans
        },
        dead=dead,
        dead_day=everyone_death_day[dead],
    )
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidence-scatter") as pool:
        scattered = pool.submit(
            _scatter, reading, persons=everyone, death_day=everyone_death_day, stop=stop
        )
        try:
            roll = kept_roll(session, keep=keep_roll)
            # A roll whose every benefit ended is still a roll (its deaths may be withdrawn):
            # only one never delivered is missing.
            if roll.empty and top == 0:
                raise RollMissing("the benefit roll is empty: ingest the registry source first")
            # A source that collapsed in the recent window is degraded: its silence lowers
            # nobody (grading keeps the previous level of whoever it showed before the outage).
            health_of_sources = source_health(
                session, sources=scoring.sources,
                first_day=as_of - dt.timedelta(days=scoring.recent - 1), last_day=as_of,
                policy=health,
            )  # fmt: skip
        except BaseException:
            stop.set()
            raise
        evidence = scattered.result()
    # From person ids to the roll's dense index: pick the roll's rows out of everyone's.
    rows = roll["person_id"].to_numpy(dtype=np.int64)
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
        health=health_of_sources, trace_count=evidence.count,
    )  # fmt: skip
