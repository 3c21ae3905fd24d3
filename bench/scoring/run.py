"""Benchmark the evidence and grading stage against DuckDB over the same Parquet store.

``python -m bench.scoring.run [--persons 1000000] [--traces 100000000] [--months 12]
[--workdir DIR]`` builds a roll in a temporary SQLite database and writes a year of traces
straight into the evidence store (a realistic mix of sources and kinds, skewed activity per
person), compacts it, then measures in fresh interpreters (so that each peak RSS is its own):

- ours: ``take_snapshot`` + ``grade`` as of the last day, end to end, as the nightly run
  does it: four times, first with nothing kept (``ours_first_s``: every trace read, whole
  roll read, part summaries and the roll kept), then as after a change of policy
  (``ours_changed_s``: no summary exact, every trace read, the kept roll read), then the
  night after (``ours_next_s``: the parts' summaries added, their sums by age bucket kept as
  group summaries), then as every later night (``ours_s``: the group summaries of the parts
  that lie in one age bucket added, the rest read; the kept roll read); all must give the
  same features, exactly;
- duckdb: the same features (last day per person and source, weighted counts in the recent
  window, agreeing sources) in SQL over the same files, the faster of a wide ``FILTER``
  aggregate and a two-step person-source aggregate, checked against ours on a sample;
- scan: a bare pyarrow read of the needed columns, the floor;
- increment: one more day of traces (300 per 1,000 persons) appended, then everyone regraded;
- spark (``--engine spark``): the same snapshot and grading with the Spark engine
  (``LIVENESS_ENGINE=spark`` on ``--spark-master``, ``local[2]`` by default), its fixed cost
  (session start and a first tiny query, ``spark_fixed_s``) timed apart from the run itself
  (``spark_s``), its features and levels checked against ours for every person; with
  ``--spark-evidence-url`` the executors read the store from there (a copy on ``hdfs://``);
- ranges (``--range-persons N``): the snapshot taken and graded range by range of N person
  ids with ``--engine``'s engine, as a run would (``GradingByRange``: the previous levels, the
  guard's counts and verdict), only each person's level kept, every level checked against the
  whole run's; its time and peak memory (``ranges_*``).

The last line holds the figures as ``key=value`` pairs; ``ours_sys_s`` and ``duckdb_sys_s`` are
the kernel's share of the nightly run's and DuckDB's CPU (page faults above all: on a virtual
machine that returns freed memory to its host, memory touched for the first time costs far
more than on bare metal, see bench/README.md).

Building the full size takes about 10 minutes. With ``--keep --workdir DIR`` the built store
stays in ``DIR/bench-scoring-<persons>-<traces>-<months>-<seed>`` and the next run with the
same sizes reuses it (``--build-only`` builds and stops). The increment always appends to a
throwaway clone (database copied, evidence files hard-linked), so a kept store stays as built.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.child import measure_in_child, peak_rss_mb

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"
START = dt.date(2025, 1, 1)
# Traces generated and written per part: bounds the generator's memory.
CHUNK_ROWS = 2_000_000
SAMPLE = 5_000
# Share of all traces by source, and of each source's traces by kind (a city's typical mix).
SOURCE_SHARE = {"transit": 0.45, "card_txn": 0.33, "medical": 0.16, "face": 0.06}
KIND_SHARE: dict[str, dict[str, float]] = {
    "transit": {"tap_face": 0.35, "tap": 0.60, "tap_face_failed": 0.05},
    "card_txn": {"pos_pin": 0.25, "pos_tap": 0.25, "counter": 0.08, "atm": 0.12, "online": 0.15,
                 "auto_debit": 0.15},
    "medical": {"outpatient": 0.45, "emergency": 0.04, "inpatient_admission": 0.03,
                "inpatient_discharge": 0.03, "pharmacy": 0.40, "home_care": 0.05},
    "face": {"pass_app": 0.45, "pass_kiosk": 0.15, "pass_assisted": 0.15, "pass_proxy": 0.10,
             "fail": 0.08, "no_liveness": 0.04, "no_face": 0.03},
}  # fmt: skip
UNLINKED_SHARE = 0.02
INCREMENT_PER_PERSON = 0.3
# Figures printed as integers on the last line.
INTEGERS = ("persons", "traces", "spark_equal", "spark_tasks", "ranges_count")
# Marks a kept work folder whose store is built and compacted (--keep).
BUILT = "built"


def _services(workdir: Path, **engine: Any) -> Any:
    from liveness.services import Services
    from liveness.settings import Settings

    settings = Settings(
        database_url=f"sqlite:///{workdir / 'state.sqlite'}",
        evidence_dir=workdir / "evidence",
        config_dir=CONFIG_DIR,
        **engine,
    )
    return Services(settings)


def _day(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


# ------------------------------------------------------------------------------ building


def build_roll(services: Any, *, persons: int, seed: int) -> None:
    """Insert `persons` persons, each drawing one benefit, with ids 1..persons."""
    rng = np.random.default_rng([seed, 1])
    benefits = np.array(["enterprise_pension", "institution_pension", "resident_pension"])
    kind = benefits[rng.choice(3, persons, p=[0.6, 0.1, 0.3])]
    amount = rng.integers(150_000, 800_000, persons) / 100
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    with services.engine.begin() as connection:
        for start in range(0, persons, 200_000):
            ids = range(start + 1, min(start + 200_000, persons) + 1)
            connection.exec_driver_sql(
                "INSERT INTO persons (id, person_ref, id_number, id_status, name, sex, birth_date,"
                " region_code, grid_code, created_at, updated_at)"
                " VALUES (?, ?, ?, 'valid', ?, 'F', '1950-01-01', '330702', ?, ?, ?)",
                [(i, f"P{i:08d}", f"3307021950{i:08d}", f"N{i}", f"G{i // 300:04d}", now, now)
                 for i in ids],
            )  # fmt: skip
            connection.exec_driver_sql(
                "INSERT INTO benefits (person_id, benefit_type, monthly_amount, benefit_start,"
                " status, updated_at) VALUES (?, ?, ?, '2010-01-01', 'active', ?)",
                [(i, kind[i - 1], float(amount[i - 1]), now) for i in ids],
            )


def _deliveries(services: Any) -> dict[str, int]:
    from models import Delivery

    ids = {}
    with services.sessions.begin() as session:
        for source in SOURCE_SHARE:
            row = Delivery(
                source=source, file_name="bench", path="bench", checksum="0" * 64, size_bytes=0,
                format="parquet", encoding="utf-8", status="loaded",
            )  # fmt: skip
            session.add(row)
            session.flush()
            ids[source] = row.id
    return ids


def _activity(persons: int, seed: int) -> np.ndarray:
    """Return the cumulative share of traces per person: most are quiet, a few very active."""
    rng = np.random.default_rng([seed, 2])
    weight = rng.lognormal(mean=0.0, sigma=1.2, size=persons)
    weight[rng.random(persons) < 0.04] = 0.0  # no trace at all: the weak cases
    cumulative = np.cumsum(weight)
    return cumulative / cumulative[-1]


def trace_table(
    *, source: str, count: int, first_day: int, days: int, activity: np.ndarray,
    delivery_id: int, rng: np.random.Generator, serial: int,
) -> pa.Table:  # fmt: skip
    """Return `count` evidence-store rows of one source over the given days."""
    person = np.searchsorted(activity, rng.random(count), side="right").astype(np.int32) + 1
    person = np.minimum(person, activity.size).astype(np.int32)
    person[rng.random(count) < UNLINKED_SHARE] = -1
    day = (first_day + rng.integers(0, days, count)).astype(np.int32)
    kinds = list(KIND_SHARE[source])
    kind = rng.choice(len(kinds), count, p=list(KIND_SHARE[source].values()))
    seconds = day.astype(np.int64) * 86_400 + rng.integers(0, 86_400, count)
    number = np.arange(serial, serial + count, dtype=np.int64)
    record_id = pc.binary_join_element_wise(source[0].upper(), number.astype(str), "")
    link_key = pc.binary_join_element_wise("C", person.astype(str), "")
    return pa.table(
        {
            "record_id": record_id,
            "record_hash": pa.array(
                number.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(len(source)),
                pa.uint64(),
            ),
            "person_id": pa.array(person),
            "day": pa.array(day),
            "event_at": pa.array(seconds, pa.timestamp("s")).cast(pa.timestamp("s", tz="UTC")),
            "kind": pa.DictionaryArray.from_arrays(
                pa.array(kind.astype(np.int32)), pa.array(kinds)
            ).cast(pa.string()),
            "link": pa.array(np.where(person >= 0, "card", "none")),
            "link_key": link_key,
            "delivery_id": pa.array(np.full(count, delivery_id, dtype=np.int32)),
            "correction": pa.array(np.zeros(count, dtype=bool)),
        }
    )


def _months(months: int) -> Iterator[tuple[str, int, int]]:
    """Yield (label, first day number, days) of each month from START."""
    for index in range(months):
        year, month = START.year + index // 12, index % 12 + 1
        first = dt.date(year, month, 1)
        after = dt.date(year + month // 12, month % 12 + 1, 1)
        yield f"{year:04d}-{month:02d}", _day(first), (after - first).days


def _add_volumes(session: Any, *, source: str, day: np.ndarray) -> None:
    from models import SourceVolume

    values, counts = np.unique(day, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        when = dt.date(1970, 1, 1) + dt.timedelta(days=value)
        existing = session.get(SourceVolume, (source, when))
        if existing is None:
            session.add(SourceVolume(source=source, day=when, traces=count))
        else:
            existing.traces += count


def build_traces(services: Any, *, persons: int, traces: int, months: int, seed: int) -> None:
    """Write the year's traces as parts of the evidence store, a few per (source, month)."""
    store = services.store
    activity = _activity(persons, seed)
    deliveries = _deliveries(services)
    rng = np.random.default_rng([seed, 3])
    serial = 1
    for label, first, days in _months(months):
        for source, share in SOURCE_SHARE.items():
            remaining = round(traces * share / months)
            while remaining > 0:
                count = min(CHUNK_ROWS, remaining)
                table = trace_table(
                    source=source, count=count, first_day=first, days=days, activity=activity,
                    delivery_id=deliveries[source], rng=rng, serial=serial,
                )  # fmt: skip
                with services.sessions.begin() as session:
                    store.write_part(
                        session, source=source, month=label, table=table,
                        delivery_id=deliveries[source],
                    )  # fmt: skip
                    _add_volumes(session, source=source, day=table["day"].to_numpy())
                serial += count
                remaining -= count


