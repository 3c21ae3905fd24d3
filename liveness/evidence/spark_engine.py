"""The Spark engine: the evidence features computed with Spark DataFrames over the same store.

It reads the parts the manifest lists (a file without its manifest row does not exist) from
the store's folder or from where a cluster sees it (`hdfs://`, `s3a://`), applies the sources'
corrections exactly as the local reader does, weighs each trace through the policy's weights
(a small broadcast table, not code), and sums per person, source and age bucket in float64.
Only those sums, one row per (person, source) with evidence, and the traces of persons with
death evidence come back to this process, where the local engine's own accumulator turns them
into the same arrays, bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import reduce

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F  # noqa: N812 (Spark's own idiom)
from pyspark.sql.types import (
    BooleanType,
    ByteType,
    DecimalType,
    DoubleType,
    IntegerType,
    ShortType,
    StringType,
    StructField,
    StructType,
)
from sqlalchemy.orm import Session

from liveness.errors import ConfigurationError
from liveness.evidence.engines import (
    EvidenceJob,
    PersonEvidence,
    RangeEvidence,
    ThreadedJob,
    person_ranges,
)
from liveness.evidence.parts import VOIDED_KIND, day_number
from liveness.evidence.store import EvidenceStore
from liveness.scoring import ScoringPolicy
from liveness.scoring.features import EvidenceFeatures, FeatureAccumulator, join_features

# The columns the features need. `record_hash` is Parquet's unsigned 64-bit integer, which
# Spark reads as a 20-digit decimal: only its equality matters here.
TRACE_SCHEMA = StructType(
    [
        StructField("record_hash", DecimalType(20, 0)),
        StructField("person_id", IntegerType()),
        StructField("day", IntegerType()),
        StructField("kind", StringType()),
        StructField("delivery_id", IntegerType()),
        StructField("correction", BooleanType()),
    ]
)
PART_SCHEMA = StructType(
    [
        StructField("file_name", StringType()),
        StructField("source_code", ByteType()),
        StructField("part_order", IntegerType()),
    ]
)
KIND_SCHEMA = StructType(
    [
        StructField("source_code", ByteType()),
        StructField("kind", StringType()),
        StructField("kind_code", ShortType()),
        StructField("weight", DoubleType()),
        StructField("settles", BooleanType()),
    ]
)
# Corrected records whose keys (about 40 bytes each) are broadcast to every task, at most.
BROADCAST_CORRECTED = 2_000_000
_EMPTY_TRACES: dict[str, np.ndarray] = {
    "person": np.empty(0, dtype=np.int32),
    "source": np.empty(0, dtype=np.int8),
    "kind": np.empty(0, dtype=np.int16),
    "day": np.empty(0, dtype=np.int32),
}


@dataclass(frozen=True)
class _Part:
    """A manifest entry as Spark reads it: its URL, its file name, its source and place."""

    url: str
    file_name: str
    source_code: int
    part_order: int


@dataclass(frozen=True, eq=False)
class _Request:
    """Everything the Spark job needs, every database query already made."""

    parts: list[_Part]
    scoring: ScoringPolicy
    as_of_day: int
    low: int
    death_day: npt.NDArray[np.int32]
    # Persons whose sums come back to this process at once (`LIVENESS_SPARK_COLLECT_PERSONS`).
    collect_persons: int = 1_000_000


class SparkEngine:
    """Computes the features with PySpark, on `local[2]`, a cluster or a Spark Connect server."""

    name = "spark"

    def __init__(
        self, *, master: str, evidence_url: str | None = None, shuffle_partitions: int = 8,
        collect_persons: int = 1_000_000,
    ) -> None:  # fmt: skip
        self.master = master
        self.evidence_url = evidence_url
        self.shuffle_partitions = shuffle_partitions
        self.collect_persons = collect_persons

    def spark(self) -> SparkSession:
        """Return the Spark session of this process (one, created on first use)."""
        if self.master.startswith("sc://"):
            builder = SparkSession.builder.remote(self.master)
        else:
            builder = SparkSession.builder.master(self.master).config("spark.ui.enabled", "false")
            if self.master.startswith("local"):
                # On one machine, listing the parts in a Spark job of one task per file costs
                # more than listing them here.
                builder = builder.config(
                    "spark.sql.sources.parallelPartitionDiscovery.threshold", 1 << 16
                )
        builder = builder.appName("liveness").config(
            "spark.sql.shuffle.partitions", str(self.shuffle_partitions)
        )
        try:
            return builder.getOrCreate()
        except PySparkException as error:
            raise ConfigurationError(
                f"LIVENESS_SPARK_MASTER={self.master}: Spark did not start ({error}); "
                "a local master needs a Java runtime, 17 or later"
            ) from None

    def base_url(self, store: EvidenceStore) -> str:
        """Return where Spark reads the store: the configured URL, else the store's folder."""
        if self.evidence_url:
            return self.evidence_url.rstrip("/")
        return store.root.resolve().as_uri()

    def _request(
        self, session: Session, *, as_of: dt.date, store: EvidenceStore, scoring: ScoringPolicy,
        death_day: npt.NDArray[np.int32], collect_persons: int,
    ) -> _Request:  # fmt: skip
        """List the scoring sources' parts from the manifest: the job's one database query."""
        base = self.base_url(store)
        parts = [
            _Part(
                url=f"{base}/{part.path}",
                file_name=part.path.rsplit("/", 1)[-1],
                source_code=code,
                part_order=order,
            )
            for code, source in enumerate(scoring.sources)
            # Every part, in manifest order: a correction anywhere replaces its record.
            for order, part in enumerate(store.parts(session, source=source))
        ]
        return _Request(
            parts=parts, scoring=scoring, as_of_day=day_number(as_of),
            low=day_number(as_of) - (scoring.long - 1), death_day=death_day,
            collect_persons=collect_persons,
        )  # fmt: skip

    def features_as_of(
        self,
        session: Session,
        *,
        as_of: dt.date,
        store: EvidenceStore,
        scoring: ScoringPolicy,
        death_day: npt.NDArray[np.int32],
    ) -> EvidenceJob:
        """List the scoring sources' parts from the manifest now, then run the Spark job."""
        request = self._request(
            session, as_of=as_of, store=store, scoring=scoring, death_day=death_day,
            collect_persons=self.collect_persons,
        )  # fmt: skip
        base = self.base_url(store)
        tag = f"liveness-evidence-{uuid.uuid4().hex[:12]}"
        spark = self.spark()

        def work(stop: threading.Event) -> PersonEvidence:
            spark.addTag(tag)
            try:
                with _explained(base, min(len(death_day), self.collect_persons)):
                    return _evidence(spark, request)
            finally:
                spark.removeTag(tag)

        return _SparkJob(work, spark=spark, tag=tag)

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
        """Run the Spark job once, then bring each range's sums back and yield its evidence.

        Each range is collected at once: `range_persons` takes the place of
        `collect_persons`, within the same limit of the driver.
        """
        request = self._request(
            session, as_of=as_of, store=store, scoring=scoring, death_day=death_day,
            collect_persons=range_persons,
        )  # fmt: skip
        ranges = person_ranges(len(death_day), range_persons)
        with _explained(self.base_url(store), min(len(death_day), range_persons)):
            yield from _range_evidence(self.spark(), request, ranges)


