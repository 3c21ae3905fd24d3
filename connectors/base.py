"""The Connector: read a delivery, map it onto its reference format, normalise, quarantine."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from connectors.config import SourceConfig, canonical_encoding
from connectors.errors import ConnectorError, MissingColumns
from connectors.files import RawChunk, open_delivery
from connectors.identity import normalise_arrow
from connectors.spec import SOURCES, Column, SourceSpec

__all__ = ["Batch", "Connector", "get_connector"]

_TRUE = ("true", "1", "yes", "y", "t", "是")
_FALSE = ("false", "0", "no", "n", "f", "否")
_SEX = {"M": "M", "F": "F", "m": "M", "f": "F", "1": "M", "2": "F", "男": "M", "女": "F"}
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d")
# an offset follows a time of day; "2025-01-01" must not read as "-01" hours
_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|z|[+-]\d{2}(?::?\d{2})?)$"
# The local time zone of deliveries unless the caller gives the configured one (settings).
DEFAULT_TIMEZONE = "Asia/Shanghai"
# A local time the clock shows twice (daylight saving ends) reads as the first, the summer one;
# one it skips (daylight saving begins) as the first instant after the gap.
_AMBIGUOUS = "earliest"
_NONEXISTENT = "latest"
_DECIMAL = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
# Yuan: a sign, whole yuan, and decimals of which only the first two (jiao, fen) may be nonzero.
_MONEY = r"^(?P<sign>[+-]?)(?P<yuan>\d{1,15})(?:\.(?P<fraction>\d*))?$"
MONEY_TYPE = pa.decimal128(18, 2)
_STRING = pd.StringDtype("pyarrow")
_EXPECTED = {
    "money": ", expected yuan exact to the fen (at most two decimals)",
    "partial_date": ", expected YYYY-MM-DD, YYYY-MM or YYYY",
}


@dataclass
class Batch:
    """Hold one slice of a delivery: normalised good rows and quarantined rows.

    `raw_text` gives the delivered text of good rows by position, for a row the domain
    quarantines after all (a record that conflicts with an earlier delivery).
    """

    rows: pd.DataFrame
    quarantined: pd.DataFrame
    rows_read: int
    raw_text: Callable[[np.ndarray], list[str]] | None = None

    def raw_of(self, positions: np.ndarray) -> list[str]:
        """Return the delivered text of the good rows at `positions` ("" if unknown)."""
        if self.raw_text is None:
            return [""] * len(positions)
        return self.raw_text(np.asarray(positions, dtype=np.int64))


class Connector:
    """Read deliveries of one source and yield normalised batches.

    ``arrived_at`` is when the delivery arrived (aware; default: when its rows are read): no
    date of it may lie after that, beyond the configured allowance. ``timezone`` (a zone name
    or a ZoneInfo) is the local time of the deliveries: a timestamp without an offset is read
    in it, and dates are its calendar days.
    """

    def __init__(
        self,
        spec: SourceSpec,
        config: SourceConfig,
        *,
        arrived_at: dt.datetime | None = None,
        timezone: str | ZoneInfo = DEFAULT_TIMEZONE,
    ) -> None:
        if arrived_at is not None and arrived_at.tzinfo is None:
            raise ValueError("arrived_at must be timezone-aware")
        self.spec = spec
        self.config = config
        self.arrived_at = arrived_at
        self.zone = _zone(timezone)

    @property
    def name(self) -> str:
        """Return the source name."""
        return self.spec.name

    @property
    def key(self) -> tuple[str, ...]:
        """Return the primary-key columns."""
        return self.spec.key

    @property
    def cursor(self) -> str | None:
        """Return the replication cursor column (None: full snapshot)."""
        return self.spec.cursor

    def read(
        self,
        path: Path,
        *,
        format: str | None = None,
        encoding: str | None = None,
        batch_rows: int = 1_000_000,
    ) -> Iterator[Batch]:
        """Yield batches of at most ``batch_rows`` rows; options override the config."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be positive")
        enc_name = encoding or self.config.encoding
        enc = canonical_encoding(enc_name)
        if enc is None:
            raise ConnectorError(f"{path}: unsupported encoding {enc_name!r}", path=path)
        delivery = open_delivery(
            Path(path), format=format or self.config.format, encoding=enc, batch_rows=batch_rows
        )
        self._check_columns(delivery.path, delivery.columns)
        yield from self.read_chunks(delivery.chunks, batch_rows=batch_rows)

    def read_chunks(self, chunks: Iterable[RawChunk], *, batch_rows: int) -> Iterator[Batch]:
        """Normalise raw chunks from any transport into batches of at most ``batch_rows`` rows."""
        for chunk in chunks:
            yield from _split(self._normalise(chunk), batch_rows)

    def check_columns(self, origin: Path, delivered: list[str]) -> None:
        """Refuse a delivery whose columns (after renaming) lack a required one."""
        self._check_columns(origin, delivered)

    # ---------------------------------------------------------------- mapping

    def _reference_name(self, delivered: str) -> str:
        return self.config.rename.get(delivered, delivered)

    def _check_columns(self, path: Path, delivered: list[str]) -> None:
        present = {self._reference_name(c) for c in delivered}
        missing = [c for c in self.spec.required_columns if c not in present]
        if missing:
            raise MissingColumns(path, source=self.name, columns=missing)

    def _normalise(self, chunk: RawChunk) -> Batch:
        table = chunk.table
        n = table.num_rows
        by_ref: dict[str, pa.ChunkedArray] = {}
        extras: list[str] = []
        for delivered in table.column_names:
            ref = self._reference_name(delivered)
            if ref in self.spec.column_names and ref not in by_ref:
                by_ref[ref] = table.column(delivered)
            else:
                extras.append(delivered)

        out: dict[str, pa.Array | pa.ChunkedArray] = {}
        errors: list[tuple[np.ndarray, list[str]]] = []
        for col in self.spec.columns:
            values = by_ref.get(col.name)
            if values is None:
                values = pa.nulls(n, pa.string())
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks()
            parsed, bad, why = self._column(col, values)
            out[col.name] = parsed
            if col.kind == "id_number":
                number, status = cast(tuple[pa.Array, pa.Array], parsed)
                out[col.name], out[f"{col.name}_status"] = number, status
            if bad.any():
                errors.append((bad, why))

        errors.extend(self._check_rows(out))
        out["_line"] = pa.array(chunk.lines, pa.int64())
        out["_extra"] = _extra_json(table, extras)
        good = np.ones(n, dtype=bool)
        for bad, _ in errors:
            good &= ~bad
        frame = pa.table(out)
        rows = _to_pandas(frame.filter(pa.array(good)) if not good.all() else frame)

        q_pos = np.flatnonzero(~good)
        reasons: list[str] = []
        if len(q_pos):
            # few rows: a Python loop to join each row's reasons is fine here
            per_row: dict[int, list[str]] = {int(p): [] for p in q_pos}
            for bad, why in errors:
                for p, text in zip(np.flatnonzero(bad), why, strict=True):
                    per_row[int(p)].append(text)
            reasons = ["; ".join(per_row[int(p)]) for p in q_pos]
        quarantined = pd.DataFrame(
            {
                "line": pd.array([*chunk.bad_lines, *chunk.lines[q_pos].tolist()], dtype="int64"),
                "raw": pd.array([*chunk.bad_raw, *chunk.raw_text(q_pos)], dtype=_STRING),
                "reason": pd.array([*chunk.bad_reasons, *reasons], dtype=_STRING),
            }
        ).sort_values("line", kind="stable", ignore_index=True)
        good_rows = np.flatnonzero(good)
        return Batch(
            rows,
            quarantined,
            len(rows) + len(quarantined),
            raw_text=lambda positions: chunk.raw_text(good_rows[positions]),
        )

    # ---------------------------------------------------------------- columns

    def _column(self, col: Column, values: pa.Array) -> tuple[object, np.ndarray, list[str]]:
        """Parse one column; return (parsed, bad-row mask, reasons of the bad rows)."""
        typed = self._typed(col, values)
        if typed is not None:
            text = None
            parsed, unparsable = typed, np.zeros(len(values), dtype=bool)
            blank = pc.is_null(values).to_numpy(zero_copy_only=False)
        else:
            text = _trimmed(values)
            vmap = self.config.value_maps.get(col.name)
            if vmap:
                text = _map_values(text, vmap)
            blank = pc.is_null(text).to_numpy(zero_copy_only=False)
            parsed, unparsable = self._parse(col, text)
        if col.kind == "id_number":
            parsed = normalise_arrow(_trimmed(values) if text is None else text)
            unparsable = np.zeros(len(values), dtype=bool)
        required = col.required and not col.allow_blank
        bad_blank = blank & required
        bad = bad_blank | (unparsable & ~blank)
        why: list[str] = []
        if bad.any():
            shown = values if text is None else text
            for p in np.flatnonzero(bad):
                if bad_blank[p]:
                    why.append(f"missing required value in {col.name}")
                    continue
                value = shown[int(p)].as_py()
                label = f"{col.kind} value" if col.kind != "enum" else "value"
                extra = "" if col.required else " (optional column)"
                expect = f", expected one of {', '.join(col.values)}" if col.values else ""
                expect += _EXPECTED.get(col.kind, "")
                why.append(f"bad {label} in {col.name}{extra}: {value!r}{expect}")
        return parsed, bad, why

    def _typed(self, col: Column, values: pa.Array) -> pa.Array | None:
        """Convert a natively typed (Parquet) column directly; None means parse it as text."""
        t = values.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
            return None
        if col.kind == "bool" and pa.types.is_boolean(t):
            return values
        # Typed amounts are checked as the text they stand for: a float's shortest repr
        # shows a third decimal as plainly as a CSV does.
        if col.kind == "decimal" and (
            pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        ):
            return pc.cast(values, pa.float64())
        if col.kind == "date" and (pa.types.is_date(t) or pa.types.is_timestamp(t)):
            if pa.types.is_timestamp(t) and t.tz is not None:
                values = pc.cast(values, pa.timestamp("us", t.tz))
                values = pc.local_timestamp(values)
            return pc.floor_temporal(pc.cast(values, pa.timestamp("us")), unit="day")
        if col.kind == "timestamp" and pa.types.is_timestamp(t):
            if t.tz is None:
                return _local_to_utc(pc.cast(values, pa.timestamp("us")), self.zone)
            return pc.cast(values, pa.timestamp("us", "UTC"))
        return None

    def _parse(self, col: Column, text: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """Parse stripped text into the column's kind; return (values, unparsable mask)."""
        n = len(text)
        if col.kind in ("str", "id_number"):
            return text, np.zeros(n, dtype=bool)
        if col.kind == "enum":
            return _enum(col, text)
        if col.kind == "bool":
            low = pc.utf8_lower(text)
            is_true = pc.is_in(low, pa.array(_TRUE))
            is_false = pc.is_in(low, pa.array(_FALSE))
            value = pc.if_else(is_true, True, pc.if_else(is_false, False, None))
            bad = pc.and_(pc.is_valid(text), pc.is_null(value))
            return value, bad.to_numpy(zero_copy_only=False)
        if col.kind == "decimal":
            ok = pc.fill_null(pc.match_substring_regex(text, _DECIMAL), False)
            value = pc.cast(pc.if_else(ok, text, None), pa.float64())
            return value, (pc.invert(ok).to_numpy(zero_copy_only=False))
        if col.kind == "money":
            return _money(text)
        if col.kind == "partial_date":
            return _partial_dates(text)
        fmt = self.config.date_formats.get(col.name)
        if col.kind == "date":
            parsed = _parse_dates(pd.Series(text.to_pandas(), dtype=object), fmt)
            arr = pa.array(parsed.astype("datetime64[us]"), pa.timestamp("us"), from_pandas=True)
            bad = parsed.isna().to_numpy() & pc.is_valid(text).to_numpy(zero_copy_only=False)
            return arr, bad
        instants = _parse_timestamps(text, fmt, self.zone)
        missing = np.isnat(instants)
        arr = pa.array(instants, pa.timestamp("us"), mask=missing).cast(pa.timestamp("us", "UTC"))
        return arr, missing & pc.is_valid(text).to_numpy(zero_copy_only=False)

    # ------------------------------------------------------------------- values

    def _check_rows(self, out: Mapping[str, Any]) -> list[tuple[np.ndarray, list[str]]]:
        """Check parsed values against the contract and the policy; return (bad, reasons) pairs.

        Dates lie between the earliest date and the delivery's arrival (plus the allowance),
        amounts are positive and at most their ceiling, rows keep their dates in order, and a
        person is at least the benefit's minimum age.
        """
        rules = self.config.validation
        arrived = self.arrived_at or dt.datetime.now(dt.UTC)
        zone = self.zone
        latest_local = (arrived + rules.future_allowance).astimezone(zone).replace(tzinfo=None)
        arrived_here = arrived.astimezone(zone)
        arrived_local = arrived_here.replace(tzinfo=None)
        shown = f"{arrived_local:%Y-%m-%d %H:%M} {_offset_text(arrived_here)}"
        errors: list[tuple[np.ndarray, list[str]]] = []
        for col in self.spec.columns:
            values = out[col.name]
            if isinstance(values, pa.Array) and pa.types.is_string(values.type):
                # No name, number or code holds one, and PostgreSQL stores no text with it:
                # let through, it failed the whole delivery instead of this row.
                nul = _mask(pc.match_substring(values, "\x00"))
                errors.append(_why(nul, values, col, "holds a NUL character"))
            if col.kind in ("date", "timestamp"):
                local = _local_naive(values, col.kind, zone)
                if rules.earliest is not None:
                    bad = local < np.datetime64(rules.earliest, "us")
                    errors.append(_why(bad, local, col, f"is before {rules.earliest}"))
                if not col.future:
                    if col.kind == "date":
                        bad = local > np.datetime64(latest_local.date(), "us")
                    else:
                        bad = local > np.datetime64(latest_local, "us")
                    errors.append(_why(bad, local, col, f"is after the delivery arrived ({shown})"))
            elif col.kind == "partial_date":
                first, last = _partial_bounds(values)
                if rules.earliest is not None:
                    bad = last < np.datetime64(rules.earliest, "us")
                    errors.append(_why(bad, values, col, f"is before {rules.earliest}"))
                bad = first > np.datetime64(latest_local.date(), "us")
                errors.append(_why(bad, values, col, f"is after the delivery arrived ({shown})"))
            elif col.kind == "money":
                zero = pa.scalar(0, MONEY_TYPE)
                low = pc.less(values, zero) if col.allow_zero else pc.less_equal(values, zero)
                sign = "is negative" if col.allow_zero else "is not positive"
                errors.append(_why(_mask(low), values, col, sign))
                ceiling = rules.ceilings.get(col.name)
                if ceiling is not None:
                    high = _mask(pc.greater(values, pa.scalar(ceiling, MONEY_TYPE)))
                    errors.append(
                        _why(high, values, col, f"is above the ceiling of {ceiling} yuan")
                    )
            elif col.bounds is not None:
                number = values.to_numpy(zero_copy_only=False)
                low_, high_ = col.bounds
                with np.errstate(invalid="ignore"):
                    bad = (number < low_) | (number > high_)
                errors.append(_why(bad, number, col, f"is outside {low_:g}..{high_:g}"))
        for earlier, later in self.spec.order:
            # A partial date is in order if any day it allows is: its first day as the
            # earlier date, its last as the later.
            first = _ordered(out[earlier], self.spec.column(earlier).kind, zone, later=False)
            second = _ordered(out[later], self.spec.column(later).kind, zone, later=True)
            bad = second < first
            if bad.any():
                why = [
                    f"{later} {_day(b)} is before {earlier} {_day(a)}"
                    for a, b in zip(first[bad], second[bad], strict=True)
                ]
                errors.append((bad, why))
        if self.spec.minimum_age is not None and rules.minimum_age:
            errors.append(self._check_age(out, arrived_local.date()))
        for flag, needed in self.spec.requires:
            given = pc.fill_null(out[flag], False).to_numpy(zero_copy_only=False)
            has = pc.fill_null(out[needed], False).to_numpy(zero_copy_only=False)
            bad = given & ~has
            text = f"{flag}=true without {needed}=true: only a correction withdraws a record"
            errors.append((bad, [text] * int(bad.sum())))
        return [(bad, why) for bad, why in errors if bad.any()]

    def _check_age(self, out: Mapping[str, Any], today: dt.date) -> tuple[np.ndarray, list[str]]:
        """Return the rows whose person is younger than their benefit type's minimum age."""
        assert self.spec.minimum_age is not None
        birth_column, type_column = self.spec.minimum_age
        birth = pd.Series(_local_naive(out[birth_column], "date", self.zone))
        benefit = pd.Series(out[type_column].to_numpy(zero_copy_only=False), dtype=object)
        minimum = benefit.map(self.config.validation.minimum_age)
        later_in_year = (birth.dt.month > today.month) | (
            (birth.dt.month == today.month) & (birth.dt.day > today.day)
        )
        age = today.year - birth.dt.year - later_in_year.astype(int)
        bad = (age < minimum).fillna(False).to_numpy(dtype=bool)
        why = [
            f"{birth_column} {_day(b)} makes the person {int(a)} years old, younger than "
            f"the minimum age {int(m)} for {kind}"
            for b, a, m, kind in zip(
                birth[bad].to_numpy(), age[bad], minimum[bad], benefit[bad], strict=True
            )
        ]
        return bad, why


# ------------------------------------------------------------------- helpers


def _money(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Parse yuan exactly to the fen (decimal128, never a float); third decimals are bad."""
    parts = pc.extract_regex(text, _MONEY)
    matched = pc.is_valid(parts)
    fraction = pc.fill_null(pc.struct_field(parts, "fraction"), "")
    # Digits past the fen are allowed only as zeros: 3000.120 is 3000.12, 3000.123 is not.
    exact = pc.match_substring_regex(pc.utf8_slice_codeunits(fraction, 2), r"^0*$")
    ok = pc.fill_null(pc.and_(matched, exact), False)
    fen = pc.utf8_rpad(pc.utf8_slice_codeunits(fraction, 0, 2), width=2, padding="0")
    normal = pc.binary_join_element_wise(
        pc.struct_field(parts, "sign"), pc.struct_field(parts, "yuan"), ".", fen, ""
    )
    value = pc.cast(pc.if_else(ok, normal, pa.scalar(None, pa.string())), MONEY_TYPE)
    bad = pc.and_(pc.is_valid(text), pc.invert(ok))
    return value, pc.fill_null(bad, False).to_numpy(zero_copy_only=False)


_PARTIAL_DASHED = r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?$"
_PARTIAL_COMPACT = r"^(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})?$"


def _partial_dates(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Parse dates known to the day, month or year; return them as `YYYY[-MM[-DD]]` text.

    `YYYY-MM-DD` and `YYYYMMDD`, `YYYY-MM` and `YYYYMM`, `YYYY`; a month outside 1..12 or a
    day the month lacks is bad.
    """
    dashed = pc.extract_regex(text, _PARTIAL_DASHED)
    compact = pc.extract_regex(text, _PARTIAL_COMPACT)
    parts = {
        name: pc.coalesce(pc.struct_field(dashed, name), pc.struct_field(compact, name))
        for name in ("year", "month", "day")
    }
    empty = pa.scalar("", pa.string())
    year = parts["year"].to_numpy(zero_copy_only=False)
    month = pc.if_else(pc.equal(parts["month"], empty), None, parts["month"])
    day = pc.if_else(pc.equal(parts["day"], empty), None, parts["day"])
    has_month = pc.is_valid(month).to_numpy(zero_copy_only=False)
    has_day = pc.is_valid(day).to_numpy(zero_copy_only=False)
    full = pd.Series(
        pc.binary_join_element_wise(
            pc.fill_null(parts["year"], "1"), pc.fill_null(month, "01"), pc.fill_null(day, "01"),
            "-",
        ).to_pandas(),
        dtype=object,
    )  # fmt: skip
    valid = pd.to_datetime(full, format="%Y-%m-%d", errors="coerce").notna().to_numpy()
    matched = pd.notna(year) & valid
    normal = np.where(
        has_day, full.to_numpy(), np.where(has_month, full.str[:7].to_numpy(), year)
    ).astype(object)
    value = pa.array(normal, pa.string(), mask=~matched)
    bad = ~matched & pc.is_valid(text).to_numpy(zero_copy_only=False)
    return value, bad


def _partial_bounds(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Return the first and the last day a partial date allows, as datetime64[us] (NaT)."""
    text = pd.Series(values.to_pandas(), dtype=object)
    length = text.str.len().to_numpy(dtype=float, na_value=np.nan)
    first = pd.to_datetime(
        text.where(length != 4, text + "-01-01").where(length != 7, text + "-01"),
        format="%Y-%m-%d", errors="coerce",
    ).to_numpy(dtype="datetime64[D]")  # fmt: skip
    month_end = (first.astype("datetime64[M]") + 1).astype("datetime64[D]") - 1
    year_end = (first.astype("datetime64[Y]") + 1).astype("datetime64[D]") - 1
    last = np.where(length == 4, year_end, np.where(length == 7, month_end, first))
    return first.astype("datetime64[us]"), last.astype("datetime64[us]")


def _zone(zone: str | ZoneInfo) -> ZoneInfo:
    """Return a time zone of the zone database, refusing a name it does not know."""
    if isinstance(zone, ZoneInfo) and zone.key is not None:
        return zone
    try:
        # Arrow converts by the zone's name: one read from a file without its name is refused.
        return ZoneInfo(str(zone.key if isinstance(zone, ZoneInfo) else zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConnectorError(f"unknown time zone {zone!r}") from None


def _local_naive(values: pa.Array, kind: str, zone: ZoneInfo) -> np.ndarray:
    """Return dates, or timestamps as local wall-clock time, as naive datetime64[us] (NaT)."""
    if kind == "timestamp":
        utc = pc.cast(values, pa.timestamp("us", "UTC")).cast(pa.timestamp("us"))
        return _shift(utc, zone, to_utc=False).to_numpy(zero_copy_only=False)
    return pc.cast(values, pa.timestamp("us")).to_numpy(zero_copy_only=False)


def _ordered(values: pa.Array, kind: str, zone: ZoneInfo, *, later: bool) -> np.ndarray:
    """Return a column's days for an order check: a partial date's first or last day."""
    if kind == "partial_date":
        first, last = _partial_bounds(values)
        return last if later else first
    return _local_naive(values, kind, zone)


def _local_to_utc(local: pa.Array, zone: ZoneInfo) -> pa.Array:
    """Return naive local wall-clock timestamps[us] as the UTC instants they show."""
    return _shift(local, zone, to_utc=True).cast(pa.timestamp("us", "UTC"))


_DAY_US = 86_400_000_000
_CHANGES = np.iinfo(np.int64).min  # the offset of a day on which the zone's offset changes
_EPOCH = dt.datetime(1970, 1, 1)


def _shift(values: pa.Array, zone: ZoneInfo, *, to_utc: bool) -> pa.Array:
    """Move naive timestamps[us] from the wall clock of `zone` to UTC (`to_utc`) or back.

    Arrow's zone conversions cost about a second per million rows; a delivery spans few days,
    and on all but the days the clock changes the offset is one number. Those days' rows
    alone go through Arrow, which settles a time shown twice or never.
    """
    valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
    micros = pc.fill_null(pc.cast(values, pa.int64()), 0).to_numpy(zero_copy_only=False).copy()
    if not valid.any():
        return values
    days = micros // _DAY_US
    days[~valid] = days[valid][0]
    offsets = _offsets_by_day(days, zone, local=to_utc)
    changes = (offsets == _CHANGES) & valid
    micros[~changes] += -offsets[~changes] if to_utc else offsets[~changes]
    if changes.any():
        rows = np.flatnonzero(changes)
        part = values.take(pa.array(rows))
        if to_utc:
            aware = pc.assume_timezone(
                part, timezone=zone.key, ambiguous=_AMBIGUOUS, nonexistent=_NONEXISTENT
            )
            exact = pc.cast(pc.cast(aware, pa.timestamp("us", "UTC")), pa.timestamp("us"))
        else:
            exact = pc.local_timestamp(pc.cast(part, pa.timestamp("us", zone.key)))
        micros[rows] = pc.cast(exact, pa.int64()).to_numpy(zero_copy_only=False)
    return pc.cast(pa.array(micros, pa.int64(), mask=~valid), pa.timestamp("us"))


def _offsets_by_day(days: np.ndarray, zone: ZoneInfo, *, local: bool) -> np.ndarray:
    """Return per row the zone's UTC offset in microseconds on its day (local or UTC).

    A day whose offset at its start differs from the next day's start is one on which the
    clock changes: `_CHANGES`.
    """
    first, last = int(days.min()), int(days.max())
    if last - first < 4096:
        spanned, index = np.arange(first, last + 1), days - first
    else:
        spanned, index = np.unique(days, return_inverse=True)
    at_start = {day: _offset_at(day, zone, local=local) for day in {*spanned, *(spanned + 1)}}
    per_day = np.array(
        [
            _CHANGES if at_start[d] is None or at_start[d] != at_start[d + 1] else at_start[d]
            for d in spanned
        ],
        dtype=np.int64,
    )
    return per_day[index]


def _offset_at(day: int, zone: ZoneInfo, *, local: bool) -> int | None:
    """Return the zone's offset in microseconds at the start of a day, None beyond datetime."""
    try:
        start = _EPOCH + dt.timedelta(days=int(day))
        if local:
            offset = start.replace(tzinfo=zone).utcoffset()
        else:
            offset = start.replace(tzinfo=dt.UTC).astimezone(zone).utcoffset()
    except (OverflowError, ValueError):
        return None
    return None if offset is None else offset // dt.timedelta(microseconds=1)


def _offset_text(moment: dt.datetime) -> str:
    """Return a moment's offset from UTC as +HH:MM (the local time an error message shows)."""
    offset = moment.utcoffset() or dt.timedelta(0)
    sign = "-" if offset < dt.timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _day(value: np.datetime64) -> str:
    return str(np.datetime_as_string(value, unit="D"))


def _mask(condition: pa.Array) -> np.ndarray:
    """Return a boolean Arrow result as a numpy mask, nulls false."""
    return pc.fill_null(condition, False).to_numpy(zero_copy_only=False)


def _why(
    bad: np.ndarray, values: np.ndarray | pa.Array, col: Column, problem: str
) -> tuple[np.ndarray, list[str]]:
    """Return the bad rows and a reason per bad row naming the column and its value."""
    if not bad.any():
        return bad, []
    if isinstance(values, pa.Array):
        text = [repr(v)[1:-1] if isinstance(v, str) and "\x00" in v else str(v)
                for v in values.filter(pa.array(bad)).to_pylist()]  # fmt: skip
    elif np.issubdtype(values.dtype, np.datetime64):
        unit: Any = "D" if col.kind == "date" else "m"
        shown = np.datetime_as_string(values[bad], unit=unit)
        text = [str(v).replace("T", " ") for v in shown]
    else:
        text = [str(v) for v in values[bad].tolist()]
    return bad, [f"{col.name} {value} {problem}" for value in text]


def _trimmed(values: pa.Array) -> pa.Array:
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    text = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)


def _map_values(text: pa.Array, mapping: Mapping[str, str]) -> pa.Array:
    keys = pa.array(list(mapping), text.type)
    idx = pc.index_in(text, value_set=keys)
    mapped = pc.take(pa.array(list(mapping.values()), text.type), idx)
    return pc.coalesce(mapped, text)


def _enum(col: Column, text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    if col.values == ("M", "F"):
        text = _map_values(text, _SEX)
    elif all(v == v.lower() for v in col.values):
        # reference values are lower-case words; a department's "BUS" means "bus"
        text = pc.utf8_lower(text)
    ok = pc.is_in(text, pa.array(col.values, text.type))
    bad = pc.and_(pc.is_valid(text), pc.invert(ok))
    return pc.if_else(ok, text, None), bad.to_numpy(zero_copy_only=False)


def _parse_dates(series: pd.Series, fmt: str | None) -> pd.Series:
    result = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us]")
    for f in (fmt, *_DATE_FORMATS) if fmt else _DATE_FORMATS:
        todo = result.isna() & series.notna()
        if not todo.any():
            break
        got = pd.to_datetime(series[todo], format=f, errors="coerce")
        result[todo] = got.astype("datetime64[us]")
    return result


def _parse_timestamps(text: pa.Array, fmt: str | None, zone: ZoneInfo) -> np.ndarray:
    """Return each text's UTC instant as datetime64[us] (NaT where blank or unparsable).

    A text without an offset is the wall-clock time of `zone`.
    """
    instants = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[us]")
    todo = pc.is_valid(text).to_numpy(zero_copy_only=False)
    if fmt is None:
        done = _plain_local_timestamps(text, instants, zone)
        todo &= ~done
    if todo.any():
        rest = np.flatnonzero(todo)
        parsed = _parse_timestamps_pandas(text.take(pa.array(rest)), fmt, zone)
        instants[rest] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    return instants


def _plain_local_timestamps(text: pa.Array, out: np.ndarray, zone: ZoneInfo) -> np.ndarray:
    """Parse the rows in `YYYY-MM-DD[ T]HH:MM:SS` local form into ``out``; return their mask.

    One Arrow cast parses them about 40 times faster than pandas. The cast is strict (it refuses
    zone offsets, out-of-range fields and impossible days) but all or nothing, so a chunk whose
    candidates do not all parse leaves every row to the general parser.
    """
    # 19 characters and a successful naive cast leave no form but the plain one
    plain = pc.fill_null(pc.equal(pc.utf8_length(text), 19), False).to_numpy(zero_copy_only=False)
    if not plain.any():
        return plain
    rows = None if plain.all() else np.flatnonzero(plain)
    candidates = text if rows is None else text.take(pa.array(rows))
    try:
        local = pc.cast(candidates, pa.timestamp("us"))
    except pa.ArrowInvalid:
        return np.zeros(len(text), dtype=bool)
    utc = _local_to_utc(local, zone).cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)
    if rows is None:
        out[:] = utc
    else:
        out[rows] = utc
    return plain


def _parse_timestamps_pandas(text: pa.Array, fmt: str | None, zone: ZoneInfo) -> pd.Series:
    series = pd.Series(text.to_pandas(), dtype=object)
    result = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
    present = series.notna()
    if fmt:
        result[present] = _to_utc(series[present], fmt, "%z" in fmt, zone)
    todo = (result.isna() & present).to_numpy()
    if todo.any():
        # string work stays in Arrow: per-value Python string methods are the slow part
        dashed = pc.replace_substring(text, "/", "-")
        aware = pc.fill_null(pc.match_substring_regex(dashed, _OFFSET), False).to_numpy(
            zero_copy_only=False
        )
        iso = pd.Series(dashed.to_pandas(), dtype=object)
        for mask, has_offset in ((todo & aware, True), (todo & ~aware, False)):
            if mask.any():
                result[mask] = _to_utc(iso[mask], "ISO8601", has_offset, zone)
    return result


def _to_utc(text: pd.Series, fmt: str, aware: bool, zone: ZoneInfo) -> pd.Series:
    if aware:
        return pd.to_datetime(text, format=fmt, errors="coerce", utc=True).dt.as_unit("us")
    naive = pd.to_datetime(text, format=fmt, errors="coerce")
    if isinstance(naive.dtype, pd.DatetimeTZDtype):  # ISO text that carried an offset anyway
        return naive.dt.tz_convert("UTC").dt.as_unit("us")
    local = pa.array(naive.to_numpy(dtype="datetime64[us]"), pa.timestamp("us"), from_pandas=True)
    utc = _local_to_utc(local, zone).cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)
    return pd.Series(utc, index=text.index).dt.tz_localize("UTC")