def compact_store(services: Any) -> None:
    """Compact every (source, month), each in its own transaction, then drop the old files."""
    from liveness.evidence.compaction import compact, months_to_compact, remove_orphans

    with services.sessions.begin() as session:
        pairs = months_to_compact(session)
    for source, month in pairs:
        with services.sessions.begin() as session:
            compact(session, store=services.store, source=source, month=month)
    with services.sessions.begin() as session:
        remove_orphans(session, store=services.store, grace=dt.timedelta(0))


# ----------------------------------------------------------------------------- measuring


def _parts(services: Any) -> list[str]:
    """Return the manifest's parts, as paths relative to the store's root."""
    from sqlalchemy import select

    from models import EvidencePart

    with services.sessions.begin() as session:
        return list(session.scalars(select(EvidencePart.path).order_by(EvidencePart.id)).all())


def _files(services: Any) -> list[str]:
    return [str(services.store.root / path) for path in _parts(services)]


def _cpu_s() -> tuple[float, float]:
    """Return this process's CPU seconds so far, all threads: in user space and in the kernel."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _cpu_since(before: tuple[float, float]) -> tuple[float, float]:
    """Return the user and kernel CPU seconds spent since `_cpu_s` returned `before`."""
    user, kernel = _cpu_s()
    return user - before[0], kernel - before[1]


def _snapshot_and_grade(services: Any, as_of: dt.date) -> tuple[Any, Any, float]:
    """Take the snapshot with the store's engine and grade everyone; return both and the time."""
    from liveness.evidence.snapshot import take_snapshot
    from liveness.memory import return_large_blocks, reused_blocks
    from liveness.scoring import NO_LEVEL, benefit_type_codes, grade

    # Memory as a run sets it up (`liveness.certification.runner` and `.run`).
    return_large_blocks()
    policies = services.policies
    began = time.perf_counter()
    with services.sessions.begin() as session, reused_blocks():
        snapshot = take_snapshot(
            session, as_of=as_of, store=services.store, scoring=policies.scoring,
            health=policies.health, keep_roll=True,
        )  # fmt: skip
    grades = grade(
        features=snapshot.features, benefit_type=benefit_type_codes(snapshot.roll["benefit_type"]),
        death_day=snapshot.death_day, degraded=snapshot.degraded,
        previous_level=np.full(len(snapshot.roll), NO_LEVEL, dtype=np.int8),
        policy=policies.scoring,
    )  # fmt: skip
    return snapshot, grades, time.perf_counter() - began


