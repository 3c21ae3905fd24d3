"""Traces: from a connector's normalised rows to evidence-store rows, linked and deduplicated."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from liveness.evidence.parts import VOIDED_KIND, record_hashes
from liveness.evidence.records.contents import content_hashes
from liveness.identity import (
    CardIndex,
    RollIndex,
    link_by_card,
    link_by_id_number,
    link_by_number_and_name,
)

TRACE_SOURCES = ("transit", "card_txn", "medical", "face")
EVENT_COLUMN = {
    "transit": "tapped_at",
    "card_txn": "txn_at",
    "medical": "visit_at",
    "face": "verified_at",
}
# A face pass without a channel is graded as an assisted one: neither the strongest nor nothing.
UNKNOWN_FACE_CHANNEL = "assisted"


def local_days(stamps: pd.Series, timezone: str) -> np.ndarray:
    """Return each UTC timestamp's local calendar day as days since 1970-01-01."""
    local = stamps.dt.tz_convert(timezone).dt.tz_localize(None)
    return local.to_numpy().astype("datetime64[D]").astype(np.int64).astype(np.int32)


TAP_KINDS = pa.array(["tap", "tap_face", "tap_face_failed"], pa.string())
LINKS = pa.array(["none", "card", "id_number", "name_birth_sex"], pa.string())


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


def _coded(codes: np.ndarray, vocabulary: pa.Array) -> pa.Array:
    """Return the strings of `vocabulary` at `codes`, built in Arrow: no Python object per row."""
    return pa.DictionaryArray.from_arrays(pa.array(codes), vocabulary).cast(pa.string())


def trace_kinds(source: str, rows: pd.DataFrame) -> pa.Array:
    """Return the evidence kind of each row, in the scoring policy's vocabulary."""
    if source == "transit":
        if "face_match" not in rows:
            return _coded(np.zeros(len(rows), dtype=np.int8), TAP_KINDS)
        face = rows["face_match"].to_numpy(dtype=np.int8, na_value=-1)
        # -1 (unknown) -> tap, 1 -> tap_face, 0 -> tap_face_failed
        return _coded(np.array([2, 1, 0], dtype=np.int8)[face], TAP_KINDS)
    if source == "card_txn":
        return _arrow(rows["channel"]).cast(pa.string())
    if source == "medical":
        return _arrow(rows["visit_type"]).cast(pa.string())
    if source == "face":
        result = rows["result"].astype(object).to_numpy()
        channel = rows.get("channel", pd.Series(pd.NA, index=rows.index)).astype("string")
        passed = "pass_" + channel.fillna(UNKNOWN_FACE_CHANNEL).astype(object).to_numpy()
        return pa.array(np.where(result == "pass", passed, result).astype(object), pa.string())
    raise ValueError(f"{source} is not a trace source")


def shape_traces(source: str, rows: pd.DataFrame, *, delivery_id: int, timezone: str) -> pa.Table:
    """Shape a connector's rows as evidence-store rows, not yet linked to persons.

    Pure, so that the thread reading the next batch may do it: with the record hash it
    computes `content`, the hash of what a re-delivery must not change (not stored in parts).
    `link_traces` adds the person and how it was found.
    """
    stamps = rows[EVENT_COLUMN[source]]
    link_key = _arrow(rows["card_no"] if "card_no" in rows else rows["id_number"])
    correction = (
        rows["correction"].to_numpy(dtype=bool, na_value=False)
        if "correction" in rows
        else np.zeros(len(rows), dtype=bool)
    )
    kinds = trace_kinds(source, rows)
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
        "link_key": link_key.cast(pa.string()),
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
) -> pa.Table:
    """Link shaped traces to persons: add `person_id` (-1: nobody) and `link` (how).

    `roll` and `cards` are called only when a row needs them: transit links by card alone,
    and loading a large roll it does not use would cost more than linking.
    """
    days = traces["day"].to_numpy()
    if "card_no" in rows:
        person_id = link_by_card(traces["link_key"], days, cards())
        link = np.where(person_id >= 0, 1, 0).astype(np.int8)
    else:
        person_id = link_by_id_number(rows["id_number"], rows["id_number_status"], roll())
        link = np.where(person_id >= 0, 2, 0).astype(np.int8)
        if "name" in rows:
            by_name = link_by_number_and_name(
                rows["id_number"], rows["id_number_status"], rows["name"], roll()
            )
            found = (person_id < 0) & (by_name >= 0)
            person_id = np.where(found, by_name, person_id)
            link = np.where(found, 3, link).astype(np.int8)
    return traces.append_column(
        "person_id", pa.array(person_id.astype(np.int32, copy=False))
    ).append_column("link", _coded(link, LINKS))