def _extra_json(table: pa.Table, extras: list[str]) -> pa.Array:
    """Return one JSON object per row with the unmapped columns (null when there are none)."""
    n = table.num_rows
    if not extras:
        return pa.nulls(n, pa.string())
    parts: list[pa.Array] = []
    for i, name in enumerate(extras):
        col = table.column(name).combine_chunks()
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            try:
                col = pc.cast(col, pa.string())
            except pa.ArrowException:
                col = pa.array(
                    [None if v is None else json.dumps(v, default=str) for v in col.to_pylist()],
                    pa.string(),
                )
        value = pc.binary_join_element_wise('"', _json_escape(col), '"', "")
        value = pc.fill_null(value, "null")
        key = json.dumps(name, ensure_ascii=False)
        parts.append(pa.array([("{" if i == 0 else ", ") + key + ": "] * n, pa.string()))
        parts.append(value)
    parts.append(pa.array(["}"] * n, pa.string()))
    return pc.binary_join_element_wise(*parts, "")


def _json_escape(col: pa.Array) -> pa.Array:
    out = col
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        out = pc.replace_substring(out, raw, escaped)
    # other control characters are rare: escape those few values in Python
    odd = pc.fill_null(pc.match_substring_regex(out, r"[\x00-\x1f]"), False)
    if pc.any(odd).as_py():
        values = out.to_pylist()
        for p in np.flatnonzero(odd.to_numpy(zero_copy_only=False)):
            values[p] = json.dumps(col[int(p)].as_py(), ensure_ascii=False)[1:-1]
        out = pa.array(values, pa.string())
    return out


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    def mapper(t: pa.DataType) -> object:
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return _STRING
        if pa.types.is_boolean(t):
            return pd.BooleanDtype()
        if pa.types.is_decimal(t):
            return pd.ArrowDtype(t)
        return None

    return table.to_pandas(types_mapper=mapper, ignore_metadata=True)