def _save_all(path: Path, snapshot: Any, grades: Any) -> None:
    """Save every person's features and level, to check another engine against them."""
    features = snapshot.features
    np.savez(
        path, person_id=snapshot.roll["person_id"].to_numpy(), level=grades.level,
        **{field.name: getattr(features, field.name) for field in dataclasses.fields(features)},
    )  # fmt: skip


def child_ours(
    workdir: Path, as_of: dt.date, sample_path: Path | None, all_path: Path | None = None
) -> dict[str, float]:
    """Take the snapshot and grade everyone; save a sample of the features for checking."""
    services = _services(workdir)
    before = _cpu_s()
    snapshot, grades, seconds = _snapshot_and_grade(services, as_of)
    user_s, sys_s = _cpu_since(before)
    if sample_path is not None:
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(len(snapshot.roll), min(SAMPLE, len(snapshot.roll)), False))
        features = snapshot.features
        np.savez(
            sample_path, person_id=snapshot.roll["person_id"].to_numpy()[rows],
            last_day=features.last_day[rows], recent_weight=features.recent_weight[rows],
            recent_sources=features.recent_sources[rows],
        )  # fmt: skip
    if all_path is not None:
        _save_all(all_path, snapshot, grades)
    return {
        "seconds": seconds, "peak_mb": peak_rss_mb(), "persons": len(snapshot.roll),
        "traces": snapshot.trace_count, "levels": float(np.bincount(grades.level).size),
        "user_s": user_s, "sys_s": sys_s,
    }  # fmt: skip


def _jvm_peak_mb(spark: Any) -> float:
    """Return the peak resident set size of this process's Spark JVM in MB (nan: unknown)."""
    return peak_rss_mb(int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()))


