"""The local engine: the store's parts scattered into per-person arrays on this machine.

Each part is read in a thread and scattered by person (or replaced by its kept summary, when
one stands for its traces), so memory does not grow with the traces.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from connectors.threads import read_ahead
from liveness.evidence.engines import (
    EvidenceJob,
    PersonEvidence,
    RangeEvidence,
    ThreadedJob,
    person_ranges,
    ranges_of,
)
from liveness.evidence.parts import day_number
from liveness.evidence.summaries import SummaryCache, summary_key
from liveness.evidence.windows import TraceWindow, WindowPart, WindowPlan
from liveness.scoring import ScoringPolicy
from liveness.scoring.features import FeatureAccumulator, PartSummary

if TYPE_CHECKING:
    from liveness.evidence.store import EvidenceStore


class PersonIndex:
    """Maps roll person ids to the dense person index, trace by trace."""

    def __init__(self, ids: npt.NDArray[np.int64]) -> None:
        self.size = len(ids)
        self.first = int(ids[0]) if self.size else 0
        # A roll of consecutive ids (the usual case) needs a subtraction, not a gather.
        self.contiguous = bool(self.size == 0 or int(ids[-1]) - self.first == self.size - 1)
        self._ids = ids

    @cached_property
    def dense(self) -> npt.NDArray[np.int32]:
        """Return, per person id up to the largest, its dense index (-1: not on the roll)."""
        # Built only for a roll with gaps: a consecutive one is mapped by a subtraction.
        dense = np.full(int(self._ids.max()) + 1 if self.size else 1, -1, dtype=np.int32)
        dense[self._ids] = np.arange(self.size, dtype=np.int32)
        return dense

    def map(self, person_id: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
        """Return the dense index of each person id; `size` for ids not on the roll."""
        nobody = np.int32(self.size)
        if self.contiguous:
            index = person_id - np.int32(self.first) if self.first else person_id
            # One unsigned comparison rejects unlinked (-1) and off-roll ids alike.
            return np.where(index.view(np.uint32) < self.size, index, nobody)
        inside = (person_id >= 0) & (person_id < self.dense.size)
        index = self.dense[np.where(inside, person_id, 0)]
        return np.where(inside & (index >= 0), index, nobody)


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


def _summary_keys(plans: list[tuple[int, WindowPlan]], policy: ScoringPolicy) -> dict[int, str]:
    """Return, per source code, the key under which its parts' summaries are exact."""
    return {
        code: summary_key(policy, source=plan.source, corrections_key=plan.corrections_key())
        for code, plan in plans
    }


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
    # The highest person id asked for, plus one: a summary covering more is of another roll.
    id_space: int
    # The person ids read: all of them, or one range [lo, hi) of several (`evidence_by_range`),
    # whose accumulator holds that range only.
    persons: tuple[int, int] | None = None
    # Whether the summaries' counts are this reading's (in one range of several: the first).
    count_summaries: bool = True

    def items(self) -> Iterator[_Item]:
        """Yield, part by part, its kept summary or its traces.

        A source's parts whose days lie in one age bucket come first, in the plan's order,
        then those a window edge cuts: so a bucket's sum starts from its summarised parts in
        every run, and their group summary (`_bucket_groups`) adds to exactly that sum.
        """
        for source_code, plan in self.plans:
            inside: dict[int, list[WindowPart]] = {}
            cut: list[WindowPart] = []
            for part in plan.parts:
                bucket = None
                if plan.inside(part):
                    bucket = self.accumulator.part_bucket(part.min_day, part.max_day)
                if bucket is None:
                    cut.append(part)
                else:
                    inside.setdefault(bucket, []).append(part)
            for bucket, parts in inside.items():
                yield from self._bucket_groups(source_code, plan, bucket, parts)
            for part in cut:
                for window in plan.read_part(part, self.persons):
                    yield _Batch(source_code, window)
            for window in plan.read_corrections():
                yield _Batch(source_code, window)

    def _bucket_groups(
        self, source_code: int, plan: WindowPlan, bucket: int, parts: list[WindowPart]
    ) -> Iterator[_Item]:
        """Yield the parts of one source in one age bucket: their group summary, or each one.

        Where every part's own summary was kept, their sum is kept as the group's (from the
        second night: a first run keeps only the parts' own), and later runs add that one.
        """
        key = self.keys[source_code]
        paths = [part.path for part in parts]
        grouped = self.persons is None and len(parts) > 1
        if grouped:
            group = self.summaries.load_group(plan.source, bucket, key=key, parts=paths)
            if group is not None and self._stands_for_traces(group):
                yield _Summarised(source_code, bucket, group)
                return
        kept: list[PartSummary] = []
        for part in parts:
            summary = self.summaries.load(part.path, key)
            if summary is not None and self._stands_for_traces(summary):
                kept.append(summary)
                yield _Summarised(source_code, bucket, self._of_range(summary))
            elif self.persons is not None:
                # A range never keeps a summary (it would be partial): it reads its traces.
                for window in plan.read_part(part, self.persons):
                    yield _Batch(source_code, window)
            else:
                summarisable = _Summarisable(source_code, bucket, part, key)
                for window in plan.read_part(part):
                    yield _Batch(source_code, window, summarised=True)
                yield _PartRead(summarisable)
        if grouped and len(kept) == len(parts):
            group = _sum_of(kept)
            if group is not None and self._stands_for_traces(group):
                self.summaries.save_group(plan.source, bucket, key=key, parts=paths, summary=group)

    def _stands_for_traces(self, summary: PartSummary) -> bool:
        """Say whether a summary may replace its part's traces in this snapshot.

        Not when it covers persons beyond today's (its counts would include them), nor when
        someone with death evidence has evidence in it after their death: that needs the
        traces themselves (they are counted one by one as possible use of a dead person's card).
        """
        if summary.n_persons > self.id_space:
            return False
        dead = self.dead < summary.n_persons
        return not bool(np.any(summary.last_day[self.dead[dead]] > self.dead_day[dead]))

    def _of_range(self, summary: PartSummary) -> PartSummary:
        """Return the slice of a summary that this reading's persons make up."""
        if self.persons is None:
            return summary
        lo, hi = self.persons
        settle_day = None if summary.settle_day is None else summary.settle_day[lo:hi]
        return PartSummary(
            weight=summary.weight[lo:hi], last_day=summary.last_day[lo:hi], settle_day=settle_day,
            traces=summary.traces if self.count_summaries else 0,
        )  # fmt: skip


