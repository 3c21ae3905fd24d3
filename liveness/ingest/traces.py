"""Traces: from a connector's normalised rows to evidence-store rows, linked and deduplicated."""

from __future__ import annotations

import numpy as np
import pandas as pd

from liveness.evidence.store import record_hashes
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


def trace_kinds(source: str, rows: pd.DataFrame) -> np.ndarray:
    """Return the evidence kind of each row, in the scoring policy's vocabulary."""
    if source == "transit":
        face = rows["face_match"] if "face_match" in rows else pd.Series(pd.NA, index=rows.index)
        kinds = np.where(face.eq(True).fillna(False), "tap_face", "tap")
        return np.where(face.eq(False).fillna(False), "tap_face_failed", kinds).astype(object)
    if source == "card_txn":
        return rows["channel"].astype(object).to_numpy()
    if source == "medical":
        return rows["visit_type"].astype(object).to_numpy()
    if source == "face":
        result = rows["result"].astype(object).to_numpy()
        channel = rows.get("channel", pd.Series(pd.NA, index=rows.index)).astype("string")
        passed = "pass_" + channel.fillna(UNKNOWN_FACE_CHANNEL).astype(object).to_numpy()
        return np.where(result == "pass", passed, result).astype(object)
    raise ValueError(f"{source} is not a trace source")


def evidence_rows(
    source: str,
    rows: pd.DataFrame,
    *,
    roll: RollIndex,
    cards: CardIndex,
    delivery_id: int,
    timezone: str,
) -> pd.DataFrame:
    """Link rows to persons and shape them as evidence-store rows."""
    stamps = rows[EVENT_COLUMN[source]]
    days = local_days(stamps, timezone)
    if "card_no" in rows:
        link_key = rows["card_no"]
        person_id = link_by_card(rows["card_no"], days, cards)
        link = np.where(person_id >= 0, "card", "none")
    else:
        link_key = rows["id_number"]
        person_id = link_by_id_number(rows["id_number"], rows["id_number_status"], roll)
        link = np.where(person_id >= 0, "id_number", "none")
        if "name" in rows:
            by_name = link_by_number_and_name(
                rows["id_number"], rows["id_number_status"], rows["name"], roll
            )
            found = (person_id < 0) & (by_name >= 0)
            person_id = np.where(found, by_name, person_id)
            link = np.where(found, "name_birth_sex", link)
    correction = rows["correction"] if "correction" in rows else pd.Series(False, index=rows.index)
    traces = pd.DataFrame(
        {
            # Arrow-backed arrays pass through as they are: no Python objects per trace.
            "record_id": rows["record_id"].array,
            "record_hash": record_hashes(rows["record_id"]),
            "person_id": person_id,
            "day": days,
            "event_at": stamps.dt.floor("s").array,
            "kind": trace_kinds(source, rows),
            "link": link,
            "link_key": link_key.array,
            "delivery_id": np.int32(delivery_id),
            "correction": correction.fillna(False).astype(bool).to_numpy(),
        }
    )
    if source == "face":
        # The matched face template: the same face passing for two numbers is an integrity lead.
        face_id = rows["face_id"] if "face_id" in rows else pd.Series(None, index=rows.index)
        traces["face_id"] = face_id.astype("string").str.strip().replace("", pd.NA).array
    return traces


def drop_redeliveries(traces: pd.DataFrame, stored: np.ndarray) -> tuple[pd.DataFrame, int]:
    """Drop rows already stored (or repeated in this batch), unless they are corrections."""
    hashes = traces["record_hash"].to_numpy()
    seen = stored | pd.Series(hashes).duplicated().to_numpy()
    keep = ~seen | traces["correction"].to_numpy(dtype=bool)
    return traces.loc[keep], int((~keep).sum())
