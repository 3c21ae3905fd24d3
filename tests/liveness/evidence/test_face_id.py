"""The face template id: kept in face parts only, null in older parts, kept by compaction."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy.orm import Session

from liveness.evidence.compaction import compact
from liveness.evidence.parts import EVIDENCE_SCHEMA
from liveness.evidence.store import EvidenceStore
from tests.liveness.evidence.test_store import append, delivery, frame

FACE_ROWS = [
    ("V1", 1, "2025-01-10", "pass_app", False),
    ("V2", 2, "2025-01-12", "pass_kiosk", False),
    ("V3", 3, "2025-01-15", "fail", False),
]


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence")


def _append_face(session: Session, store: EvidenceStore, ids: list[str | None]) -> None:
    """Append the face rows with their template ids as one delivery."""
    delivery_id = delivery(session, "face")
    traces = frame(FACE_ROWS, delivery_id=delivery_id)
    traces["face_id"] = pd.Series(ids, dtype="string")
    store.append(session, source="face", traces=traces, delivery_id=delivery_id)


def _face_ids(session: Session, store: EvidenceStore) -> dict[str, str | None]:
    table = store.read_table(session, source="face", columns=["record_id", "face_id"])
    return {row["record_id"]: row["face_id"] for row in table.to_pylist()}


def test_face_parts_keep_the_face_id_and_other_sources_do_not_get_it(
    session: Session, store: EvidenceStore
) -> None:
    _append_face(session, store, ["FTa", None, "FTb"])
    append(session, store, [("T1", 1, "2025-01-10", "tap", False)])
    assert _face_ids(session, store) == {"V1": "FTa", "V2": None, "V3": "FTb"}
    (transit,) = store.parts(session, source="transit")
    # The perf-critical sources' parts are exactly as before: no column added.
    assert pq.read_schema(store.path_of(transit)).names == EVIDENCE_SCHEMA.names
    (face,) = store.parts(session, source="face")
    assert pq.read_schema(store.path_of(face)).names == [*EVIDENCE_SCHEMA.names, "face_id"]


def test_an_older_face_part_without_face_id_reads_as_null_and_compacts(
    session: Session, store: EvidenceStore
) -> None:
    # A part written before face_id existed: only the common columns.
    old = frame([("V0", 4, "2025-01-05", "pass_app", False)], delivery_id=delivery(session, "face"))
    store.append(session, source="face", traces=old, delivery_id=int(old["delivery_id"].iloc[0]))
    (part,) = store.parts(session, source="face")
    table = pq.read_table(store.path_of(part)).drop_columns(["face_id"])
    pq.write_table(table, store.path_of(part))
    _append_face(session, store, ["FTa", "FTa", None])
    assert _face_ids(session, store) == {"V0": None, "V1": "FTa", "V2": "FTa", "V3": None}
    scanned = list(store.scan(session, source="face", columns=["record_id", "face_id"]))
    assert all(batch.column_names == ["record_id", "face_id"] for batch in scanned)
    assert compact(session, store=store, source="face", month="2025-01").compacted
    assert _face_ids(session, store) == {"V0": None, "V1": "FTa", "V2": "FTa", "V3": None}


def test_a_face_id_correction_replaces_the_earlier_one(
    session: Session, store: EvidenceStore
) -> None:
    _append_face(session, store, ["FTa", "FTb", None])
    delivery_id = delivery(session, "face")
    fix = frame([("V1", 1, "2025-01-10", "pass_app", True)], delivery_id=delivery_id)
    fix["face_id"] = "FTc"
    store.append(session, source="face", traces=fix, delivery_id=delivery_id)
    assert _face_ids(session, store)["V1"] == "FTc"
