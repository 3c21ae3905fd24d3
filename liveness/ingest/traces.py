"""Traces: from a connector's normalised rows to evidence-store rows, linked and deduplicated."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from connectors.spec import BUILTIN_TRACE_SOURCES, SOURCES, TraceSpec
from liveness.evidence.parts import VOIDED_KIND, record_hashes
from liveness.evidence.records.contents import content_hashes
from liveness.identity import (
    CardIndex,
    RollIndex,
    link_by_card,
    link_by_id_number,
    link_by_name_and_birth_date,
    link_by_number_and_name,
)

# The built-in trace sources; a deployment's set is `connectors.trace_specs(configs)`.
TRACE_SOURCES = BUILTIN_TRACE_SOURCES
EVENT_COLUMN = {
    name: spec.trace.time_column for name, spec in SOURCES.items() if spec.trace is not None
}
# A face pass without a channel is graded as an assisted one: neither the strongest nor nothing.
UNKNOWN_FACE_CHANNEL = "assisted"


def local_days(stamps: pd.Series, timezone: str) -> np.ndarray:
    """Return each UTC timestamp's local calendar day as days since 1970-01-01."""
    local = stamps.dt.tz_convert(timezone).dt.tz_localize(None)
    return local.to_numpy().astype("datetime64[D]").astype(np.int64).astype(np.int32)


TAP_KINDS = pa.array(["tap", "tap_face", "tap_face_failed"], pa.string())
LINKS = pa.array(["none", "card", "id_number", "name_birth_sex", "name_birth_date"], pa.string())
# The link of each link mode, as the `link` column names it.
LINK_OF_MODE = {"card_no": 1, "id_number": 2, "name_birth_date": 4}
# The link key of a row linked by name and birth date: "name|YYYY-MM-DD".
NAME_KEY_SEPARATOR = "|"


def builtin_trace(source: str) -> TraceSpec:
    """Return a built-in trace source's spec (ValueError for any other source)."""
    spec = SOURCES.get(source)
    if spec is None or spec.trace is None:
        raise ValueError(f"{source} is not a built-in trace source")
    return spec.trace


def _arrow(column: pd.Series) -> pa.Array:
    """Return a column as one Arrow array (Arrow-backed columns without a copy)."""
    values = pa.array(column.array) if column.dtype != object else pa.array(column.to_numpy())
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def whole_seconds(stamps: pa.Array) -> pa.Array:
    """Return timestamps as UTC whole seconds, rounded down (before 1970 too, unlike a cast)."""
    kind = stamps.type
    if pa.types.is_timestamp(kind) and kind.tz in ("UTC", "Etc/UTC", "+00:00"):
        # In UTC the wall clock is the instant itself: flooring it as a naive time spares the
        # time-zone kernel its per-value lookups (about ten times the cost).
        stamps = pc.floor_temporal(stamps.cast(pa.timestamp(kind.unit)), unit="second")
    else:
        stamps = pc.floor_temporal(stamps, unit="second")
    return stamps.cast(pa.timestamp("s", tz="UTC"))


def coded(codes: np.ndarray, vocabulary: pa.Array) -> pa.Array:
    """Return the strings of `vocabulary` at `codes`, built in Arrow: no Python object per row."""
    return pa.DictionaryArray.from_arrays(pa.array(codes), vocabulary).cast(pa.string())


