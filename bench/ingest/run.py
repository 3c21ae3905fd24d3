"""Benchmark the ingest of a large transit delivery, from CSV and from Parquet.

``python -m bench.ingest.run [--rows 10000000] [--persons N] [--workdir DIR]`` generates a
synthetic transit delivery (reference columns of SOURCES.md) as CSV and as Parquet, a roll and
a card register so that the taps link, then measures each step in a fresh interpreter so that
every peak RSS belongs to one measurement only. The last line printed holds the figures as
``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench.child import measure_in_child, peak_rss_mb

if TYPE_CHECKING:
    from liveness.services import Services

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"
# Rows generated (and Parquet rows per row group) at a time: bounds the generator's memory.
CHUNK_ROWS = 1_000_000

TRANSIT_COLUMNS = (
    "record_id", "card_no", "tapped_at", "city_code", "mode", "line", "station", "face_match",
)  # fmt: skip
REGISTRY_COLUMNS = (
    "person_ref", "id_number", "name", "sex", "birth_date", "benefit_type", "monthly_amount",
    "benefit_start", "region_code", "grid_code", "status",
)  # fmt: skip
CARD_COLUMNS = ("card_no", "card_kind", "id_number", "issued_on")

REGIONS = ("330702", "330703", "330723", "330726", "330727", "330781", "330782", "330783")
SURNAMES = tuple("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁")
GIVEN = tuple("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华玉兰桂珍凤琴云建国平红")
LINES = (*(f"{k}路" for k in range(1, 121)), "金义东线", "婺江渡")
STATIONS = tuple(f"ST{k:04d}" for k in range(1, 2001))
BENEFITS = ("enterprise_pension", "institution_pension", "resident_pension")
# Card serials are an affine bijection of the person index: unique and unrevealing.
_CARD_SPACE = 900_000_000_000
_CARD_STEP = 7919
# Share of taps made with a card the register does not know (visitors, other cities).
UNKNOWN_CARD_SHARE = 0.02
DELIVERY_START = np.datetime64("2025-03-01T00:00:00", "s")
DELIVERY_DAYS = 30


# ------------------------------------------------------------------------------ generation


def _strings(values: np.ndarray) -> pa.Array:
    return pa.array(values).cast(pa.string())


def _padded(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(_strings(numbers), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def _pick(vocabulary: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return pa.array(vocabulary, pa.string()).take(pa.array(index))


def card_numbers(person: np.ndarray) -> pa.Array:
    """Return the senior transit card number of each person index."""
    serial = (person.astype(np.int64) * _CARD_STEP + 12_345) % _CARD_SPACE + 10**11
    return _padded("8860", serial, 12)


def transit_chunk(
    start: int,
    count: int,
    *,
    total: int,
    persons: int,
    seed: int,
    first_day: np.datetime64 = DELIVERY_START,
    first_position: int = 0,
) -> pa.Table:
    """Return rows ``start``..``start + count`` of the delivery, typed as a Parquet export.

    Record ids count from ``first_position`` + 1 (another delivery's ids follow on).
    """
    rng = np.random.default_rng([seed, 0, start, first_position])
    # Taps in time order over the delivery's days, between 05:30 and 22:00 local time.
    position = np.arange(start, start + count, dtype=np.int64)
    day = position * DELIVERY_DAYS // max(total, 1)
    second = np.sort(rng.integers(5 * 3600 + 1800, 22 * 3600, size=count))
    tapped_at = first_day + (day * 86_400 + second).astype("timedelta64[s]")
    position = position + first_position
    person = rng.integers(0, persons, size=count)
    unknown = rng.random(count) < UNKNOWN_CARD_SHARE
    person = np.where(unknown, persons + rng.integers(0, persons, size=count), person)
    mode = np.searchsorted(np.cumsum([0.80, 0.18]), rng.random(count))
    line = np.where(mode == 0, rng.integers(0, 120, size=count), np.where(mode == 1, 120, 121))
    face_draw = rng.random(count)
    face_match = pa.array(face_draw < 0.40, mask=face_draw >= 0.43)
    city = np.where(rng.random(count) < 0.8, 0, rng.integers(1, len(REGIONS), size=count))
    return pa.table(
        {
            "record_id": _padded("T", position + 1, 10),
            "card_no": card_numbers(person),
            "tapped_at": pa.array(tapped_at, pa.timestamp("s")),
            "city_code": _pick(REGIONS, city),
            "mode": _pick(("bus", "metro", "ferry"), mode),
            "line": _pick(LINES, line),
            "station": _pick(STATIONS, rng.integers(0, len(STATIONS), size=count)),
            "face_match": face_match,
        }
    )


def as_text(table: pa.Table) -> pa.Table:
    """Return ``table`` with every column as the text a CSV export carries."""
    stamps = pc.strftime(table["tapped_at"], format="%Y-%m-%d %H:%M:%S")
    face = pc.if_else(table["face_match"], "true", "false")
    return table.set_column(2, "tapped_at", stamps).set_column(7, "face_match", face)


def _chunks(total: int, size: int = CHUNK_ROWS) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(size, total - start)


def write_csv(path: Path, columns: tuple[str, ...], tables: Iterator[pa.Table]) -> None:
    """Write ``tables`` as one unquoted UTF-8 CSV file, as departments export them."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with path.open("wb") as sink:
        sink.write((",".join(columns) + "\n").encode())
        writer: pacsv.CSVWriter | None = None
        for table in tables:
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema, write_options=options)
            writer.write_table(table)
        if writer is not None:
            writer.close()


