"""Death evidence and other civil-registration events: matched to the roll, never lost."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from liveness.identity import RollIndex, link_by_id_number, match_death_records
from models import DeathMatch, DeathRecord, Deregistration, RecordStatus

DEATH_SOURCES = ("cremation", "deregistration", "medical")
IN_CHUNK = 500


def _existing(session: Session, column: Any, where: Any, values: list[str]) -> set[str]:
    """Return which of `values` are already stored in `column`."""
    found: set[str] = set()
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start : start + IN_CHUNK]
        found.update(session.scalars(select(column).where(where, column.in_(chunk))))
    return found


def _death_frame(source: str, rows: pd.DataFrame, timezone: str) -> pd.DataFrame:
    """Return a source's death rows in one shape: who, when died, when recorded."""
    frame = pd.DataFrame(
        {
            "record_id": rows["record_id"],
            "id_number": rows["id_number"],
            "id_number_status": rows["id_number_status"],
            "name": rows.get("name", pd.Series(pd.NA, index=rows.index)),
            "sex": rows.get("sex", pd.Series(pd.NA, index=rows.index)),
            "birth_date": rows.get("birth_date", pd.Series(pd.NaT, index=rows.index)),
            "correction": rows.get("correction", pd.Series(False, index=rows.index)),
        }
    )
    if source == "cremation":
        frame["died_on"] = rows["died_on"]
        frame["recorded_on"] = rows["cremated_on"]
    elif source == "deregistration":
        # Without a date of death the deregistration date is the safe bound: it never
        # moves a suspension earlier than the evidence supports.
        frame["died_on"] = rows["died_on"].fillna(rows["deregistered_on"])
        frame["recorded_on"] = rows["deregistered_on"]
    else:
        day = rows["visit_at"].dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
        frame["died_on"] = day
        frame["recorded_on"] = day
    return frame


def load_death_records(
    session: Session, *, source: str, rows: pd.DataFrame, roll: RollIndex, delivery_id: int,
    timezone: str,
) -> tuple[int, int, int]:  # fmt: skip
    """Match and store death records; return (loaded, re-delivered, unmatched)."""
    if rows.empty:
        return 0, 0, 0
    frame = _death_frame(source, rows, timezone).drop_duplicates("record_id", keep="last")
    stored = _existing(
        session, DeathRecord.record_id, DeathRecord.source == source, list(frame["record_id"])
    )
    is_stored = frame["record_id"].isin(stored).to_numpy()
    correction = frame["correction"].fillna(False).astype(bool).to_numpy()
    frame = frame.loc[~is_stored | correction]
    replaced = frame.loc[frame["record_id"].isin(stored), "record_id"].tolist()
    if replaced:
        session.execute(
            delete(DeathRecord).where(
                DeathRecord.source == source, DeathRecord.record_id.in_(replaced)
            )
        )
    matched = match_death_records(frame.reset_index(drop=True), roll)
    records = pd.DataFrame(
        {
            "source": source,
            "record_id": frame["record_id"].to_numpy(),
            "delivery_id": delivery_id,
            "id_number": frame["id_number"].to_numpy(),
            "id_status": frame["id_number_status"].to_numpy(),
            "name": frame["name"].to_numpy(),
            "sex": frame["sex"].to_numpy(),
            "birth_date": pd.to_datetime(frame["birth_date"]).dt.date.to_numpy(),
            "died_on": pd.to_datetime(frame["died_on"]).dt.date.to_numpy(),
            "recorded_on": pd.to_datetime(frame["recorded_on"]).dt.date.to_numpy(),
            "person_id": matched["person_id"]
            .astype("Int64")
            .where(matched["person_id"] >= 0)
            .astype(object)
            .to_numpy(),
            "match": matched["match"].to_numpy(),
            "confidence": matched["confidence"].to_numpy(),
            "status": RecordStatus.ACTIVE.value,
        }
    ).astype(object)
    records = records.where(records.notna(), None)
    if len(records):
        session.execute(insert(DeathRecord), records.to_dict("records"))
    unmatched = int((matched["match"] == DeathMatch.UNMATCHED.value).sum())
    loaded = len(records)
    return loaded, len(rows) - loaded, unmatched


def load_deregistrations(
    session: Session, *, rows: pd.DataFrame, roll: RollIndex, delivery_id: int, timezone: str
) -> tuple[int, int, int]:
    """Store deregistrations: deaths as death records, other reasons as identity events."""
    deaths = rows["reason"].eq("death").fillna(False).to_numpy(dtype=bool)
    loaded, redelivered, unmatched = load_death_records(
        session, source="deregistration", rows=rows.loc[deaths], roll=roll,
        delivery_id=delivery_id, timezone=timezone,
    )  # fmt: skip
    others = rows.loc[~deaths].drop_duplicates("record_id", keep="last")
    stored = _existing(session, Deregistration.record_id, True, list(others["record_id"]))
    fresh = others.loc[~others["record_id"].isin(stored).to_numpy()]
    if len(fresh):
        person_id = link_by_id_number(fresh["id_number"], fresh["id_number_status"], roll)
        frame = pd.DataFrame(
            {
                "record_id": fresh["record_id"].to_numpy(),
                "delivery_id": delivery_id,
                "id_number": fresh["id_number"].to_numpy(),
                "name": fresh["name"].to_numpy(),
                "deregistered_on": fresh["deregistered_on"].dt.date.to_numpy(),
                "reason": fresh["reason"].to_numpy(),
                "new_id_number": fresh.get(
                    "new_id_number", pd.Series(pd.NA, index=fresh.index)
                ).to_numpy(),
                "person_id": pd.Series(person_id, dtype="Int64")
                .where(person_id >= 0)
                .astype(object)
                .to_numpy(),
            }
        ).astype(object)
        session.execute(insert(Deregistration), frame.where(frame.notna(), None).to_dict("records"))
        unmatched += int((person_id < 0).sum())
    other_loaded = len(fresh)
    return loaded + other_loaded, redelivered + (int((~deaths).sum()) - other_loaded), unmatched