def trace_kinds(source: str, rows: pd.DataFrame, trace: TraceSpec | None = None) -> pa.Array:
    """Return the evidence kind of each row, in the scoring policy's vocabulary.

    Transit and face compute theirs from several columns; any other source maps its kind
    column's values through its spec (a built-in source by default), or has one fixed kind.
    """
    if source == "transit":
        if "face_match" not in rows:
            return coded(np.zeros(len(rows), dtype=np.int8), TAP_KINDS)
        face = rows["face_match"].to_numpy(dtype=np.int8, na_value=-1)
        # -1 (unknown) -> tap, 1 -> tap_face, 0 -> tap_face_failed
        return coded(np.array([2, 1, 0], dtype=np.int8)[face], TAP_KINDS)
    if source == "face":
        result = rows["result"].astype(object).to_numpy()
        channel = rows.get("channel", pd.Series(pd.NA, index=rows.index)).astype("string")
        passed = "pass_" + channel.fillna(UNKNOWN_FACE_CHANNEL).astype(object).to_numpy()
        return pa.array(np.where(result == "pass", passed, result).astype(object), pa.string())
    spec = trace if trace is not None else builtin_trace(source)
    if spec.kind_column is None:
        return coded(np.zeros(len(rows), dtype=np.int8), pa.array(spec.kinds[:1], pa.string()))
    values = _arrow(rows[spec.kind_column]).cast(pa.string())
    if all(value == kind for value, kind in spec.kind_map.items()):
        return values  # the values are the kinds (card channels, visit types)
    delivered = pa.array(list(spec.kind_map), pa.string())
    codes = pc.index_in(values, value_set=delivered).to_numpy(zero_copy_only=False)
    # The kind column is a required enum whose every value is mapped (connectors.declare).
    return coded(codes.astype(np.int32), pa.array(list(spec.kind_map.values()), pa.string()))


def link_keys(rows: pd.DataFrame, trace: TraceSpec) -> pa.Array:
    """Return each row's link key: that of the first link mode whose columns the row fills."""
    keys: pa.Array | None = None
    for mode in reversed(trace.link):
        key = _mode_key(rows, mode)
        keys = key if keys is None else pc.if_else(pc.is_valid(key), key, keys)
    assert keys is not None
    return keys.cast(pa.string())


def _mode_key(rows: pd.DataFrame, mode: str) -> pa.Array:
    """Return the key one link mode reads (null where the row lacks it)."""
    if mode != "name_birth_date":
        return _arrow(rows[mode]).cast(pa.string())
    day = pc.strftime(_arrow(rows["birth_date"]).cast(pa.timestamp("s")), format="%Y-%m-%d")
    name = pc.utf8_trim_whitespace(_arrow(rows["name"]).cast(pa.string()))
    name = pc.if_else(pc.equal(name, ""), pa.scalar(None, pa.string()), name)
    return pc.binary_join_element_wise(name, day, NAME_KEY_SEPARATOR)


def split_name_keys(keys: pa.Array) -> tuple[pd.Series, pd.Series]:
    """Return the names and birth dates of "name|YYYY-MM-DD" link keys (null where not one)."""
    text = pd.Series(keys.to_pandas(), dtype="string")
    parts = text.str.rsplit(NAME_KEY_SEPARATOR, n=1, expand=True)
    if parts.shape[1] < 2:
        empty = pd.Series(pd.NA, index=text.index, dtype="string")
        return empty, pd.to_datetime(empty, errors="coerce")
    return parts[0], pd.to_datetime(parts[1], format="%Y-%m-%d", errors="coerce")


def event_times(rows: pd.DataFrame, trace: TraceSpec, timezone: str) -> pd.Series:
    """Return the rows' event times as aware timestamps (a date column: local midnight)."""
    stamps = rows[trace.time_column]
    if getattr(stamps.dt, "tz", None) is None:
        # A date: the event happened on that local day, whatever the hour.
        stamps = pd.Series(pd.to_datetime(stamps).dt.tz_localize(timezone), index=rows.index)
    return stamps