def child_spark(
    workdir: Path, as_of: dt.date, master: str, shuffle_partitions: int, ours_path: Path,
    evidence_url: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Start Spark, run a tiny query, then snapshot and grade with it; check it against ours."""
    began = time.perf_counter()
    services = _services(
        workdir, engine="spark", spark_master=master, spark_shuffle_partitions=shuffle_partitions,
        spark_evidence_url=evidence_url,
    )  # fmt: skip
    spark = services.store.engine.spark()
    # A first tiny query: the JVM's and the session's start-up, paid once by every process.
    spark.createDataFrame([(1, 2.0)], "a int, b double").groupBy("a").sum("b").toArrow()
    fixed = time.perf_counter() - began
    snapshot, grades, seconds = _snapshot_and_grade(services, as_of)
    spark_path = workdir / "spark-all.npz"
    _save_all(spark_path, snapshot, grades)
    with np.load(ours_path) as ours, np.load(spark_path) as theirs:
        unequal = [key for key in ours.files if not np.array_equal(ours[key], theirs[key])]
    spark_path.unlink()
    tasks = jvm_peak = float("nan")
    # Through Spark Connect there is no JVM in this process and no RDD to ask.
    if not master.startswith("sc://"):
        # The scan's input partitions (Spark's tasks over the store): the per-task cost.
        base = services.store.engine.base_url(services.store)
        urls = [f"{base}/{path}" for path in _parts(services)]
        tasks = float(spark.read.parquet(*urls).rdd.getNumPartitions())
        jvm_peak = _jvm_peak_mb(spark)
    return {
        "seconds": seconds, "fixed_s": fixed, "equal": float(not unequal), "unequal": unequal,
        "tasks": tasks, "files": float(len(_files(services))),
        "peak_mb": peak_rss_mb(), "jvm_peak_mb": jvm_peak,
    }  # fmt: skip


def child_ranges(
    workdir: Path, as_of: dt.date, range_persons: int, ours_path: Path,
    spark: SparkOptions | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Grade range by range as a run would (`GradingByRange`), keeping each person's level.

    The run's row is rolled back: nothing is published.
    """
    from liveness.certification.partitioned import GradingByRange
    from liveness.memory import return_large_blocks
    from models import Run, RunStatus

    engine: dict[str, Any] = {}
    if spark is not None:
        engine = {
            "engine": "spark", "spark_master": spark.master,
            "spark_shuffle_partitions": spark.shuffle_partitions,
            "spark_evidence_url": spark.evidence_url,
        }  # fmt: skip
    services = _services(workdir, **engine)
    if spark is not None:
        # The session's start-up, paid once by every process, is not the run's.
        session = services.store.engine.spark()
        session.createDataFrame([(1, 2.0)], "a int, b double").groupBy("a").sum("b").toArrow()
    return_large_blocks()
    policies = services.policies
    persons, levels = [], []
    began = time.perf_counter()
    with services.sessions() as session:
        run = Run(as_of=as_of, status=RunStatus.RUNNING, policy_version=policies.scoring.version)
        session.add(run)
        session.flush()
        grading = GradingByRange(session, run=run)
        for graded in grading.ranges(
            as_of=as_of, store=services.store, policies=policies, range_persons=range_persons
        ):
            # What a caller keeps of a range: its persons' levels, not their features.
            persons.append(graded.snapshot.roll["person_id"].to_numpy())
            levels.append(graded.graded.grades.level)
        grading.verdict(policies)
        session.rollback()
    seconds = time.perf_counter() - began
    with np.load(ours_path) as ours:
        equal = np.array_equal(np.concatenate(persons), ours["person_id"]) and np.array_equal(
            np.concatenate(levels), ours["level"]
        )
    jvm_peak = float("nan")
    if spark is not None and not spark.master.startswith("sc://"):
        jvm_peak = _jvm_peak_mb(services.store.engine.spark())
    return {
        "seconds": seconds, "ranges": float(len(levels)), "equal": float(equal),
        "peak_mb": peak_rss_mb(), "jvm_peak_mb": jvm_peak,
    }  # fmt: skip


def child_increment(workdir: Path, as_of: dt.date, persons: int, seed: int) -> dict[str, float]:
    """Append one more day of traces as a delivery would, then regrade everyone."""
    services = _services(workdir)
    activity = _activity(persons, seed)
    rng = np.random.default_rng([seed, 4])
    deliveries = _deliveries(services)
    day = as_of + dt.timedelta(days=1)
    total = max(round(persons * INCREMENT_PER_PERSON), 1)
    began = time.perf_counter()
    with services.sessions.begin() as session:
        for source, share in SOURCE_SHARE.items():
            table = trace_table(
                source=source, count=max(round(total * share), 1), first_day=_day(day), days=1,
                activity=activity, delivery_id=deliveries[source], rng=rng, serial=10**12,
            )  # fmt: skip
            services.store.write_part(
                session, source=source, month=f"{day.year:04d}-{day.month:02d}", table=table,
                delivery_id=deliveries[source],
            )  # fmt: skip
            _add_volumes(session, source=source, day=table["day"].to_numpy())
    written = time.perf_counter() - began
    figures = child_ours(workdir, day, None)
    return {"seconds": written + figures["seconds"], "peak_mb": figures["peak_mb"]}


def child_scan(workdir: Path) -> dict[str, float]:
    """Read the needed columns of every part and nothing else: the floor."""
    files = _files(_services(workdir))
    began = time.perf_counter()
    rows = 0
    for path in files:
        table = pq.read_table(path, columns=["person_id", "day", "kind"], read_dictionary=["kind"])
        rows += table.num_rows
    return {"seconds": time.perf_counter() - began, "rows": rows, "peak_mb": peak_rss_mb()}


def _duckdb_sql(files: list[str], as_of: dt.date, *, two_step: bool) -> str:
    from liveness.scoring import load_policy

    policy = load_policy(CONFIG_DIR / "scoring.toml")
    weights = ", ".join(
        f"('{source}', '{kind}', {float(policy.weight_of_kind[code])})"
        for code, (source, kind) in enumerate(policy.kinds)
    )
    last, first, recent = _day(as_of), _day(as_of) - policy.long + 1, _day(as_of) - policy.recent
    listed = ", ".join(f"'{path}'" for path in files)
    traces = f"""
        traces AS (
            SELECT t.person_id, t.source, t.day, w.weight
            FROM read_parquet([{listed}], hive_partitioning = true) AS t
            JOIN weights AS w ON w.source = t.source AND w.kind = t.kind
            WHERE t.person_id >= 0 AND t.day BETWEEN {first} AND {last} AND w.weight > 0
        )"""
    sources = policy.sources
    min_weight = policy.default.min_weight
    head = f"WITH weights(source, kind, weight) AS (VALUES {weights}), {traces}"
    if not two_step:
        lasts = ", ".join(f"max(day) FILTER (WHERE source = '{s}') AS last_{s}" for s in sources)
        sums = ", ".join(
            f"coalesce(sum(weight) FILTER (WHERE source = '{s}' AND day > {recent}), 0) AS w_{s}"
            for s in sources
        )
        agreeing = " + ".join(f"(w_{s} >= {min_weight})::INTEGER" for s in sources)
        return f"""{head}, wide AS (SELECT person_id, {lasts}, {sums} FROM traces GROUP BY 1)
            SELECT *, {agreeing} AS agreeing FROM wide"""
    lasts = ", ".join(f"max(last) FILTER (WHERE source = '{s}') AS last_{s}" for s in sources)
    sums = ", ".join(f"coalesce(max(w) FILTER (WHERE source = '{s}'), 0) AS w_{s}" for s in sources)
    return f"""{head}, per_source AS (
            SELECT person_id, source, max(day) AS last,
                   coalesce(sum(weight) FILTER (WHERE day > {recent}), 0) AS w
            FROM traces GROUP BY 1, 2)
        SELECT person_id, {lasts}, {sums},
               count(*) FILTER (WHERE w >= {min_weight})::INTEGER AS agreeing
        FROM per_source GROUP BY 1"""


def child_duckdb(workdir: Path, as_of: dt.date, sample_path: Path) -> dict[str, float]:
    """Compute the features with DuckDB both ways; check the faster one against ours."""
    import duckdb

    files = _files(_services(workdir))
    connection = duckdb.connect()
    timings = {}
    results = {}
    cpu = {}
    for name, two_step in (("wide", False), ("two_step", True)):
        began, before = time.perf_counter(), _cpu_s()
        results[name] = connection.execute(
            _duckdb_sql(files, as_of, two_step=two_step)
        ).fetchnumpy()
        timings[name] = time.perf_counter() - began
        cpu[name] = _cpu_since(before)
    best = min(timings, key=lambda name: timings[name])
    mismatches = _disagreements(results[best], np.load(sample_path))
    return {"seconds": timings[best], "wide_s": timings["wide"],
            "two_step_s": timings["two_step"], "mismatches": mismatches,
            "user_s": cpu[best][0], "sys_s": cpu[best][1]}  # fmt: skip


def _disagreements(result: dict[str, Any], ours: Any) -> float:
    """Count sampled persons whose last days, recent weights or agreeing sources differ."""
    from liveness.scoring import load_policy

    sources = load_policy(CONFIG_DIR / "scoring.toml").sources
    order = np.argsort(result["person_id"])
    ids = np.asarray(result["person_id"])[order]
    at = np.minimum(np.searchsorted(ids, ours["person_id"]), ids.size - 1)
    found = ids[at] == ours["person_id"]
    rows = order[at]
    bad = np.zeros(len(at), dtype=bool)
    for code, source in enumerate(sources):
        last = np.ma.filled(np.ma.asarray(result[f"last_{source}"])[rows], -1).astype(np.int64)
        weight = np.ma.filled(np.ma.asarray(result[f"w_{source}"])[rows], 0.0).astype(float)
        bad |= np.where(found, last, -1) != ours["last_day"][:, code]
        bad |= ~np.isclose(np.where(found, weight, 0.0), ours["recent_weight"][:, code], rtol=1e-4)
    agreeing = np.where(found, np.asarray(result["agreeing"])[rows], 0)
    bad |= agreeing != ours["recent_sources"]
    return float(bad.sum())


def measure(*args: str) -> dict[str, float]:
    """Run one measurement in a fresh interpreter and return its figures."""
    # What the step before wrote (a first run keeps 0.5 GB of summaries) goes to disk now,
    # not while this one is timed.
    os.sync()
    return measure_in_child("bench.scoring.run", *args)


def build(*, persons: int, traces: int, months: int, workdir: Path, seed: int) -> None:
    """Build the roll and the store in `workdir` and compact it; mark it built."""
    services = _services(workdir)
    from liveness.migrate import upgrade

    began = time.perf_counter()
    upgrade(services.engine)
    build_roll(services, persons=persons, seed=seed)
    build_traces(services, persons=persons, traces=traces, months=months, seed=seed)
    print(f"built {persons:,} persons and {traces:,} traces in "
          f"{time.perf_counter() - began:.1f} s", flush=True)  # fmt: skip
    began = time.perf_counter()
    compact_store(services)
    print(f"compacted in {time.perf_counter() - began:.1f} s", flush=True)
    services.engine.dispose()
    (workdir / BUILT).write_text("built\n")


def _forget_summaries(workdir: Path) -> None:
    """Forget the part summaries, as a changed policy does (none of them is then exact)."""
    from liveness.evidence.summaries import SUMMARY_FOLDER

    shutil.rmtree(workdir / "evidence" / SUMMARY_FOLDER, ignore_errors=True)


def _forget_kept(workdir: Path) -> None:
    """Forget what earlier runs kept (part summaries, the roll): the next run starts cold."""
    from sqlalchemy import delete

    from models import RollCache

    _forget_summaries(workdir)
    with _services(workdir).sessions.begin() as session:
        session.execute(delete(RollCache))


def _clone(workdir: Path, clone: Path) -> None:
    """Copy the database and hard-link the evidence files (parts are never rewritten in place)."""
    shutil.copytree(workdir / "evidence", clone / "evidence", copy_function=os.link)
    shutil.copy2(workdir / "state.sqlite", clone / "state.sqlite")


@dataclasses.dataclass(frozen=True)
class SparkOptions:
    """How to run the Spark engine's measurement (`--engine spark`)."""

    master: str
    shuffle_partitions: int
    evidence_url: str | None = None


def run(
    *, persons: int, traces: int, months: int, workdir: Path, seed: int,
    spark: SparkOptions | None = None, range_persons: int | None = None,
) -> dict[str, float]:  # fmt: skip
    """Build the store (unless built already), measure every contender; return the figures."""
    if (workdir / BUILT).exists():
        print(f"reusing the store built in {workdir}", flush=True)
        from liveness.migrate import upgrade

        # A store kept from an older version of the schema is brought up to date first.
        upgrade(_services(workdir).engine)
    else:
        build(persons=persons, traces=traces, months=months, workdir=workdir, seed=seed)
    _, first, days = list(_months(months))[-1]
    as_of = dt.date(1970, 1, 1) + dt.timedelta(days=first + days - 1)

    sample = workdir / "ours-sample.npz"
    scan = measure("scan", str(workdir))
    # The first run after a policy change (or ever) reads every trace and the whole roll;
    # each later night adds the summaries of unchanged parts and re-reads changed persons.
    _forget_kept(workdir)
    cold_sample = workdir / "ours-cold-sample.npz"
    cold = measure("ours", str(workdir), as_of.isoformat(), str(cold_sample))
    print(f"ours, first run: {cold['seconds']:.2f} s, peak {cold['peak_mb']:,.0f} MB", flush=True)
    # After a change of policy no summary is exact, while the kept roll still is.
    _forget_summaries(workdir)
    changed_sample = workdir / "ours-changed-sample.npz"
    changed = measure("ours", str(workdir), as_of.isoformat(), str(changed_sample))
    print(f"ours, first run after a policy change: {changed['seconds']:.2f} s, "
          f"peak {changed['peak_mb']:,.0f} MB", flush=True)  # fmt: skip
    # The night after a first run adds the parts' summaries and keeps their sums by age
    # bucket (`summaries/groups/`), which every later night adds instead.
    next_sample = workdir / "ours-next-sample.npz"
    following = measure("ours", str(workdir), as_of.isoformat(), str(next_sample))
    print(f"ours, the night after (keeping the group summaries): {following['seconds']:.2f} s, "
          f"peak {following['peak_mb']:,.0f} MB", flush=True)  # fmt: skip
    everyone = workdir / "ours-all.npz"
    ours = measure("ours", str(workdir), as_of.isoformat(), str(sample), str(everyone))
    print(f"ours, nightly: {ours['seconds']:.2f} s for {int(ours['traces']):,} linked traces, "
          f"peak {ours['peak_mb']:,.0f} MB; CPU {ours['user_s']:.2f} s user, "
          f"{ours['sys_s']:.2f} s system", flush=True)  # fmt: skip
    for path in (cold_sample, changed_sample, next_sample):
        with np.load(path) as first, np.load(sample) as later:
            if any(not np.array_equal(first[key], later[key]) for key in first.files):
                raise SystemExit("the nightly run's features differ from a first run's")
    try:
        import duckdb  # noqa: F401
    except ImportError:
        print("duckdb is not installed (pip install -e '.[bench]'): skipping the comparison")
        duck = {"seconds": float("nan"), "sys_s": float("nan")}
    else:
        duck = measure("duckdb", str(workdir), as_of.isoformat(), str(sample))
        print(f"duckdb: wide FILTER {duck['wide_s']:.2f} s, two-step {duck['two_step_s']:.2f} s "
              f"(the faster: CPU {duck['user_s']:.2f} s user, {duck['sys_s']:.2f} s system); "
              f"{int(duck['mismatches'])} of {SAMPLE:,} sampled persons disagree with ours",
              flush=True)  # fmt: skip
        if duck["mismatches"]:
            raise SystemExit("DuckDB and ours disagree on the sample")
    print(f"scan: {scan['seconds']:.2f} s for {int(scan['rows']):,} rows", flush=True)
    spark_figures = {}
    if spark is not None:
        spark_figures = _measure_spark(workdir, as_of, spark, everyone, ours["seconds"])
    range_figures = {}
    if range_persons is not None:
        range_figures = _measure_ranges(workdir, as_of, range_persons, everyone, spark)
    everyone.unlink(missing_ok=True)
    # The increment appends to a clone, so that a kept store stays as built.
    clone = workdir / "increment"
    shutil.rmtree(clone, ignore_errors=True)
    _clone(workdir, clone)
    try:
        increment = measure("increment", str(clone), as_of.isoformat(), str(persons), str(seed))
    finally:
        shutil.rmtree(clone, ignore_errors=True)
    print(f"increment: {increment['seconds']:.2f} s, peak {increment['peak_mb']:,.0f} MB")
    return {
        "persons": persons,
        "traces": traces,
        "ours_s": ours["seconds"],
        "duckdb_s": duck["seconds"],
        "ratio": ours["seconds"] / duck["seconds"],
        "scan_s": scan["seconds"],
        "peak_rss_mb": max(
            ours["peak_mb"], cold["peak_mb"], changed["peak_mb"], following["peak_mb"]
        ),
        "increment_s": increment["seconds"],
        "ours_first_s": cold["seconds"],
        "first_ratio": cold["seconds"] / duck["seconds"],
        "ours_changed_s": changed["seconds"],
        "changed_ratio": changed["seconds"] / duck["seconds"],
        "ours_next_s": following["seconds"],
        "ours_sys_s": ours["sys_s"],
        "duckdb_sys_s": duck["sys_s"],
        **spark_figures,
        **range_figures,
    }


def _measure_ranges(
    workdir: Path, as_of: dt.date, range_persons: int, ours_path: Path,
    spark: SparkOptions | None,
) -> dict[str, float]:  # fmt: skip
    """Measure the snapshot and grading by ranges of persons; fail if a level differs."""
    options = [] if spark is None else [spark.master, str(spark.shuffle_partitions)]
    if spark is not None and spark.evidence_url:
        options.append(spark.evidence_url)
    figures = measure(
        "ranges", str(workdir), as_of.isoformat(), str(range_persons), str(ours_path), *options
    )
    where = "ours" if spark is None else f"spark on {spark.master}"
    jvm = "" if spark is None else f" and {figures['jvm_peak_mb']:,.0f} MB in the JVM"
    print(f"by ranges of {range_persons:,} person ids ({where}): {figures['seconds']:.2f} s in "
          f"{int(figures['ranges'])} ranges, peak {figures['peak_mb']:,.0f} MB here{jvm}",
          flush=True)  # fmt: skip
    if not figures["equal"]:
        raise SystemExit("graded range by range, some person's level differs from ours")
    return {
        "ranges_s": figures["seconds"], "ranges_count": figures["ranges"],
        "ranges_peak_mb": figures["peak_mb"] + (0 if spark is None else figures["jvm_peak_mb"]),
        "ranges_here_mb": figures["peak_mb"],
    }  # fmt: skip


def _measure_spark(
    workdir: Path, as_of: dt.date, spark: SparkOptions, ours_path: Path, ours_s: float
) -> dict[str, float]:
    """Measure the Spark engine's snapshot and grading; fail if it disagrees with ours."""
    url = [spark.evidence_url] if spark.evidence_url else []
    figures = measure(
        "spark", str(workdir), as_of.isoformat(), spark.master, str(spark.shuffle_partitions),
        str(ours_path), *url,
    )  # fmt: skip
    print(f"spark on {spark.master}: fixed {figures['fixed_s']:.2f} s (session and a tiny query), "
          f"then {figures['seconds']:.2f} s over {int(figures['files'])} files in "
          f"{figures['tasks']:.0f} scan tasks; peak {figures['peak_mb']:,.0f} MB here and "
          f"{figures['jvm_peak_mb']:,.0f} MB in the JVM", flush=True)  # fmt: skip
    if not figures["equal"]:
        raise SystemExit(f"Spark's features or levels differ from ours: {figures['unequal']}")
    return {
        "spark_s": figures["seconds"], "spark_fixed_s": figures["fixed_s"],
        "spark_ratio": figures["seconds"] / ours_s, "spark_equal": figures["equal"],
        "spark_tasks": figures["tasks"],
        "spark_peak_mb": figures["peak_mb"] + figures["jvm_peak_mb"],
    }  # fmt: skip


def _format(figures: dict[str, float]) -> str:
    parts = []
    for key, value in figures.items():
        parts.append(f"{key}={int(value)}" if key in INTEGERS else f"{key}={value:.3f}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--traces", type=int, default=100_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--keep", action="store_true",
        help="keep the built store in --workdir and reuse it on the next run with the same sizes",
    )  # fmt: skip
    parser.add_argument("--build-only", action="store_true", help="with --keep: build, then stop")
    parser.add_argument(
        "--engine", choices=("local", "spark"), default="local",
        help="spark: also measure the Spark engine's snapshot and grading, beside ours and DuckDB",
    )  # fmt: skip
    parser.add_argument(
        "--spark-master", default="local[2]",
        help="with --engine spark: the master (local[N], a cluster URL or sc://host:port)",
    )  # fmt: skip
    parser.add_argument(
        "--spark-partitions", type=int, default=8,
        help="with --engine spark: spark.sql.shuffle.partitions of the features' job",
    )  # fmt: skip
    parser.add_argument(
        "--spark-evidence-url", default=None,
        help="with --engine spark: where the executors read the built store (LIVENESS_SPARK_"
        "EVIDENCE_URL), e.g. hdfs://... after copying DIR/evidence there",
    )  # fmt: skip
    parser.add_argument(
        "--range-persons", type=int, default=None,
        help="also snapshot and grade by ranges of this many person ids, with --engine's "
        "engine, keeping only each person's level (the peak memory of a partitioned run)",
    )  # fmt: skip
    parser.add_argument("--measure", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.range_persons is not None and args.range_persons < 1:
        parser.error(
            f"--range-persons: a range holds at least one person id, not {args.range_persons}"
        )
    if args.measure:
        what, *rest = args.measure
        workdir = Path(rest[0])
        if what == "scan":
            result = child_scan(workdir)
        elif what == "ours":
            everyone = Path(rest[3]) if len(rest) > 3 else None
            result = child_ours(workdir, dt.date.fromisoformat(rest[1]), Path(rest[2]), everyone)
        elif what == "spark":
            result = child_spark(
                workdir, dt.date.fromisoformat(rest[1]), rest[2], int(rest[3]), Path(rest[4]),
                rest[5] if len(rest) > 5 else None,
            )  # fmt: skip
        elif what == "ranges":
            options = None
            if len(rest) > 4:
                options = SparkOptions(
                    master=rest[4], shuffle_partitions=int(rest[5]),
                    evidence_url=rest[6] if len(rest) > 6 else None,
                )  # fmt: skip
            result = child_ranges(
                workdir, dt.date.fromisoformat(rest[1]), int(rest[2]), Path(rest[3]), options
            )
        elif what == "duckdb":
            result = child_duckdb(workdir, dt.date.fromisoformat(rest[1]), Path(rest[2]))
        else:
            result = child_increment(
                workdir, dt.date.fromisoformat(rest[1]), int(rest[2]), int(rest[3])
            )
        print(json.dumps(result))
        return
    sizes = {"persons": args.persons, "traces": args.traces, "months": args.months,
             "seed": args.seed}  # fmt: skip
    spark = None
    if args.engine == "spark":
        spark = SparkOptions(
            master=args.spark_master, shuffle_partitions=args.spark_partitions,
            evidence_url=args.spark_evidence_url,
        )  # fmt: skip
    if args.keep:
        if args.workdir is None:
            parser.error("--keep needs --workdir")
        name = "bench-scoring-{persons}-{traces}-{months}-{seed}".format(**sizes)
        folder = args.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        if args.build_only:
            if not (folder / BUILT).exists():
                build(workdir=folder, **sizes)
            print(f"built in {folder}")
            return
        figures = run(workdir=folder, spark=spark, range_persons=args.range_persons, **sizes)
    else:
        with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-scoring-") as temporary:
            figures = run(
                workdir=Path(temporary), spark=spark, range_persons=args.range_persons, **sizes
            )
    print(_format(figures))


if __name__ == "__main__":
    main()
