"""Death evidence and other civil-registration events: matched to the roll, never lost.

A record delivered again changes nothing; delivered again with other content and no
`correction=true`, it is a conflict for quarantine. A correction changes the record in place:
it keeps the record's settlement (who settled it, when, how) and a `refuted` status, unless it
names another person. `voided=true` with a correction withdraws the record: it stays, with
status `voided`, for the audit. A medical correction whose discharge is no longer a death
voids the death record of that record_id, and a deregistration corrected from death to
another reason (or back) moves between the death records and the identity events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from liveness.db import plain_records
from liveness.evidence.parts import record_hashes
from liveness.evidence.records.contents import judge
from liveness.identity import RollIndex, link_by_id_number, match_death_records
from models import DeathMatch, DeathRecord, Deregistration, RecordStatus

DEATH_SOURCES = ("cremation", "deregistration", "medical")
IN_CHUNK = 500
# What a re-delivery of a death record must not change, and of another deregistration.
DEATH_CONTENT = ["id_number", "name", "sex", "birth_date", "died_on", "recorded_on"]
EVENT_CONTENT = ["id_number", "name", "deregistered_on", "reason", "new_id_number"]
DEREGISTRATION_CONTENT = ["reason", "id_number", "name", "day", "died_on", "new_id_number"]


@dataclass
class Loaded:
    """What became of a batch's good rows.

    `conflicts` holds (row label in the batch, record_id, delivery holding the record or -1
    for an earlier row of this delivery): rows to quarantine. `redelivered_rows` holds the
    row labels of the re-deliveries, where the loader tells them (`load_death_frame`).
    """

    loaded: int
    redelivered: int
    unmatched: int
    conflicts: list[tuple[int, str, int]] = field(default_factory=list)
    redelivered_rows: list[int] = field(default_factory=list)


def _stored(session: Session, columns: list[Any], where: Any, ids: list[str]) -> pd.DataFrame:
    """Return the stored rows of `ids` (in chunks: an IN list has its limits)."""
    names = [column.key for column in columns]
    found: list[Any] = []
    record_id = columns[0]
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        found.extend(session.execute(select(*columns).where(where, record_id.in_(chunk))).all())
    return pd.DataFrame([tuple(row) for row in found], columns=names)


def _canonical(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Return one text per row of `columns`, alike for alike values wherever they come from."""

    def text(value: Any) -> str:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return "\x00"
        if isinstance(value, pd.Timestamp):
            return value.date().isoformat()
        return str(value)

    parts = [frame[c].astype(object).map(text) for c in columns]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "\x1f" + part
    return joined


def _content_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return pd.util.hash_array(_canonical(frame, columns).to_numpy(dtype=object), categorize=False)