def write_transit(workdir: Path, *, rows: int, persons: int, seed: int) -> tuple[Path, Path]:
    """Write the transit delivery as CSV and as Parquet; return both paths."""
    csv_path = workdir / f"transit-{rows}.csv"
    parquet_path = workdir / f"transit-{rows}.parquet"
    writer: pq.ParquetWriter | None = None
    try:

        def tables() -> Iterator[pa.Table]:
            nonlocal writer
            for start, count in _chunks(rows):
                table = transit_chunk(start, count, total=rows, persons=persons, seed=seed)
                if writer is None:
                    writer = pq.ParquetWriter(parquet_path, table.schema)
                writer.write_table(table, row_group_size=CHUNK_ROWS)
                yield as_text(table)

        write_csv(csv_path, TRANSIT_COLUMNS, tables())
    finally:
        if writer is not None:
            writer.close()
    return csv_path, parquet_path


def write_next(workdir: Path, *, rows: int, after: int, persons: int, seed: int) -> Path:
    """Write a Parquet delivery of ``rows`` new records, the month after the first delivery."""
    path = workdir / f"transit-next-{rows}-after-{after}.parquet"
    if path.is_file():
        return path
    temporary = path.with_suffix(".tmp")
    writer: pq.ParquetWriter | None = None
    try:
        for start, count in _chunks(rows):
            table = transit_chunk(
                start, count, total=rows, persons=persons, seed=seed,
                first_day=DELIVERY_START + np.timedelta64(31, "D"), first_position=after,
            )  # fmt: skip
            if writer is None:
                writer = pq.ParquetWriter(temporary, table.schema)
            writer.write_table(table, row_group_size=CHUNK_ROWS)
    finally:
        if writer is not None:
            writer.close()
    temporary.replace(path)
    return path


def id_numbers(person: np.ndarray) -> pa.Array:
    """Return a valid, unique 18-character identity number per person index."""
    from connectors.identity import id_check_character  # the engine's own check, the oracle

    birth = np.datetime64("1935-01-01") + (person % 11_000).astype("timedelta64[D]")
    sequence = person // 11_000
    region = np.asarray(REGIONS)[person % len(REGIONS)]
    body = pc.binary_join_element_wise(
        pa.array(region),
        pc.strftime(pa.array(birth.astype("datetime64[s]")), format="%Y%m%d"),
        pc.utf8_lpad(_strings(sequence), width=3, padding="0"),
        "",
    )
    check = id_check_character(body.to_pandas().astype("string"))
    return pc.binary_join_element_wise(body, pa.array(check, pa.string()), "")


