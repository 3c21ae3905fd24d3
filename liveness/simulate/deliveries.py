"""Write the departments' deliveries as files, with the planted data-quality defects."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

from liveness.simulate.traces import Trace

IntArray = npt.NDArray[np.int64]

_WRITE_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="none")

# Which column each malformation damages, per source (the data scenarios' too).
_TIME_COLUMN = {
    "transit": "tapped_at", "card_txn": "txn_at", "medical": "visit_at",
    "travel": "departed_at", "health_check": "checked_on", "community": "served_at",
    "counter": "served_at", "ltc": "cared_on", "vaccination": "vaccinated_at",
    "remote_medical": "settled_at", "family_doctor": "visited_at",
}  # fmt: skip
_KEY_COLUMN = {
    "transit": "card_no", "card_txn": "card_no", "medical": "id_number", "community": "record_id",
    **dict.fromkeys(("travel", "health_check", "counter", "ltc", "vaccination", "remote_medical",
                     "family_doctor"), "id_number"),
}  # fmt: skip
_PLAIN = ["bad_timestamp", "missing_required", "too_few_fields"]
_VISITS = ["bad_timestamp", "missing_required", "unknown_visit_type", "too_few_fields"]
_PROBLEMS = {
    "transit": _PLAIN,
    "card_txn": ["bad_timestamp", "missing_required", "unknown_channel", "too_few_fields"],
    "medical": _VISITS,
    **dict.fromkeys(("travel", "health_check", "community", "counter", "ltc", "vaccination"),
                    _PLAIN),
    # The two with a `visit_type` enum: an unknown type is refused as for the medical rows.
    **dict.fromkeys(("remote_medical", "family_doctor"), _VISITS),
}  # fmt: skip
_BAD_TIMESTAMPS = ["2025-02-30 25:61:00", "yesterday", "13/45/2025 8am"]


def csv_bytes(table: pa.Table) -> bytes:
    """Render a table as CSV: a header row, no quoting (values never hold commas or quotes)."""
    buffer = io.BytesIO()
    if table.num_rows:
        pacsv.write_csv(table, buffer, _WRITE_OPTIONS)
    return (",".join(table.column_names) + "\n").encode() + buffer.getvalue()


def write_csv(path: Path, table: pa.Table, *, encoding: str = "utf-8") -> None:
    """Write a table as a CSV file in the given encoding."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = csv_bytes(table)
    if encoding != "utf-8":
        data = data.decode("utf-8").encode(encoding)
    path.write_bytes(data)


@dataclass
class Planted:
    """What the deliveries plant, as listed in anomalies.json."""

    malformed: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    redelivered_files: list[dict[str, str]] = field(default_factory=list)
    repeated_rows: list[dict[str, object]] = field(default_factory=list)
    silent: dict[str, object] = field(default_factory=dict)
    files: int = 0
    trace_rows: int = 0


def _corrupt(line: str, *, columns: list[str], source: str, problem: str, serial: int) -> str:
    """Damage one CSV line the way a faulty export would."""
    values = line.split(",")
    if problem == "too_few_fields":
        return ",".join(values[:3])
    if problem == "bad_timestamp":
        values[columns.index(_TIME_COLUMN[source])] = _BAD_TIMESTAMPS[serial % len(_BAD_TIMESTAMPS)]
    elif problem == "missing_required":
        values[columns.index(_KEY_COLUMN[source])] = ""
    elif problem == "unknown_channel":
        values[columns.index("channel")] = "wechat_pay"
    elif problem == "unknown_visit_type":
        values[columns.index("visit_type")] = "spa_treatment"
    return ",".join(values)


def _choose_malformed(
    *, rng: np.random.Generator, trace: Trace, excluded_days: set[int], count: int
) -> IntArray:
    """Choose which rows of a source to damage, away from rows the truth depends on."""
    eligible = ~trace.protected & ~np.isin(trace.day, list(excluded_days))
    candidates = np.flatnonzero(eligible)
    chosen = rng.choice(candidates, size=min(count, candidates.size), replace=False)
    result: IntArray = np.sort(chosen)
    return result


def _apply_malformed(
    data: bytes, *, lines: dict[int, str], columns: list[str], source: str, start_serial: int
) -> bytes:
    """Return file bytes with the given physical lines damaged."""
    text = data.decode("utf-8").split("\n")
    for serial, (line_no, problem) in enumerate(sorted(lines.items()), start=start_serial):
        text[line_no - 1] = _corrupt(
            text[line_no - 1], columns=columns, source=source, problem=problem, serial=serial
        )
    return "\n".join(text).encode("utf-8")


def malformed_count(days: int) -> int:
    """Return how many rows per source to damage: about 12 a year, between 4 and 20."""
    return int(min(20, max(4, round(12 * days / 365))))


