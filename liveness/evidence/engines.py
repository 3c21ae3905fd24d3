"""One interface, two engines: what computes the evidence features of the roll as of a day.

The run asks an engine for features as of a date and gets the same arrays whichever engine
computed them: the local engine scatters the store's parts on this machine (with its kept
summaries), the Spark engine reads the same Parquet store with Spark DataFrames, on `local[2]`
or on the cluster a province already runs. Nothing outside the engines knows which one ran.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from liveness.errors import ConfigurationError
from liveness.scoring import EvidenceFeatures, ScoringPolicy

if TYPE_CHECKING:
    from liveness.evidence.store import EvidenceStore

__all__ = [
    "EvidenceJob", "FeatureEngine", "PersonEvidence", "RangeEvidence", "person_ranges",
    "ranges_of", "spark_engine",
]  # fmt: skip


@dataclass(frozen=True, eq=False)
class PersonEvidence:
    """What an engine leaves behind: features by person id, the dead's traces and a count.

    `features` is indexed by person id (0 to the highest id asked for); `traces` holds, one by
    one, traces (person id, source code, kind code, day) of persons with death evidence: at
    least every evidence-bearing one dated after their death (the local engine keeps the others
    it happened to read, Spark none); `count` counts the linked traces of known kinds read in
    the long window.
    """

    features: EvidenceFeatures
    traces: dict[str, np.ndarray]
    count: int


@dataclass(frozen=True, eq=False)
class RangeEvidence:
    """The evidence of person ids `lo`..`hi`-1: one range of a read by ranges.

    `features` is indexed by person id less `lo`; `traces` holds the dead's traces among
    these persons (person ids, not offsets), as `PersonEvidence.traces` does; `count` is this
    range's share of the read's count: summed over the ranges of one read, `PersonEvidence.count`.
    """

    lo: int
    hi: int
    features: EvidenceFeatures
    traces: dict[str, np.ndarray]
    count: int


def person_ranges(n_persons: int, size: int) -> list[tuple[int, int]]:
    """Return consecutive ranges [lo, hi) of at most `size` person ids covering 0..n_persons-1."""
    if size < 1:
        raise ValueError(f"a range holds at least one person id, not {size}")
    return [(lo, min(lo + size, n_persons)) for lo in range(0, n_persons, size)] or [(0, 0)]


def ranges_of(evidence: PersonEvidence, ranges: list[tuple[int, int]]) -> Iterator[RangeEvidence]:
    """Hand out, range by range, evidence computed for everyone at once.

    The whole read's count goes with the first range.
    """
    person = evidence.traces["person"]
    for index, (lo, hi) in enumerate(ranges):
        inside = (person >= lo) & (person < hi)
        yield RangeEvidence(
            lo=lo, hi=hi, features=evidence.features.take(np.arange(lo, hi)),
            traces={key: values[inside] for key, values in evidence.traces.items()},
            count=evidence.count if index == 0 else 0,
        )  # fmt: skip


class EvidenceJob(Protocol):
    """Evidence being computed while the caller reads the roll from the database."""

    def result(self) -> PersonEvidence:
        """Wait for the evidence and return it."""
        ...

    def cancel(self) -> None:
        """Stop the computation and wait until it has stopped."""
        ...


class FeatureEngine(Protocol):
    """Computes the evidence features that grading consumes, as of one day."""

    name: str

    def features_as_of(
        self,
        session: Session,
        *,
        as_of: dt.date,
        store: EvidenceStore,
        scoring: ScoringPolicy,
        death_day: npt.NDArray[np.int32],
    ) -> EvidenceJob:
        """Start computing the evidence of persons 0..len(death_day)-1 as of `as_of`.

        `death_day` holds each person id's first death day (store day number, -1: none): their
        traces are kept one by one. Every database query is made before this returns; the
        job itself only reads the store.
        """
        ...

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
        """Yield the evidence of persons 0..len(death_day)-1 as of `as_of`, a range at a time.

        Consecutive ranges of at most `range_persons` ids (`person_ranges`); joined, the same
        as `features_as_of`'s. Each range's features are computed when it is asked for, so the
        caller holds one range's at a time.
        """
        ...


class ThreadedJob:
    """A job run in a worker thread, given an event that asks it to stop."""

    def __init__(
        self,
        work: Callable[[threading.Event], PersonEvidence],
        *,
        name: str,
        before_wait: Callable[[], None] | None = None,
    ) -> None:
        self._stop = threading.Event()
        # Work the waiting thread can do for the worker before it blocks (see `result`).
        self._before_wait = before_wait
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._future: Future[PersonEvidence] = pool.submit(work, self._stop)
        # The thread ends with its work: nothing else is ever submitted to this pool.
        pool.shutdown(wait=False)

    def result(self) -> PersonEvidence:
        """Do `before_wait` on this thread unless the work is done, then wait for the evidence."""
        if self._before_wait is not None and not self._future.done():
            self._before_wait()
        return self._future.result()

    def cancel(self) -> None:
        """Ask the work to stop, and wait until it has."""
        self._stop.set()
        self._future.exception()


def spark_engine(
    *, master: str, evidence_url: str | None, shuffle_partitions: int,
    collect_persons: int = 1_000_000,
) -> FeatureEngine:  # fmt: skip
    """Return the Spark engine, or say clearly what is missing to run it."""
    if importlib.util.find_spec("pyspark") is None:
        raise ConfigurationError(
            "LIVENESS_ENGINE=spark needs PySpark, which is not installed: "
            "pip install 'liveness[spark]' (and a Java runtime, 17 or later)"
        )
    from liveness.evidence.spark_engine import SparkEngine

    return SparkEngine(
        master=master, evidence_url=evidence_url, shuffle_partitions=shuffle_partitions,
        collect_persons=collect_persons,
    )  # fmt: skip