def registry_chunk(start: int, count: int, *, seed: int) -> pa.Table:
    """Return the roll rows of persons ``start``..``start + count``."""
    rng = np.random.default_rng([seed, 1, start])
    person = np.arange(start, start + count, dtype=np.int64)
    numbers = id_numbers(person)
    # GB 11643: the 17th character (last of the sequence) is odd for men
    sex = np.where((person // 11_000) % 2 == 1, "M", "F")
    birth = np.datetime64("1935-01-01") + (person % 11_000).astype("timedelta64[D]")
    name = pc.binary_join_element_wise(
        _pick(SURNAMES, rng.integers(0, len(SURNAMES), count)),
        _pick(GIVEN, rng.integers(0, len(GIVEN), count)),
        _pick(("", *GIVEN), rng.integers(0, len(GIVEN) + 1, count)),
        "",
    )
    start_day = birth + np.timedelta64(60 * 365, "D")
    region = np.asarray(REGIONS)[rng.integers(0, len(REGIONS), count)]
    cents = rng.integers(150_000, 800_000, count)
    return pa.table(
        {
            "person_ref": _padded("P", person + 1, 8),
            "id_number": numbers,
            "name": name,
            "sex": pa.array(sex),
            "birth_date": pc.strftime(pa.array(birth.astype("datetime64[s]")), format="%Y-%m-%d"),
            "benefit_type": _pick(BENEFITS, rng.integers(0, len(BENEFITS), count)),
            "monthly_amount": pc.binary_join_element_wise(
                _strings(cents // 100),
                pc.utf8_lpad(_strings(cents % 100), width=2, padding="0"),
                ".",
            ),
            "benefit_start": pc.strftime(
                pa.array(start_day.astype("datetime64[s]")), format="%Y-%m-%d"
            ),
            "region_code": pa.array(region),
            "grid_code": pc.binary_join_element_wise(
                pa.array(region), _padded("G", person // 300 % 1000, 4), "-"
            ),
            "status": pa.array(np.full(count, "active")),
        }
    )


def cards_chunk(start: int, count: int, *, seed: int) -> pa.Table:
    """Return the senior transit card of persons ``start``..``start + count``."""
    rng = np.random.default_rng([seed, 2, start])
    person = np.arange(start, start + count, dtype=np.int64)
    issued = np.datetime64("2015-01-01") + rng.integers(0, 3650, count).astype("timedelta64[D]")
    return pa.table(
        {
            "card_no": card_numbers(person),
            "card_kind": pa.array(np.full(count, "transit_senior")),
            "id_number": id_numbers(person),
            "issued_on": pc.strftime(pa.array(issued.astype("datetime64[s]")), format="%Y-%m-%d"),
        }
    )


def write_register(workdir: Path, *, persons: int, seed: int) -> tuple[Path, Path]:
    """Write the roll and the card register of ``persons`` persons as CSV; return both paths."""
    registry = workdir / "registry.csv"
    cards = workdir / "cards.csv"
    write_csv(
        registry,
        REGISTRY_COLUMNS,
        (registry_chunk(s, c, seed=seed) for s, c in _chunks(persons)),
    )
    write_csv(cards, CARD_COLUMNS, (cards_chunk(s, c, seed=seed) for s, c in _chunks(persons)))
    return registry, cards


# ----------------------------------------------------------------------------- measuring


def _services(database: Path, evidence: Path) -> Services:
    from liveness.services import Services
    from liveness.settings import Settings

    settings = Settings(
        database_url=f"sqlite:///{database}", evidence_dir=evidence, config_dir=CONFIG_DIR
    )
    return Services(settings)


def prepare_database(workdir: Path, *, registry: Path, cards: Path) -> Path:
    """Create a migrated state database holding the roll and the cards; return its path."""
    from liveness.ingest.runner import ingest_paths
    from liveness.migrate import upgrade

    database = workdir / "state.sqlite"
    database.unlink(missing_ok=True)
    services = _services(database, workdir / "evidence-setup")
    upgrade(services.engine)
    for source, path in (("registry", registry), ("cards", cards)):
        (report,) = ingest_paths(services, source=source, paths=[path])
        if report.status != "loaded" or report.quarantined:
            raise SystemExit(f"setup: {source} did not load cleanly: {report.as_dict()}")
    services.engine.dispose()
    return database


def child_connector(path: Path) -> dict[str, float]:
    """Read ``path`` through the transit connector, consuming every batch."""
    from connectors import get_connector, load_source_configs

    connector = get_connector("transit", load_source_configs(CONFIG_DIR / "sources.toml"))
    baseline = peak_rss_mb()
    began, cpu = time.perf_counter(), time.process_time()
    rows = quarantined = 0
    for batch in connector.read(path):
        rows += batch.rows_read
        quarantined += len(batch.quarantined)
    seconds = time.perf_counter() - began
    return {
        "rows": rows, "quarantined": quarantined, "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "baseline_mb": baseline, "peak_mb": peak_rss_mb(),
    }  # fmt: skip


def _timed_ingest(services: Services, path: Path) -> dict[str, float]:
    """Ingest ``path`` as a transit delivery; return its counts, times and memory."""
    from liveness.ingest.runner import ingest_paths

    baseline = peak_rss_mb()
    began, cpu = time.perf_counter(), time.process_time()
    (report,) = ingest_paths(services, source="transit", paths=[path])
    seconds = time.perf_counter() - began
    return {
        "rows": report.rows_read, "loaded": report.loaded, "unmatched": report.unmatched,
        "quarantined": report.quarantined, "redelivered": report.redelivered,
        "seconds": seconds, "cpu_seconds": time.process_time() - cpu,
        "baseline_mb": baseline, "peak_mb": peak_rss_mb(),
    }  # fmt: skip


def child_ingest(path: Path, database: Path, evidence: Path) -> dict[str, float]:
    """Ingest ``path`` as a transit delivery into a committed transaction."""
    services = _services(database, evidence)
    services.require_schema()
    return _timed_ingest(services, path)


def child_ingest_after(
    first: Path, second: Path, database: Path, evidence: Path
) -> dict[str, float]:
    """Ingest ``first`` (not measured), then measure the ingest of ``second`` into that store.

    The second delivery's records are new: every one is looked for among the first's, in
    every month (the record index), as a nightly delta is among a year of traces.
    """
    from liveness.ingest.runner import ingest_paths

    services = _services(database, evidence)
    services.require_schema()
    ingest_paths(services, source="transit", paths=[first])
    services = _services(database, evidence)  # a new ingest opens the index from disk
    return _timed_ingest(services, second)


def measure(*args: str) -> dict[str, float]:
    """Run one measurement in a fresh interpreter and return its figures."""
    return measure_in_child("bench.ingest.run", *args)


@dataclass
class Row:
    """One line of the results table."""

    name: str
    figures: dict[str, float]

    @property
    def rows_per_second(self) -> float:
        """Return the throughput of the measurement."""
        return self.figures["rows"] / self.figures["seconds"]


def _print_row(row: Row) -> Row:
    f = row.figures
    print(
        f"{row.name:<28}{int(f['rows']):>12,}{f['seconds']:>10.2f}{f['cpu_seconds']:>10.2f}"
        f"{row.rows_per_second:>13,.0f}{f['peak_mb']:>13,.0f}",
        flush=True,
    )
    return row


def prepare(workdir: Path, *, rows: int, persons: int, seed: int) -> None:
    """Generate the deliveries and load the roll, unless ``workdir`` holds them already."""
    marker = workdir / "setup.json"
    wanted = {"rows": rows, "persons": persons, "seed": seed, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        print(f"reusing the data and the roll in {workdir}", flush=True)
        return
    marker.unlink(missing_ok=True)
    began = time.perf_counter()
    small_rows = max(rows // 10, 1)
    csv_path, parquet_path = write_transit(workdir, rows=rows, persons=persons, seed=seed)
    write_transit(workdir, rows=small_rows, persons=persons, seed=seed)
    registry, cards = write_register(workdir, persons=persons, seed=seed)
    print(f"generated {rows:,} + {small_rows:,} taps, {persons:,} persons "
          f"in {time.perf_counter() - began:.1f} s; CSV {csv_path.stat().st_size / 1e6:,.0f} MB, "
          f"Parquet {parquet_path.stat().st_size / 1e6:,.0f} MB", flush=True)  # fmt: skip
    began = time.perf_counter()
    prepare_database(workdir, registry=registry, cards=cards)
    print(f"loaded roll and cards in {time.perf_counter() - began:.1f} s", flush=True)
    marker.write_text(json.dumps(wanted))


def run(*, rows: int, persons: int, workdir: Path, seed: int) -> dict[str, float]:
    """Generate the data, measure every step, print the table; return the figures."""
    prepare(workdir, rows=rows, persons=persons, seed=seed)
    small_rows = max(rows // 10, 1)
    csv_path, parquet_path = (workdir / f"transit-{rows}.{ext}" for ext in ("csv", "parquet"))
    small_csv, small_parquet = (
        workdir / f"transit-{small_rows}.{ext}" for ext in ("csv", "parquet")
    )
    database = workdir / "state.sqlite"

    # CPU seconds (all threads) next to wall seconds show when other work shared the machine
    print(
        f"{'measurement':<28}{'rows':>12}{'seconds':>10}{'CPU s':>10}{'rows/s':>13}"
        f"{'peak RSS MB':>13}"
    )
    results: dict[str, Row] = {}
    for fmt, path, small in (
        ("csv", csv_path, small_csv),
        ("parquet", parquet_path, small_parquet),
    ):
        results[f"{fmt}_connector"] = _print_row(
            Row(f"{fmt} connector", measure("connector", str(path)))
        )
        results[f"{fmt}_connector_small"] = _print_row(
            Row(f"{fmt} connector ({small_rows:,})", measure("connector", str(small)))
        )
    for fmt, path, small in (
        ("csv", csv_path, small_csv),
        ("parquet", parquet_path, small_parquet),
    ):
        for key, name, delivered in (
            (f"{fmt}_ingest", f"{fmt} ingest", path),
            (f"{fmt}_ingest_small", f"{fmt} ingest ({small_rows:,})", small),
        ):
            # every ingest starts from the same roll and an empty store: none sees re-deliveries
            fresh = workdir / f"state-{key}.sqlite"
            evidence = workdir / f"evidence-{key}"
            shutil.copyfile(database, fresh)
            shutil.rmtree(evidence, ignore_errors=True)
            figures = measure("ingest", str(delivered), str(fresh), str(evidence))
            results[key] = _print_row(Row(name, figures))
            fresh.unlink()
            shutil.rmtree(evidence, ignore_errors=True)
    # A delivery of new records into a store already holding the full one (the month before):
    # the re-delivery check looks for each among all the store's records.
    following = write_next(workdir, rows=small_rows, after=rows, persons=persons, seed=seed)
    fresh = workdir / "state-after.sqlite"
    evidence = workdir / "evidence-after"
    shutil.copyfile(database, fresh)
    shutil.rmtree(evidence, ignore_errors=True)
    figures = measure("ingest-after", str(parquet_path), str(following), str(fresh), str(evidence))
    results["parquet_ingest_after"] = _print_row(Row(f"parquet ingest after {rows:,}", figures))
    if figures["loaded"] != small_rows:
        raise SystemExit(f"the delivery after the first did not load whole: {figures}")
    fresh.unlink()
    shutil.rmtree(evidence, ignore_errors=True)
    for fmt in ("csv", "parquet"):
        f = results[f"{fmt}_ingest"].figures
        print(f"{fmt} ingest: loaded {int(f['loaded']):,}, unmatched {int(f['unmatched']):,}, "
              f"quarantined {int(f['quarantined']):,}")  # fmt: skip

    def peak(key: str) -> float:
        return results[key].figures["peak_mb"]

    out: dict[str, float] = {"rows": rows}
    for key in ("csv_connector", "parquet_connector", "csv_ingest", "parquet_ingest",
                "parquet_ingest_after"):  # fmt: skip
        out[f"{key}_rows_s"] = results[key].rows_per_second
    for fmt in ("csv", "parquet"):
        out[f"{fmt}_peak_rss_mb"] = max(peak(f"{fmt}_connector"), peak(f"{fmt}_ingest"))
    for key in ("csv_connector", "parquet_connector", "csv_ingest", "parquet_ingest"):
        out[f"{key}_peak_rss_mb"] = peak(key)
    out["small_rows"] = small_rows
    for fmt in ("csv", "parquet"):
        out[f"{fmt}_connector_small_peak_rss_mb"] = peak(f"{fmt}_connector_small")
    # peak RSS of the connector on the full file over that on a tenth of it: ~1 when streamed
    out["rss_growth_ratio"] = max(
        peak(f"{fmt}_connector") / peak(f"{fmt}_connector_small") for fmt in ("csv", "parquet")
    )
    # the same for the whole ingest: above 1 by what re-delivery checks must remember per row
    out["ingest_rss_growth_ratio"] = max(
        peak(f"{fmt}_ingest") / peak(f"{fmt}_ingest_small") for fmt in ("csv", "parquet")
    )
    out["parquet_ingest_after_peak_rss_mb"] = peak("parquet_ingest_after")
    return out


def _key_values(figures: dict[str, float]) -> str:
    def text(value: float) -> str:
        if isinstance(value, int):
            return str(value)
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"

    return " ".join(f"{key}={text(value)}" for key, value in figures.items())


def add_size_arguments(parser: argparse.ArgumentParser, *, rows: int, rows_help: str) -> None:
    """Add the options of the generated data: --rows, --persons, --workdir, --seed."""
    parser.add_argument("--rows", type=int, default=rows, help=rows_help)
    parser.add_argument(
        "--persons", type=int, default=None,
        help="persons on the roll (default: rows / 10, at most 1,000,000, at least 1,000)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data here")
    parser.add_argument("--seed", type=int, default=20250301)


def persons_of(args: argparse.Namespace) -> int:
    """Return the persons asked for, or rows / 10 between 1,000 and 1,000,000."""
    return int(args.persons or min(1_000_000, max(1_000, args.rows // 10)))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --measure, one measurement inside a child)."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest.run", description=__doc__)
    add_size_arguments(parser, rows=10_000_000, rows_help="taps in the delivery")
    parser.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:
        kind, *paths = args.measure
        if kind == "connector":
            figures = child_connector(Path(paths[0]))
        elif kind == "ingest-after":
            figures = child_ingest_after(*(Path(p) for p in paths))
        else:
            figures = child_ingest(Path(paths[0]), Path(paths[1]), Path(paths[2]))
        print(json.dumps(figures))
        return 0

    if args.rows < 10:
        parser.error("--rows must be at least 10")
    persons = persons_of(args)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        figures = run(rows=args.rows, persons=persons, workdir=args.workdir, seed=args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            figures = run(rows=args.rows, persons=persons, workdir=Path(tmp), seed=args.seed)
    print(_key_values(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