# Long by design: one day loop planting each defect where it was drawn; its order fixes files.
def write_daily(
    *,
    out: Path,
    source: str,
    trace: Trace,
    start: date,
    days: int,
    rng: np.random.Generator,
    planted: Planted,
    silent_days: set[int] | None = None,
    resend_day: int | None = None,
    repeat_day: int | None = None,
    repeat_rows: int = 50,
) -> None:
    """Write one file per day; plant silence, a re-sent file, repeated rows, damaged rows."""
    folder = out / source
    folder.mkdir(parents=True, exist_ok=True)
    silent = silent_days or set()
    offsets = np.searchsorted(trace.day, np.arange(days + 1))
    excluded = set(silent)
    for special in (resend_day, repeat_day):
        if special is not None:
            excluded.add(special)
    chosen = _choose_malformed(
        rng=rng, trace=trace, excluded_days=excluded, count=malformed_count(days)
    )
    chosen_day = trace.day[chosen]
    problems = _PROBLEMS[source]
    columns = trace.table.column_names
    records: list[dict[str, object]] = []
    serial = 0
    for d in range(days):
        stamp = (start + timedelta(days=d)).strftime("%Y%m%d")
        name = f"{source}_{stamp}.csv"
        lo, hi = int(offsets[d]), int(offsets[d + 1])
        # On a silent day the department's export ran but produced nothing: header only.
        body = trace.table.slice(lo, 0 if d in silent else hi - lo)
        if d == repeat_day and d > 0:
            plo, phi = int(offsets[d - 1]), int(offsets[d])
            take = np.sort(
                rng.choice(np.arange(plo, phi), size=min(repeat_rows, phi - plo), replace=False)
            )
            repeated = trace.table.take(pa.array(take))
            planted.repeated_rows.append(
                {
                    "source": source,
                    "file": name,
                    "from_file": f"{source}_{(start + timedelta(days=d - 1)):%Y%m%d}.csv",
                    "record_ids": repeated.column("record_id").to_pylist(),
                }
            )
            body = pa.concat_tables([repeated, body])
        data = csv_bytes(body)
        in_file = chosen[chosen_day == d] if d not in silent else chosen[:0]
        if in_file.size:
            lines: dict[int, str] = {}
            for row in in_file.tolist():
                problem = problems[(len(records) + len(lines)) % len(problems)]
                lines[row - lo + 2] = problem
            data = _apply_malformed(
                data, lines=lines, columns=columns, source=source, start_serial=serial
            )
            serial += len(lines)
            records += [
                {"file": name, "line": line, "problem": problem}
                for line, problem in sorted(lines.items())
            ]
        (folder / name).write_bytes(data)
        planted.files += 1
        planted.trace_rows += body.num_rows
        if d == resend_day:
            resend = f"{source}_{stamp}.resend.csv"
            (folder / resend).write_bytes(data)
            planted.files += 1
            planted.trace_rows += body.num_rows
            planted.redelivered_files.append({"source": source, "file": resend, "original": name})
    planted.malformed[source] = records


def month_starts(start: date, days: int) -> list[date]:
    """Return the first day of every calendar month the period touches."""
    end = start + timedelta(days=days - 1)
    months = []
    current = date(start.year, start.month, 1)
    while current <= end:
        months.append(current)
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return months


def write_monthly(
    *,
    out: Path,
    source: str,
    trace: Trace,
    start: date,
    days: int,
    planted: Planted,
    encoding: str = "utf-8",
    rng: np.random.Generator | None = None,
    trace_source: bool = False,
) -> None:
    """Write one file per calendar month of the period, optionally with damaged rows."""
    folder = out / source
    folder.mkdir(parents=True, exist_ok=True)
    chosen = np.zeros(0, dtype=np.int64)
    if rng is not None:
        chosen = _choose_malformed(
            rng=rng, trace=trace, excluded_days=set(), count=malformed_count(days)
        )
    problems = _PROBLEMS.get(source, [])
    records: list[dict[str, object]] = []
    columns = trace.table.column_names
    for first in month_starts(start, days):
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        lo = int(np.searchsorted(trace.day, (first - start).days))
        hi = int(np.searchsorted(trace.day, (nxt - start).days))
        name = f"{source}_{first:%Y%m}.csv"
        body = trace.table.slice(lo, hi - lo)
        data = csv_bytes(body)
        in_file = chosen[(chosen >= lo) & (chosen < hi)]
        if in_file.size:
            lines = {
                row - lo + 2: problems[(len(records) + k) % len(problems)]
                for k, row in enumerate(in_file.tolist())
            }
            data = _apply_malformed(
                data, lines=lines, columns=columns, source=source, start_serial=len(records)
            )
            records += [
                {"file": name, "line": line, "problem": problem}
                for line, problem in sorted(lines.items())
            ]
        if encoding != "utf-8":
            data = data.decode("utf-8").encode(encoding)
        (folder / name).write_bytes(data)
        planted.files += 1
        if trace_source:
            planted.trace_rows += body.num_rows
    if rng is not None:
        planted.malformed[source] = records