def _sum_of(summaries: list[PartSummary]) -> PartSummary | None:
    """Return the sum of parts' summaries as adding them one by one to zero sums gives it.

    None when they cover different numbers of persons (kept under different rolls).
    """
    first = summaries[0]
    if any(s.n_persons != first.n_persons for s in summaries) or any(
        (s.settle_day is None) != (first.settle_day is None) for s in summaries
    ):
        return None
    weight = first.weight.copy()
    last_day = first.last_day.copy()
    settle_day = None if first.settle_day is None else first.settle_day.copy()
    for summary in summaries[1:]:
        weight += summary.weight
        np.maximum(last_day, summary.last_day, out=last_day)
        if settle_day is not None and summary.settle_day is not None:
            np.maximum(settle_day, summary.settle_day, out=settle_day)
    return PartSummary(
        weight=weight, last_day=last_day, settle_day=settle_day,
        traces=sum(summary.traces for summary in summaries),
    )  # fmt: skip


def _scatter(
    reading: _Reading, *, persons: PersonIndex, death_day: npt.NDArray[np.int32],
    stop: threading.Event | None = None,
) -> PersonEvidence:  # fmt: skip
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
                pending = accumulator.finished(pending)
                accumulator.add_summary(source=part.source, bucket=part.bucket, summary=pending)
                count += pending.traces
                reading.summaries.save(part.part.path, part.key, pending)
            pending = None
            continue
        batch = item.window
        person, kind, day = persons.map(batch.person_id), batch.kind, batch.day
        if item.summarised:
            if pending is None:
                pending = accumulator.empty_summary(item.source)
            pending = accumulator.summarise(pending, person_idx=person, kind_code=kind, day=day)
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
    return PersonEvidence(features=accumulator.result(), traces=traces, count=count)


