"""The evidence store: reads by window, corrections wherever they live, kinds coded by dictionary."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy.orm import Session

from liveness.evidence.health import load_health_policy
from liveness.evidence.parts import day_number, record_hashes
from liveness.evidence.snapshot import take_snapshot
from liveness.evidence.store import EvidenceStore
from liveness.scoring import load_policy
from models import Benefit, Delivery, Person
from tests.liveness.conftest import REPO

Row = tuple[str, int, str, str, bool]  # record_id, person_id, day, kind, correction


def delivery(session: Session, source: str = "transit") -> int:
    """Add a delivery row (parts reference one) and return its id."""
    row = Delivery(
        source=source, file_name="f.csv", path="f.csv", checksum="0" * 64, size_bytes=0,
        format="csv", encoding="utf-8", status="loaded",
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row.id


def frame(rows: list[Row], *, delivery_id: int) -> pd.DataFrame:
    """Shape (record, person, day, kind, correction) tuples as evidence-store rows."""
    record, person, day, kind, correction = (list(c) for c in zip(*rows, strict=True))
    days = np.array([day_number(dt.date.fromisoformat(d)) for d in day], dtype=np.int32)
    return pd.DataFrame(
        {
            "record_id": record,
            "record_hash": record_hashes(pd.Series(record)),
            "person_id": np.array(person, dtype=np.int32),
            "day": days,
            "event_at": pd.to_datetime(day).tz_localize("UTC") + pd.Timedelta(hours=8),
            "kind": kind,
            "link": "card",
            "link_key": [f"C{p}" for p in person],
            "delivery_id": np.int32(delivery_id),
            "correction": correction,
        }
    )


def append(
    session: Session, store: EvidenceStore, rows: list[Row], source: str = "transit"
) -> None:
    """Append rows as one new delivery of `source`."""
    delivery_id = delivery(session, source)
    store.append(
        session, source=source, traces=frame(rows, delivery_id=delivery_id), delivery_id=delivery_id
    )


def read(
    session: Session, store: EvidenceStore, **window: dt.date
) -> dict[str, tuple[int, int, str]]:
    """Return record -> (person, day, kind) of what a reader sees."""
    table = store.read_table(
        session, source="transit", columns=["record_id", "person_id", "day", "kind"], **window
    ).to_pylist()
    assert len({r["record_id"] for r in table}) == len(table), "a record read twice"
    return {r["record_id"]: (r["person_id"], r["day"], r["kind"]) for r in table}


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence")


D = dt.date.fromisoformat


def drawing_persons(session: Session, *refs: str) -> list[int]:
    """Add persons drawing a pension; return their ids."""
    ids = []
    for ref in refs:
        person = Person(
            person_ref=ref, id_number=f"{ref}x", id_status="valid", name=ref, sex="F",
            birth_date=D("1950-01-01"), region_code="330702", grid_code="G1",
        )  # fmt: skip
        session.add(person)
        session.flush()
        session.add(
            Benefit(
                person_id=person.id, benefit_type="enterprise_pension",
                monthly_amount=Decimal("3000.00"), benefit_start=D("2010-01-01"), status="active",
            )
        )  # fmt: skip
        ids.append(person.id)
    session.flush()
    return ids


def test_reads_by_window_across_monthly_parts(session: Session, store: EvidenceStore) -> None:
    append(session, store, [
        ("T1", 1, "2025-01-31", "tap", False),
        ("T2", 2, "2025-02-01", "tap_face", False),
        ("T3", 1, "2025-02-28", "tap", False),
        ("T4", 3, "2025-03-01", "tap", False),
    ])  # fmt: skip
    assert {p.month for p in store.parts(session, source="transit")} == {
        "2025-01", "2025-02", "2025-03",
    }  # fmt: skip
    assert [p.month for p in store.parts(session, source="transit", first_day=D("2025-02-10"))] == [
        "2025-02", "2025-03",
    ]  # fmt: skip
    assert set(read(session, store, first_day=D("2025-02-01"), last_day=D("2025-02-28"))) == {
        "T2", "T3",
    }  # fmt: skip
    assert set(read(session, store, first_day=D("2025-02-15"))) == {"T3", "T4"}
    assert set(read(session, store)) == {"T1", "T2", "T3", "T4"}
    assert read(session, store, first_day=D("2026-01-01")) == {}
    assert store.read_table(session, source="card_txn", columns=["day"]).num_rows == 0


def test_a_correction_replaces_every_earlier_version(
    session: Session, store: EvidenceStore
) -> None:
    append(session, store, [
        ("T1", 1, "2025-01-10", "tap", False),
        ("T2", 2, "2025-01-20", "tap", False),
        ("T3", 3, "2025-01-25", "tap", False),
    ])  # fmt: skip
    append(session, store, [
        ("T1", 4, "2025-01-10", "tap_face", True),  # relinked to another person
        ("T2", 2, "2025-03-02", "tap", True),  # moved to another month
    ])  # fmt: skip
    append(session, store, [("T1", 5, "2025-01-11", "tap", True)])  # the latest correction wins
    everything = read(session, store)
    assert everything == {
        "T1": (5, day_number(D("2025-01-11")), "tap"),
        "T2": (2, day_number(D("2025-03-02")), "tap"),
        "T3": (3, day_number(D("2025-01-25")), "tap"),
    }
    # The moved record has left January, even though its correction lives in a March part.
    assert set(read(session, store, last_day=D("2025-01-31"))) == {"T1", "T3"}
    assert set(read(session, store, first_day=D("2025-03-01"))) == {"T2"}


def test_a_range_of_persons_traces_are_read_from_the_row_groups_that_hold_them(
    session: Session, store: EvidenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A range's read (one person's file, a partition) is what a whole read gives its persons.

    Of a part clustered by person, only the few row groups that may hold them are decoded.
    """
    from liveness.evidence.compaction import compact

    rows: list[Row] = [
        (f"R{p}-{d}", p, f"2025-01-{d:02d}", "tap", False) for p in range(1, 41) for d in (3, 9, 17)
    ]
    append(session, store, rows[::2])
    append(session, store, rows[1::2])
    append(session, store, [("R7-3", 8, "2025-01-04", "tap_face", True)])  # relinked to person 8
    # Small row groups, so that a part clustered by person holds each person in one or two.
    monkeypatch.setattr("liveness.evidence.store.ROW_GROUP_ROWS", 8)
    everyone = read(session, store)
    for clustered in (False, True):
        if clustered:
            compact(session, store=store, source="transit", month="2025-01")
        for lo, hi in ((1, 2), (7, 8), (8, 9), (40, 41), (41, 42), (5, 12), (0, 100), (3, 3)):
            mine = [
                row
                for table in store.scan(
                    session, source="transit", columns=["record_id", "day"], persons=(lo, hi)
                )
                for row in table.to_pylist()
            ]
            assert {r["record_id"]: r["day"] for r in mine} == {
                record: day for record, (owner, day, _) in everyone.items() if lo <= owner < hi
            }, (clustered, lo, hi)
            # A window read of the range: every trace of its persons, whatever else comes.
            windowed = Counter(
                (int(p), int(d))
                for window in store.read_window(
                    session, source="transit", first_day=D("2025-01-01"),
                    last_day=D("2025-01-31"), kinds={"tap": 0, "tap_face": 1}, persons=(lo, hi),
                )
                for p, d in zip(window.person_id, window.day, strict=True)
                if lo <= p < hi
            )  # fmt: skip
            assert windowed == Counter(
                (owner, day) for owner, day, _ in everyone.values() if lo <= owner < hi
            ), (clustered, lo, hi)
    (part,) = store.parts(session, source="transit")
    decoded = sum(
        table.num_rows
        for table, _ in store.row_group_batches(
            store.path_of(part), ["person_id"], low=0, high=2**31 - 1, persons=(20, 21)
        )
    )
    assert 3 <= decoded <= 16