def shape_traces(
    source: str,
    rows: pd.DataFrame,
    *,
    delivery_id: int,
    timezone: str,
    trace: TraceSpec | None = None,
) -> pa.Table:
    """Shape a connector's rows as evidence-store rows, not yet linked to persons.

    Pure, so that the thread reading the next batch may do it: with the record hash it
    computes `content`, the hash of what a re-delivery must not change (not stored in parts).
    `link_traces` adds the person and how it was found. `trace` is the source's spec (a
    built-in source's by default).
    """
    spec = trace if trace is not None else builtin_trace(source)
    stamps = event_times(rows, spec, timezone)
    correction = (
        rows["correction"].to_numpy(dtype=bool, na_value=False)
        if "correction" in rows
        else np.zeros(len(rows), dtype=bool)
    )
    kinds = trace_kinds(source, rows, spec)
    if "voided" in rows:
        # A withdrawn record reads as nothing once its void is the latest version.
        voided = rows["voided"].to_numpy(dtype=bool, na_value=False)
        if voided.any():
            kinds = pc.if_else(pa.array(voided), VOIDED_KIND, kinds)
    columns: dict[str, pa.Array] = {
        "record_id": _arrow(rows["record_id"]).cast(pa.string()),
        "record_hash": pa.array(record_hashes(rows["record_id"]), pa.uint64()),
        "day": pa.array(local_days(stamps, timezone)),
        "event_at": whole_seconds(_arrow(stamps)),
        "kind": kinds,
        "link_key": link_keys(rows, spec),
        "delivery_id": pa.array(np.full(len(rows), delivery_id, dtype=np.int32)),
        "correction": pa.array(correction),
    }
    if source == "face":
        # The matched face template: the same face passing for two numbers is an integrity lead.
        face_id = rows["face_id"] if "face_id" in rows else pd.Series(None, index=rows.index)
        cleaned = face_id.astype("string").str.strip().replace("", pd.NA)
        columns["face_id"] = _arrow(cleaned).cast(pa.string())
    if source == "medical":
        # Death evidence: part of what a re-delivery of the record must not change.
        outcome = rows.get("discharge_outcome", pd.Series(None, index=rows.index, dtype="string"))
        columns["discharge_outcome"] = _arrow(outcome.astype("string")).cast(pa.string())
    table = pa.table(columns)
    return table.append_column("content", pa.array(content_hashes(table, source)))


def link_traces(
    traces: pa.Table,
    rows: pd.DataFrame,
    *,
    roll: Callable[[], RollIndex],
    cards: Callable[[], CardIndex],
    trace: TraceSpec | None = None,
) -> pa.Table:
    """Link shaped traces to persons: add `person_id` (-1: nobody) and `link` (how).

    `roll` and `cards` are called only when a row needs them: transit links by card alone,
    and loading a large roll it does not use would cost more than linking. `trace` is the
    source's spec: its link modes, tried in order (by default: by card where the rows carry
    a card number, else by identity number).
    """
    if trace is not None:
        modes = trace.link
    else:
        modes = ("card_no",) if "card_no" in rows else ("id_number",)
    days = traces["day"].to_numpy()
    if len(modes) == 1:
        person_id, link = _link_by(modes[0], traces["link_key"], rows, days, roll, cards)
    else:
        # Each row by the first mode whose columns it fills (the mode its link key is of).
        person_id = np.full(len(rows), -1, dtype=np.int32)
        link = np.zeros(len(rows), dtype=np.int8)
        taken = np.zeros(len(rows), dtype=bool)
        for mode in modes:
            has = pc.is_valid(_mode_key(rows, mode)).to_numpy(zero_copy_only=False) & ~taken
            taken |= has
            if not has.any():
                continue
            chosen = np.flatnonzero(has)
            found, how = _link_by(
                mode, traces["link_key"].take(pa.array(chosen)),
                rows.iloc[chosen].reset_index(drop=True), days[chosen], roll, cards,
            )  # fmt: skip
            person_id[chosen], link[chosen] = found, how
    return traces.append_column(
        "person_id", pa.array(person_id.astype(np.int32, copy=False))
    ).append_column("link", coded(link, LINKS))


def _link_by(
    mode: str,
    keys: pa.Array | pa.ChunkedArray,
    rows: pd.DataFrame,
    days: np.ndarray,
    roll: Callable[[], RollIndex],
    cards: Callable[[], CardIndex],
) -> tuple[np.ndarray, np.ndarray]:
    """Link rows by one mode; return the person (-1: nobody) and the link code of each."""
    if mode == "card_no":
        person_id = link_by_card(keys, days, cards())
        return person_id, np.where(person_id >= 0, 1, 0).astype(np.int8)
    if mode == "name_birth_date":
        person_id = link_by_name_and_birth_date(rows["name"], rows["birth_date"], roll())
        return person_id, np.where(person_id >= 0, 4, 0).astype(np.int8)
    person_id = link_by_id_number(rows["id_number"], rows["id_number_status"], roll())
    link = np.where(person_id >= 0, 2, 0).astype(np.int8)
    if "name" in rows:
        by_name = link_by_number_and_name(
            rows["id_number"], rows["id_number_status"], rows["name"], roll()
        )
        found = (person_id < 0) & (by_name >= 0)
        person_id = np.where(found, by_name, person_id)
        link = np.where(found, 3, link).astype(np.int8)
    return person_id, link