@contextlib.contextmanager
def _explained(base: str, persons: int) -> Iterator[None]:
    """Turn the Spark errors a setting causes into errors that name the setting."""
    try:
        yield
    except AnalysisException as error:
        if error.getCondition() != "PATH_NOT_FOUND":
            raise
        # The manifest lists a part that Spark does not find where it reads the store.
        missing = (error.getMessageParameters() or {}).get("path", "a part")
        raise ConfigurationError(
            f"the Spark engine reads the evidence store at {base}, where {missing} "
            "is missing: LIVENESS_SPARK_EVIDENCE_URL must name the store as the "
            "executors see it, with every part the manifest lists"
        ) from None
    except (Py4JJavaError, PySparkException) as error:
        # Spark names no error condition for it: only its message says so.
        if "spark.driver.maxResultSize" not in str(error):
            raise
        raise ConfigurationError(
            f"the Spark engine's sums for {persons:,} person ids at once (about 200 "
            "bytes each) exceed spark.driver.maxResultSize: lower "
            "LIVENESS_SPARK_COLLECT_PERSONS, or raise spark.driver.maxResultSize and "
            "spark.driver.memory in $SPARK_CONF_DIR/spark-defaults.conf"
        ) from None


class _SparkJob(ThreadedJob):
    """The Spark job of one snapshot; cancelling it interrupts its Spark operations."""

    def __init__(
        self, work: Callable[[threading.Event], PersonEvidence], *, spark: SparkSession, tag: str
    ) -> None:
        self._spark = spark
        self._tag = tag
        super().__init__(work, name="evidence-spark")

    def cancel(self) -> None:
        """Interrupt the job's Spark operations, and wait until the job has stopped."""
        self._spark.interruptTag(self._tag)
        super().cancel()