def test_kinds_are_read_dictionary_encoded_and_coded(
    session: Session, store: EvidenceStore
) -> None:
    append(session, store, [
        ("T1", 1, "2025-01-10", "tap", False),
        ("T2", 2, "2025-01-11", "teleport", False),
        ("T3", -1, "2025-01-12", "tap_face", False),
    ])  # fmt: skip
    (table,) = store.scan(session, source="transit", columns=["kind"])
    assert pa.types.is_dictionary(table["kind"].type)
    batches = list(
        store.read_window(
            session, source="transit", first_day=D("2025-01-01"), last_day=D("2025-01-31"),
            kinds={"tap_face": 0, "tap": 1},
        )
    )  # fmt: skip
    person = np.concatenate([b.person_id for b in batches])
    kind = np.concatenate([b.kind for b in batches])
    assert dict(zip(person.tolist(), kind.tolist(), strict=True)) == {1: 1, 2: -1, -1: 0}


def test_the_snapshot_drops_unknown_kinds_and_unlinked_traces(
    session: Session, store: EvidenceStore
) -> None:
    ids = drawing_persons(session, "P1", "P2")
    append(session, store, [
        ("T1", ids[0], "2025-03-10", "tap_face", False),
        ("T2", ids[1], "2025-03-11", "teleport", False),
        ("T3", -1, "2025-03-12", "tap_face", False),
        ("T4", ids[1], "2024-01-12", "tap_face", False),  # outside the long window
    ])  # fmt: skip
    snapshot = take_snapshot(
        session, as_of=D("2025-03-31"), store=store,
        scoring=load_policy(REPO / "config" / "scoring.toml"),
        health=load_health_policy(REPO / "config" / "health.toml"),
    )  # fmt: skip
    rows = snapshot.roll.set_index("person_id").index.get_indexer(ids)
    transit = snapshot.features.last_day[:, 0]
    assert transit[rows].tolist() == [day_number(D("2025-03-10")), -1]
    assert snapshot.trace_count == 1


def test_a_delivery_writer_publishes_one_part_per_month_only_when_finished(
    session: Session, store: EvidenceStore
) -> None:
    delivery_id = delivery(session)
    writer = store.delivery_writer(source="transit", delivery_id=delivery_id)
    for rows in (
        [("T1", 1, "2025-01-30", "tap", False), ("T2", 2, "2025-02-01", "tap", False)],
        [("T3", 3, "2025-01-02", "tap_face", False)],
    ):
        table = pa.Table.from_pandas(frame(rows, delivery_id=delivery_id), preserve_index=False)
        writer.add(table)
    assert read(session, store) == {}
    parts = writer.finish(session)
    assert sorted((p.month, p.rows, p.min_day, p.max_day) for p in parts) == [
        ("2025-01", 2, dt.date(2025, 1, 2), dt.date(2025, 1, 30)),
        ("2025-02", 1, dt.date(2025, 2, 1), dt.date(2025, 2, 1)),
    ]
    assert set(read(session, store)) == {"T1", "T2", "T3"}


def test_an_aborted_delivery_writer_leaves_no_file(session: Session, store: EvidenceStore) -> None:
    delivery_id = delivery(session)
    writer = store.delivery_writer(source="transit", delivery_id=delivery_id)
    rows = [("T1", 1, "2025-01-30", "tap", False)]
    writer.add(pa.Table.from_pandas(frame(rows, delivery_id=delivery_id), preserve_index=False))
    writer.abort()
    assert read(session, store) == {}
    assert not [p for p in store.root.rglob("*") if p.is_file()]
