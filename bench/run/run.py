"""Benchmark a whole `liveness run` (ingest excluded) on a simulated city, first and nightly.

``python -m bench.run.run [--persons 1000000] [--days 200] [--seed 1] [--cache DIR]
[--database-url URL] [--range-persons N]`` simulates a city of ``--persons`` with the demo's
simulator, ingests it and compacts the evidence store as the demo does, once: the built city
stays under ``DIR/<persons>-<days>-<seed>-<backend>/`` (default ``var/bench-run``) and later
runs with the same sizes reuse it. Each measurement starts from a copy of the built state
(SQLite file copied, evidence files hard-linked; on PostgreSQL a database created from the
built one as template), so the kept city stays as built. Then, each in a fresh interpreter so
that each peak RSS is its own:

- first: the run as of the city's last day, with nothing kept (no previous run, no kept roll,
  no part summaries);
- nightly: the run as of the day after, on the state the first run left (the roll and the
  parts' summaries kept, a previous run to compare with).

With ``--range-persons N`` both runs go by ranges of N person ids, as ``liveness run`` does with
``LIVENESS_RUN_PARTITION_PERSONS`` (docs/PARTITIONED_RUN.md).

It prints each run's wall time, peak memory, the time of each stage the run's report records
(``timings_s``), the rows it wrote and how much the database grew, beside the figures measured
when the work on the whole run began (issue 17), and the figures as ``key=value`` pairs on its
last line.

On PostgreSQL, ``--database-url`` names the server and a database to connect to for
administration; the bench creates its own databases beside it (``bench_run_<sizes>``, kept, and
a work copy dropped at the end).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.child import measure_in_child, peak_rss_mb

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"
START = dt.date(2025, 1, 1)
# Marks a cache folder whose city is ingested and compacted.
BUILT = "built"
# The tables a run writes to: their row counts before and after say what it wrote.
WRITTEN = ("assessments", "certifications", "review_tasks", "list_entries", "notices")
# Measured when the work on the whole run began (issue 17): nightly run on a compacted store.
REFERENCE = {
    100_000: {"nightly_s": 8.0, "publish_s": 5.0, "peak_mb": 700.0},
    300_000: {"nightly_s": 24.0, "publish_s": 18.0, "peak_mb": 1450.0},
    1_000_000: {"nightly_s": 80.0, "publish_s": 60.0, "peak_mb": 4500.0},
}


def _services(*, database_url: str, evidence: Path, range_persons: int | None = None) -> Any:
    from liveness.services import Services
    from liveness.settings import Settings

    return Services(
        Settings(
            database_url=database_url, evidence_dir=evidence, config_dir=CONFIG_DIR,
            run_partition_persons=range_persons,
        )
    )  # fmt: skip


def _admin(database_url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(database_url, isolation_level="AUTOCOMMIT")


def _pg_url(database_url: str, name: str) -> str:
    from sqlalchemy import make_url

    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


def _pg_exists(database_url: str, name: str) -> bool:
    from sqlalchemy import text

    with _admin(database_url).connect() as connection:
        found = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
    return found is not None


def _pg_execute(database_url: str, sql: str) -> None:
    from sqlalchemy import text

    engine = _admin(database_url)
    with engine.connect() as connection:
        connection.execute(text(sql))
    engine.dispose()


# ------------------------------------------------------------------------------ building


def build(*, folder: Path, persons: int, days: int, seed: int, database_url: str) -> None:
    """Simulate the city, ingest every source and compact the store, as the demo does."""
    from liveness.evidence.compaction import compact_store
    from liveness.ingest import INGEST_ORDER
    from liveness.ingest.runner import ingest_paths
    from liveness.migrate import upgrade
    from liveness.simulate import simulate_city

    began = time.perf_counter()
    city = folder / "city"
    summary = simulate_city(persons=persons, start=START, days=days, seed=seed, out=city)
    services = _services(database_url=database_url, evidence=folder / "evidence")
    upgrade(services.engine)
    for source in INGEST_ORDER:
        for report in ingest_paths(services, source=source, paths=[city / source]):
            if report.error:
                raise SystemExit(f"ingest of {source} refused: {report.error}")
    compact_store(services.sessions, store=services.store)
    services.engine.dispose()
    # The simulated files are not needed once ingested; at 1M persons they are gigabytes.
    shutil.rmtree(city)
    (folder / BUILT).write_text(
        json.dumps({"traces": summary.traces, "build_s": round(time.perf_counter() - began, 1)})
    )


# ----------------------------------------------------------------------------- measuring


def _database_bytes(services: Any) -> int:
    """Return the database's size on disk (SQLite file and its journal, or PostgreSQL's)."""
    from sqlalchemy import text

    if services.engine.dialect.name == "postgresql":
        with services.engine.connect() as connection:
            return int(connection.scalar(text("SELECT pg_database_size(current_database())")))
    path = Path(services.engine.url.database)
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _rows(services: Any) -> int:
    from sqlalchemy import text

    with services.engine.connect() as connection:
        return sum(int(connection.scalar(text(f"SELECT count(*) FROM {t}"))) for t in WRITTEN)


def child_run(
    *, database_url: str, evidence: Path, as_of: dt.date, range_persons: int | None = None
) -> dict[str, Any]:
    """Run certification as of `as_of` as `liveness run` does; return its figures."""
    from liveness.certification.runner import execute_run

    services = _services(database_url=database_url, evidence=evidence, range_persons=range_persons)
    rows, size = _rows(services), _database_bytes(services)
    began, cpu = time.perf_counter(), time.process_time()
    run = execute_run(services, as_of=as_of)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {
        "seconds": seconds, "cpu_s": cpu, "peak_mb": peak_rss_mb(), "status": str(run.status),
        "persons": run.report.get("persons"), "timings_s": run.report.get("timings_s", {}),
        "rows_written": _rows(services) - rows,
        "db_growth_mb": (_database_bytes(services) - size) / 2**20,
    }  # fmt: skip


def measure(
    *, database_url: str, evidence: Path, as_of: dt.date, range_persons: int | None = None
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its figures."""
    ranges = [] if range_persons is None else ["--range-persons", str(range_persons)]
    return measure_in_child(
        "bench.run.run", "--database-url", database_url, "--evidence", str(evidence),
        "--as-of", as_of.isoformat(), *ranges,
    )  # fmt: skip


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _prepare(
    *, persons: int, days: int, seed: int, cache: Path, database_url: str | None
) -> tuple[Path, str]:
    """Build the city if it is not kept yet; return its folder and its database's URL."""
    backend = "sqlite" if database_url is None else "postgresql"
    folder = cache / f"{persons}-{days}-{seed}-{backend}"
    if database_url is None:
        built_url = _sqlite_url(folder / "state.sqlite")
    else:
        name = f"bench_run_{persons}_{days}_{seed}"
        built_url = _pg_url(database_url, name)
        if not (folder / BUILT).exists() or not _pg_exists(database_url, name):
            if _pg_exists(database_url, name):
                _pg_execute(database_url, f'DROP DATABASE "{name}"')
            _pg_execute(database_url, f'CREATE DATABASE "{name}"')
            (folder / BUILT).unlink(missing_ok=True)
    if not (folder / BUILT).exists():
        if folder.exists() and database_url is None:
            shutil.rmtree(folder)
        shutil.rmtree(folder / "evidence", ignore_errors=True)
        shutil.rmtree(folder / "city", ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"building a city of {persons:,} persons over {days} days in {folder} ...")
        build(folder=folder, persons=persons, days=days, seed=seed, database_url=built_url)
    return folder, built_url