def _traces(spark: SparkSession, request: _Request) -> DataFrame:
    """Return the long window's traces, corrections applied, with their kinds' codes and weights.

    As the local reader: every version of a corrected record is dropped, and its latest
    correction (by delivery, then manifest order, then row order) added back unless it voids
    the record, if its day lies in the window.
    """
    parts = spark.createDataFrame(
        [(p.file_name, p.source_code, p.part_order) for p in request.parts], PART_SCHEMA
    )
    scoring = request.scoring
    weights = scoring.weight_of_kind.astype(np.float64)  # the local engine's float64 weights
    kinds = spark.createDataFrame(
        [
            (int(scoring.source_of_kind[code]), kind, code, float(weights[code]),
             bool(scoring.settles_of_kind[code]))
            for code, (_, kind) in enumerate(scoring.kinds)
        ],
        KIND_SCHEMA,
    )  # fmt: skip
    stored = (
        spark.read.schema(TRACE_SCHEMA)
        .parquet(*[p.url for p in request.parts])
        .select(
            *TRACE_SCHEMA.fieldNames(),
            F.col("_metadata.file_name").alias("file_name"),
            F.col("_metadata.row_index").alias("row_index"),
        )
        .join(F.broadcast(parts), "file_name")
    )
    corrections = stored.where(F.col("correction"))
    newest = Window.partitionBy("source_code", "record_hash").orderBy(
        F.coalesce(F.col("delivery_id"), F.lit(-1)).desc(),
        F.col("part_order").desc(),
        F.col("row_index").desc(),
    )
    latest = (
        corrections.withColumn("newest", F.row_number().over(newest))
        .where((F.col("newest") == 1) & ~F.coalesce(F.col("kind") == VOIDED_KIND, F.lit(False)))
    )  # fmt: skip
    in_window = F.col("day").between(request.low, request.as_of_day)
    columns = ["source_code", "person_id", "day", "kind"]
    corrected = corrections.select("source_code", "record_hash").distinct()
    # Corrected records are few: sent to every task, they spare shuffling every trace to drop
    # them (which cost half the CPU of the features' job); past the limit, Spark's sort-merge.
    if corrected.count() <= BROADCAST_CORRECTED:
        corrected = F.broadcast(corrected)
    rows = stored.where(in_window).join(corrected, ["source_code", "record_hash"], "left_anti")
    traces = rows.select(columns).unionByName(latest.where(in_window).select(columns))
    return traces.join(F.broadcast(kinds), ["source_code", "kind"], "left")


def _linked_traces(spark: SparkSession, request: _Request) -> DataFrame:
    """Return the traces of the person ids asked for, of the policy's kinds."""
    n = len(request.death_day)
    return _traces(spark, request).where(
        F.col("person_id").between(0, n - 1) & F.col("kind_code").isNotNull()
    )


def _evidence(spark: SparkSession, request: _Request) -> PersonEvidence:
    """Run the Spark job: sums per (person, source) and the dead's traces, into arrays.

    The sums come back a range of person ids at a time (`collect_persons`), each range turned
    into its features before the next is collected: this process never holds more than one
    range's sums and accumulator beside the features, and no collect exceeds the driver's
    limit whatever the roll.
    """
    n = len(request.death_day)
    count = 0
    dead: list[dict[str, np.ndarray]] = []

    def blocks() -> Iterator[EvidenceFeatures]:
        nonlocal count
        for block in _range_evidence(spark, request, person_ranges(n, request.collect_persons)):
            count += block.count
            dead.append(block.traces)
            yield block.features

    features = join_features(blocks(), n_persons=n)
    traces = {key: np.concatenate([block[key] for block in dead]) for key in _EMPTY_TRACES}
    return PersonEvidence(features=features, traces=traces, count=count)


def _range_evidence(
    spark: SparkSession, request: _Request, ranges: list[tuple[int, int]]
) -> Iterator[RangeEvidence]:
    """Yield each range's evidence: its features from its sums, and its dead's traces."""
    if not request.parts:
        for lo, hi in ranges:
            empty = FeatureAccumulator(
                n_persons=hi - lo, as_of_day=request.as_of_day, policy=request.scoring
            )
            yield RangeEvidence(
                lo=lo, hi=hi, features=empty.result(), traces=_EMPTY_TRACES, count=0
            )
        return
    traces = _linked_traces(spark, request)
    # The dead are few: their traces come back at once, before the ranges.
    dead = _dead_traces(spark, traces, request.death_day)
    for block in _sums_by_range(traces, request, ranges):
        inside = (dead["person"] >= block.lo) & (dead["person"] < block.hi)
        yield dataclasses.replace(
            block, traces={key: values[inside] for key, values in dead.items()}
        )