def _split(batch: Batch, size: int) -> Iterator[Batch]:
    if len(batch.rows) <= size:
        yield batch
        return
    empty_q = batch.quarantined.iloc[0:0]
    for i, start in enumerate(range(0, len(batch.rows), size)):
        rows = batch.rows.iloc[start : start + size].reset_index(drop=True)
        q = batch.quarantined if i == 0 else empty_q
        yield Batch(rows, q, len(rows) + len(q), raw_text=_shifted(batch, start))


def _shifted(batch: Batch, start: int) -> Callable[[np.ndarray], list[str]]:
    """Return the raw text of a slice of `batch`'s good rows starting at `start`."""
    return lambda positions: batch.raw_of(positions + start)


def get_connector(
    name: str,
    configs: Mapping[str, SourceConfig],
    *,
    arrived_at: dt.datetime | None = None,
    timezone: str | ZoneInfo = DEFAULT_TIMEZONE,
) -> Connector:
    """Return the connector of source ``name``, configured from ``configs``.

    ``arrived_at`` is when the delivery to read arrived (default: when its rows are read);
    ``timezone`` is the deliveries' local time (the configured one, `LIVENESS_TIMEZONE`).
    """
    config = configs.get(name)
    if config is None:
        if name not in SOURCES:
            known = ", ".join([*SOURCES, *(n for n in configs if n not in SOURCES)])
            raise ConnectorError(f"unknown source {name!r}; known sources: {known}")
        config = SourceConfig(name=name)
    return Connector(config.spec, config, arrived_at=arrived_at, timezone=timezone)