def _work_copy(*, folder: Path, built_url: str, work: Path, database_url: str | None) -> str:
    """Copy the built state into `work` (evidence hard-linked); return the copy's URL."""
    shutil.copytree(folder / "evidence", work / "evidence", copy_function=os.link)
    if database_url is None:
        shutil.copyfile(folder / "state.sqlite", work / "state.sqlite")
        return _sqlite_url(work / "state.sqlite")
    from sqlalchemy import make_url

    name = f"bench_run_work_{os.getpid()}"
    built = make_url(built_url).database
    _pg_execute(database_url, f'DROP DATABASE IF EXISTS "{name}"')
    _pg_execute(database_url, f'CREATE DATABASE "{name}" TEMPLATE "{built}"')
    return _pg_url(database_url, name)


def _upgrade(database_url: str) -> None:
    """Bring the work copy's schema to this version's (a city kept by an earlier one)."""
    from liveness.db import make_engine
    from liveness.migrate import upgrade

    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()


def _stages(label: str, figures: dict[str, Any]) -> str:
    stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in figures["timings_s"].items())
    return (
        f"{label:<8} {figures['seconds']:7.2f} s (CPU {figures['cpu_s']:6.2f} s)  "
        f"peak {figures['peak_mb']:7.0f} MB  "
        f"{figures['rows_written']:>9,} rows  +{figures['db_growth_mb']:.1f} MB  ({stages})"
    )