class LocalEngine:
    """Computes the features on this machine, reading the store's parts from its folder."""

    name = "local"

    def features_as_of(
        self,
        session: Session,
        *,
        as_of: dt.date,
        store: EvidenceStore,
        scoring: ScoringPolicy,
        death_day: npt.NDArray[np.int32],
    ) -> EvidenceJob:
        """Plan the long window's reads now, then scatter them in a worker thread."""
        everyone = PersonIndex(np.arange(len(death_day), dtype=np.int64))
        plans = _plans(session, store=store, policy=scoring, as_of=as_of)
        dead = np.flatnonzero(death_day >= 0)
        reading = _Reading(
            plans=plans,
            accumulator=FeatureAccumulator(
                n_persons=everyone.size, as_of_day=day_number(as_of), policy=scoring
            ),
            summaries=SummaryCache(store.root),
            keys=_summary_keys(plans, scoring),
            dead=dead,
            dead_day=death_day[dead],
            id_space=everyone.size,
        )

        def work(stop: threading.Event) -> PersonEvidence:
            return _scatter(reading, persons=everyone, death_day=death_day, stop=stop)

        # The session's thread, done with the roll, allocates the features while it waits.
        return ThreadedJob(
            work, name="evidence-scatter", before_wait=reading.accumulator.prepare_result
        )

    def evidence_by_range(
        self,
        session: Session,
        *,
        as_of: dt.date,
        store: EvidenceStore,
        scoring: ScoringPolicy,
        death_day: npt.NDArray[np.int32],
        range_persons: int,
    ) -> Iterator[RangeEvidence]:
        """Compute each range's evidence in turn, holding one range's accumulator at a time.

        A range adds its slice of each part's kept summary that stands for the part's traces
        (every summary's count goes with the first range), and reads the traces of the other
        parts in the row groups that may hold its persons (a compacted part is clustered by
        person). A range never keeps a summary, as it would be partial: summaries are kept by
        unpartitioned runs, and one range covering everyone is such a run.
        """
        ranges = person_ranges(len(death_day), range_persons)
        if len(ranges) == 1:
            job = self.features_as_of(
                session, as_of=as_of, store=store, scoring=scoring, death_day=death_day
            )
            yield from ranges_of(job.result(), ranges)
            return
        plans = _plans(session, store=store, policy=scoring, as_of=as_of)
        keys = _summary_keys(plans, scoring)
        dead = np.flatnonzero(death_day >= 0)
        for number, (lo, hi) in enumerate(ranges):
            reading = _Reading(
                plans=plans,
                accumulator=FeatureAccumulator(
                    n_persons=hi - lo, as_of_day=day_number(as_of), policy=scoring
                ),
                summaries=SummaryCache(store.root), keys=keys, dead=dead,
                dead_day=death_day[dead], id_space=len(death_day), persons=(lo, hi),
                count_summaries=number == 0,
            )  # fmt: skip
            evidence = _scatter(
                reading, persons=PersonIndex(np.arange(lo, hi, dtype=np.int64)),
                death_day=death_day[lo:hi],
            )  # fmt: skip
            traces = dict(evidence.traces)
            # The range's dead's traces by person id, as a read of everyone gives them.
            traces["person"] = traces["person"] + np.int32(lo)
            yield RangeEvidence(
                lo=lo, hi=hi, features=evidence.features, traces=traces, count=evidence.count
            )