def _death_frame(source: str, rows: pd.DataFrame, timezone: str) -> pd.DataFrame:
    """Return a source's death rows in one shape: who, when died, when recorded."""

    def column(name: str, missing: Any = pd.NA) -> pd.Series:
        return rows[name] if name in rows else pd.Series(missing, index=rows.index)

    frame = pd.DataFrame(
        {
            "record_id": rows["record_id"].astype(object),
            "id_number": rows["id_number"],
            "id_number_status": rows["id_number_status"],
            "name": column("name"),
            "sex": column("sex"),
            "birth_date": column("birth_date", pd.NaT),
            "correction": column("correction", False).fillna(False).astype(bool),
            "voided": column("voided", False).fillna(False).astype(bool),
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
    for name in ("birth_date", "died_on", "recorded_on"):
        frame[name] = pd.to_datetime(frame[name]).dt.date
    return frame


def _verdicts(
    frame: pd.DataFrame, contents: np.ndarray, stored: pd.DataFrame, stored_contents: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Judge rows against the stored versions of their record_id (any table holding one).

    Return (re-delivered, conflict, latest delivery holding the record or -1) per row.
    """
    ids = frame["record_id"].astype(object)
    known = ids.isin(stored["record_id"]).to_numpy()
    pairs = pd.MultiIndex.from_arrays([stored["record_id"].astype(object), stored_contents])
    same = pd.MultiIndex.from_arrays([ids, contents]).isin(pairs)
    latest = stored.groupby("record_id")["delivery_id"].max() if len(stored) else pd.Series()
    earlier = ids.map(latest).fillna(-1).astype(np.int64).to_numpy()
    redelivered, conflict = judge(
        record_hashes(ids),
        contents,
        frame["correction"].to_numpy(dtype=bool),
        known=known,
        same=np.asarray(same, dtype=bool),
    )
    return redelivered, conflict, earlier


def _conflicts(
    frame: pd.DataFrame, conflict: np.ndarray, earlier: np.ndarray
) -> list[tuple[int, str, int]]:
    rows = np.flatnonzero(conflict)
    return [(int(frame.index[r]), str(frame["record_id"].iloc[r]), int(earlier[r])) for r in rows]


def load_death_records(
    session: Session, *, source: str, rows: pd.DataFrame, roll: RollIndex, delivery_id: int,
    timezone: str, demographic_confidence: float,
) -> Loaded:  # fmt: skip
    """Judge death records against the stored ones, then store the new and the corrected."""
    if rows.empty:
        return Loaded(0, 0, 0)
    return load_death_frame(
        session, source=source, frame=_death_frame(source, rows, timezone), roll=roll,
        delivery_id=delivery_id, demographic_confidence=demographic_confidence,
    )  # fmt: skip


# Links a frame of death records to the roll: person_id, match, confidence per record.
Matcher = Callable[[pd.DataFrame], pd.DataFrame]


def load_death_frame(
    session: Session, *, source: str, frame: pd.DataFrame, roll: RollIndex,
    delivery_id: int | None, demographic_confidence: float, matcher: Matcher | None = None,
) -> Loaded:  # fmt: skip
    """Judge death records in the one shape against the stored ones; store new and corrected.

    `frame` has record_id, id_number, id_number_status, name, sex, birth_date, died_on,
    recorded_on, correction, voided, and optionally died_on_precision and region_code.
    `matcher` replaces the default match (a registry's notices are matched by their rule).
    """
    stored = _stored_deaths(session, source, list(frame["record_id"]))
    redelivered, conflict, earlier = _verdicts(
        frame, _content_hashes(frame, DEATH_CONTENT), stored,
        _content_hashes(stored, DEATH_CONTENT),
    )  # fmt: skip
    loads = frame.loc[~(redelivered | conflict)]
    unmatched = _store_deaths(session, source=source, frame=loads, stored=stored, roll=roll,
                              delivery_id=delivery_id,
                              demographic_confidence=demographic_confidence,
                              matcher=matcher)  # fmt: skip
    return Loaded(len(loads), int(redelivered.sum()), unmatched,
                  _conflicts(frame, conflict, earlier),
                  [int(label) for label in frame.index[redelivered]])  # fmt: skip


def load_medical_deaths(
    session: Session, *, rows: pd.DataFrame, roll: RollIndex, delivery_id: int, timezone: str,
    demographic_confidence: float,
) -> None:  # fmt: skip
    """Store the deaths of loaded medical rows (judged with their traces); void the withdrawn.

    A correction whose discharge is no longer a death, or that voids the visit, voids the
    death record of its record_id.
    """
    if rows.empty:
        return
    frame = _death_frame("medical", rows, timezone)
    deceased = rows["discharge_outcome"].eq("deceased").fillna(False).to_numpy(dtype=bool)
    withdrawn = frame["correction"].to_numpy() & (~deceased | frame["voided"].to_numpy())
    dying = frame.loc[deceased]
    ids = list(frame.loc[deceased | withdrawn, "record_id"])
    stored = _stored_deaths(session, "medical", ids)
    _store_deaths(session, source="medical", frame=dying, stored=stored, roll=roll,
                  delivery_id=delivery_id,
                  demographic_confidence=demographic_confidence)  # fmt: skip
    gone = set(frame.loc[withdrawn, "record_id"]) - set(dying["record_id"])
    _void(session, DeathRecord, stored, gone, delivery_id=delivery_id)


def load_deregistrations(
    session: Session, *, rows: pd.DataFrame, roll: RollIndex, delivery_id: int, timezone: str,
    demographic_confidence: float,
) -> Loaded:  # fmt: skip
    """Store deregistrations: deaths as death records, other reasons as identity events.

    A record_id is one record whichever table holds it: delivered again under another
    reason without a correction it is a conflict; corrected, it moves between the tables.
    """
    if rows.empty:
        return Loaded(0, 0, 0)
    death = rows["reason"].eq("death").fillna(False).to_numpy(dtype=bool)
    frame = _death_frame("deregistration", rows, timezone)
    frame["deregistered_on"] = pd.to_datetime(rows["deregistered_on"]).dt.date
    frame["reason"] = rows["reason"].astype(object)
    new_number = (
        rows["new_id_number"] if "new_id_number" in rows else pd.Series(pd.NA, index=rows.index)
    )
    frame["new_id_number"] = new_number.astype(object)
    ids = list(frame["record_id"])
    deaths = _stored_deaths(session, "deregistration", ids)
    events = _stored_events(session, ids)
    # What both tables can say of a deregistration: a death record keeps no new number, an
    # identity event no date of death.
    incoming = frame.assign(
        day=frame["deregistered_on"],
        died_on=frame["died_on"].where(death, None),
        new_id_number=frame["new_id_number"].where(~death, None),
    )
    stored = pd.concat(
        [
            deaths.assign(reason="death", day=deaths["recorded_on"], new_id_number=None),
            events.assign(day=events["deregistered_on"], died_on=None),
        ],
        ignore_index=True,
    )
    redelivered, conflict, earlier = _verdicts(
        frame, _content_hashes(incoming, DEREGISTRATION_CONTENT), stored,
        _content_hashes(stored, DEREGISTRATION_CONTENT),
    )  # fmt: skip
    loads = ~(redelivered | conflict)
    unmatched = _store_deaths(
        session, source="deregistration", frame=frame.loc[loads & death], stored=deaths,
        roll=roll, delivery_id=delivery_id, demographic_confidence=demographic_confidence,
    )  # fmt: skip
    unmatched += _store_events(session, frame=frame.loc[loads & ~death], stored=events,
                               roll=roll, delivery_id=delivery_id)  # fmt: skip
    # A correction moving a record to the other table withdraws it from the one it left.
    moved = frame.loc[loads & frame["correction"].to_numpy()]
    leaving_deaths = set(moved.loc[moved["reason"] != "death", "record_id"])
    leaving_events = set(moved.loc[moved["reason"] == "death", "record_id"])
    _void(session, DeathRecord, deaths, leaving_deaths, delivery_id=delivery_id)
    _void(session, Deregistration, events, leaving_events, delivery_id=delivery_id)
    return Loaded(int(loads.sum()), int(redelivered.sum()), unmatched,
                  _conflicts(frame, conflict, earlier))  # fmt: skip


# ------------------------------------------------------------------------- storing


def _stored_deaths(session: Session, source: str, ids: list[str]) -> pd.DataFrame:
    columns = [
        DeathRecord.record_id, DeathRecord.id, DeathRecord.delivery_id, DeathRecord.person_id,
        DeathRecord.status, *(getattr(DeathRecord, c) for c in DEATH_CONTENT),
    ]  # fmt: skip
    return _stored(session, columns, DeathRecord.source == source, ids)


def _stored_events(session: Session, ids: list[str]) -> pd.DataFrame:
    columns = [
        Deregistration.record_id, Deregistration.id, Deregistration.delivery_id,
        Deregistration.person_id, Deregistration.status,
        *(getattr(Deregistration, c) for c in EVENT_CONTENT),
    ]  # fmt: skip
    return _stored(session, columns, True, ids)


# Long by design: match, then insert the new records and correct the stored ones in place.
def _store_deaths(
    session: Session, *, source: str, frame: pd.DataFrame, stored: pd.DataFrame,
    roll: RollIndex, delivery_id: int | None, demographic_confidence: float,
    matcher: Matcher | None = None,
) -> int:  # fmt: skip
    """Insert new death records and correct stored ones in place; return how many match nobody.

    A correction keeps the settlement and a `refuted` status unless it names another person;
    a void keeps the record and marks it `voided`.
    """
    if frame.empty:
        return 0
    # Of several versions of one record in a batch, the last is what the source says now.
    frame = frame.drop_duplicates("record_id", keep="last").reset_index(drop=True)
    if matcher is None:
        matched = match_death_records(frame, roll, demographic_confidence=demographic_confidence)
    else:
        matched = matcher(frame)
    person = matched["person_id"].astype("Int64").where(matched["person_id"] >= 0)
    voided = frame["voided"].to_numpy(dtype=bool)
    records = pd.DataFrame(
        {
            "source": source,
            "record_id": frame["record_id"].to_numpy(),
            "delivery_id": delivery_id,
            "id_number": frame["id_number"].to_numpy(),
            "id_status": frame["id_number_status"].to_numpy(),
            "name": frame["name"].to_numpy(),
            "sex": frame["sex"].to_numpy(),
            "birth_date": frame["birth_date"].to_numpy(),
            "died_on": frame["died_on"].to_numpy(),
            "died_on_precision": (
                frame["died_on_precision"].to_numpy() if "died_on_precision" in frame else "day"
            ),
            "region_code": frame["region_code"].to_numpy() if "region_code" in frame else None,
            "recorded_on": frame["recorded_on"].to_numpy(),
            "person_id": person.astype(object).to_numpy(),
            "match": matched["match"].to_numpy(),
            "confidence": matched["confidence"].to_numpy(),
            "status": np.where(voided, RecordStatus.VOIDED.value, RecordStatus.ACTIVE.value),
        }
    )
    before = stored.set_index("record_id") if len(stored) else pd.DataFrame()
    old = frame["record_id"].isin(before.index).to_numpy() if len(before) else np.zeros(
        len(frame), dtype=bool
    )  # fmt: skip
    if (~old).any():
        session.execute(insert(DeathRecord), plain_records(records.loc[~old]))
    if old.any():
        changes = records.loc[old].drop(columns=["source"]).reset_index(drop=True)
        previous = before.reindex(changes["record_id"]).reset_index()
        changes["id"] = previous["id"].astype(np.int64).to_numpy()
        # A void keeps what the record said; only its status and delivery change.
        was_person = previous["person_id"].astype("Int64")
        moved = ~(was_person.fillna(-1).to_numpy() == changes["person_id"].astype("Int64")
                  .fillna(-1).to_numpy())  # fmt: skip
        refuted = previous["status"].astype(str).eq(RecordStatus.REFUTED.value).to_numpy()
        keep_refuted = refuted & ~moved & (changes["status"] == RecordStatus.ACTIVE.value)
        changes.loc[keep_refuted, "status"] = RecordStatus.REFUTED.value
        void_rows = changes["status"].eq(RecordStatus.VOIDED.value).to_numpy()
        if void_rows.any():
            session.execute(
                update(DeathRecord),
                plain_records(changes.loc[void_rows, ["id", "status", "delivery_id"]]),
            )
        corrected = changes.loc[~void_rows]
        if len(corrected):
            session.execute(
                update(DeathRecord), plain_records(corrected.drop(columns=["record_id"]))
            )
            # Another person: what was settled of the record was settled of someone else.
            reset = corrected.loc[moved[~void_rows], ["id"]].assign(
                settled_by=None, settled_on=None, settlement=None
            )
            if len(reset):
                session.execute(update(DeathRecord), plain_records(reset))
    return int((matched["match"] == DeathMatch.UNMATCHED.value).sum())


def _store_events(
    session: Session, *, frame: pd.DataFrame, stored: pd.DataFrame, roll: RollIndex,
    delivery_id: int,
) -> int:  # fmt: skip
    """Insert or correct deregistrations for other reasons; return how many match nobody."""
    if frame.empty:
        return 0
    frame = frame.drop_duplicates("record_id", keep="last").reset_index(drop=True)
    person_id = link_by_id_number(frame["id_number"], frame["id_number_status"], roll)
    events = pd.DataFrame(
        {
            "record_id": frame["record_id"].to_numpy(),
            "delivery_id": delivery_id,
            "id_number": frame["id_number"].to_numpy(),
            "name": frame["name"].to_numpy(),
            "deregistered_on": frame["deregistered_on"].to_numpy(),
            "reason": frame["reason"].to_numpy(),
            "new_id_number": frame["new_id_number"].astype(object).to_numpy(),
            "person_id": pd.Series(person_id, dtype="Int64").where(person_id >= 0)
            .astype(object).to_numpy(),
            "status": np.where(frame["voided"].to_numpy(dtype=bool), RecordStatus.VOIDED.value,
                               RecordStatus.ACTIVE.value),
        }
    )  # fmt: skip
    ids = dict(zip(stored["record_id"], stored["id"], strict=True)) if len(stored) else {}
    old = events["record_id"].isin(ids.keys()).to_numpy()
    if (~old).any():
        session.execute(insert(Deregistration), plain_records(events.loc[~old]))
    if old.any():
        changes = events.loc[old].copy()
        changes["id"] = changes["record_id"].map(ids).astype(np.int64)
        void_rows = changes["status"].eq(RecordStatus.VOIDED.value).to_numpy()
        if void_rows.any():
            session.execute(
                update(Deregistration),
                plain_records(changes.loc[void_rows, ["id", "status", "delivery_id"]]),
            )
        if (~void_rows).any():
            session.execute(
                update(Deregistration),
                plain_records(changes.loc[~void_rows].drop(columns="record_id")),
            )
    return int((person_id < 0).sum())


def _void(
    session: Session, table: Any, stored: pd.DataFrame, record_ids: set[str], *, delivery_id: int
) -> None:
    """Mark stored records of `record_ids` voided: withdrawn by their source, kept for audit."""
    if not record_ids or stored.empty:
        return
    hit = stored.loc[stored["record_id"].isin(record_ids)]
    if len(hit):
        session.execute(
            update(table),
            [
                {"id": int(i), "status": RecordStatus.VOIDED.value, "delivery_id": delivery_id}
                for i in hit["id"]
            ],
        )