def main(argv: list[str] | None = None) -> None:
    """Build or reuse the city, measure the first and a nightly run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=REPO / "var" / "bench-run")
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--range-persons", type=int, default=None,
        help="run by ranges of this many person ids (LIVENESS_RUN_PARTITION_PERSONS)",
    )  # fmt: skip
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--evidence", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        figures = child_run(
            database_url=args.database_url, evidence=args.evidence, as_of=args.as_of,
            range_persons=args.range_persons,
        )  # fmt: skip
        print(json.dumps(figures))
        return

    folder, built_url = _prepare(
        persons=args.persons, days=args.days, seed=args.seed, cache=args.cache,
        database_url=args.database_url,
    )  # fmt: skip
    built = json.loads((folder / BUILT).read_text())
    last_day = START + dt.timedelta(days=args.days - 1)
    with tempfile.TemporaryDirectory(prefix="bench-run-", dir=args.cache) as scratch:
        work = Path(scratch)
        url = _work_copy(
            folder=folder, built_url=built_url, work=work, database_url=args.database_url
        )
        # A city kept by an earlier version gets this version's schema, as `liveness migrate`.
        _upgrade(url)
        try:
            first = measure(
                database_url=url, evidence=work / "evidence", as_of=last_day,
                range_persons=args.range_persons,
            )  # fmt: skip
            nightly = measure(
                database_url=url, evidence=work / "evidence",
                as_of=last_day + dt.timedelta(days=1), range_persons=args.range_persons,
            )  # fmt: skip
        finally:
            if args.database_url is not None:
                _pg_execute(args.database_url, f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"')
    backend = "sqlite" if args.database_url is None else "postgresql"
    how = "whole run" if args.range_persons is None else f"run by ranges of {args.range_persons:,}"
    print(
        f"{how}, {args.persons:,} persons, {args.days} days, {built['traces']:,} traces, "
        f"{backend} (city built in {built['build_s']} s, kept in {folder})"
    )
    print(_stages("first", first))
    print(_stages("nightly", nightly))
    reference = REFERENCE.get(args.persons)
    if reference is not None:
        print(
            f"reference (issue 17, before): nightly ~{reference['nightly_s']:.0f} s, of which "
            f"publish ~{reference['publish_s']:.0f} s, peak {reference['peak_mb']:.0f} MB"
        )
        ratio = nightly["seconds"] / reference["nightly_s"]
    else:
        ratio = float("nan")
    pairs: dict[str, Any] = {
        "persons": args.persons, "backend": backend, "traces": built["traces"],
        "range_persons": args.range_persons,
        "first_s": round(first["seconds"], 3), "nightly_s": round(nightly["seconds"], 3),
        "first_cpu_s": round(first["cpu_s"], 3), "nightly_cpu_s": round(nightly["cpu_s"], 3),
        "first_peak_mb": round(first["peak_mb"]), "nightly_peak_mb": round(nightly["peak_mb"]),
    }  # fmt: skip
    for label, figures in (("first", first), ("nightly", nightly)):
        for stage, seconds in figures["timings_s"].items():
            pairs[f"{label}_{stage}_s"] = seconds
        pairs[f"{label}_rows"] = figures["rows_written"]
        pairs[f"{label}_db_growth_mb"] = round(figures["db_growth_mb"], 2)
    pairs["nightly_vs_reference"] = round(ratio, 3)
    print(" ".join(f"{key}={value}" for key, value in pairs.items()))


if __name__ == "__main__":
    main()