def _sums_by_range(
    traces: DataFrame, request: _Request, ranges: list[tuple[int, int]]
) -> Iterator[RangeEvidence]:
    """Sum the traces per (person, source) and age bucket; yield each range's features.

    The dead's traces are not in what is yielded. With several ranges the job's result is kept
    by Spark (memory, then disk) and each range read from it, so the traces are scanned once.
    """
    windows = FeatureAccumulator.windows_of(request.scoring)
    age = F.lit(request.as_of_day) - F.col("day")
    # A trace's age bucket: how many window edges its age reaches (as np.searchsorted, right).
    bucket = reduce(
        lambda total, edge: total + F.when(age >= edge, 1).otherwise(0), windows, F.lit(0)
    )
    evidence = F.col("weight") > 0
    sums: list[Column] = [
        F.sum(F.when(bucket == b, F.col("weight")).otherwise(F.lit(0.0))).alias(f"bucket_{b}")
        for b in range(len(windows) + 1)
    ]
    totals = traces.groupBy("person_id", "source_code").agg(
        *sums,
        F.coalesce(F.max(F.when(evidence, F.col("day"))), F.lit(-1)).alias("last_day"),
        F.coalesce(F.max(F.when(evidence & F.col("settles"), F.col("day"))), F.lit(-1)).alias(
            "settle_day"
        ),
        F.count(F.lit(1)).alias("traces"),
    )
    if len(ranges) > 1:
        # Sorted by person within each partition, the kept result's column batches each hold
        # a narrow band of persons, and a range's read skips the batches outside it (Spark's
        # in-memory partition pruning on their min/max): the ranges read it once in all.
        totals = totals.sortWithinPartitions("person_id").persist(StorageLevel.MEMORY_AND_DISK)
    try:
        for lo, hi in ranges:
            chunk = (
                totals if len(ranges) == 1 else totals.where(F.col("person_id").between(lo, hi - 1))
            )
            table = chunk.toArrow()
            yield RangeEvidence(
                lo=lo, hi=hi, features=_range_features(table, lo=lo, hi=hi, request=request),
                traces=_EMPTY_TRACES, count=int(_column(table, "traces", np.int64).sum()),
            )  # fmt: skip
    finally:
        if len(ranges) > 1:
            # After a failure (a cancelled job, a lost session), releasing the kept result
            # may fail too: the first error is the one to report.
            with contextlib.suppress(Py4JJavaError, PySparkException):
                totals.unpersist()


def _range_features(table: pa.Table, *, lo: int, hi: int, request: _Request) -> EvidenceFeatures:
    """Turn one range's collected sums (person ids lo..hi-1) into that range's features."""
    accumulator = FeatureAccumulator(
        n_persons=hi - lo, as_of_day=request.as_of_day, policy=request.scoring
    )
    accumulator.add_totals(
        person_idx=_column(table, "person_id", np.int32) - np.int32(lo),
        source=_column(table, "source_code", np.int8),
        bucket_weight=np.stack(
            [_column(table, f"bucket_{b}", np.float64) for b in range(accumulator.buckets)],
            axis=1,
        ),
        last_day=_column(table, "last_day", np.int32),
        settle_day=_column(table, "settle_day", np.int32),
    )
    return accumulator.result()


def _dead_traces(
    spark: SparkSession, traces: DataFrame, death_day: npt.NDArray[np.int32]
) -> dict[str, np.ndarray]:
    """Return the traces dated after a death of the person, one by one (post-death use)."""
    dead = np.flatnonzero(death_day >= 0)
    if dead.size == 0:
        return dict(_EMPTY_TRACES)
    deaths = spark.createDataFrame(
        pa.table({
            "person_id": pa.array(dead, pa.int32()),
            "death_day": pa.array(death_day[dead], pa.int32()),
        })
    )  # fmt: skip
    kept = (
        traces.join(F.broadcast(deaths), "person_id")
        .where(F.col("day") > F.col("death_day"))
        .select("person_id", "source_code", "kind_code", "day")
        .toArrow()
    )
    return {
        "person": _column(kept, "person_id", np.int32),
        "source": _column(kept, "source_code", np.int8),
        "kind": _column(kept, "kind_code", np.int16),
        "day": _column(kept, "day", np.int32),
    }


def _column(table: pa.Table, name: str, dtype: type[np.generic]) -> np.ndarray:
    """Return one column of a collected table as a NumPy array of `dtype`."""
    return table[name].to_numpy().astype(dtype, copy=False)
