"""Part summaries: a later snapshot adds them instead of the traces, and sees exactly the same."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.evidence.compaction import compact, remove_orphans
from liveness.evidence.health import load_health_policy
from liveness.evidence.snapshot import EvidenceSnapshot, take_snapshot
from liveness.evidence.store import EvidenceStore
from liveness.evidence.summaries import SUMMARY_FOLDER
from liveness.scoring import ScoringPolicy, load_policy
from liveness.scoring.features import FeatureAccumulator
from models import DeathMatch, DeathRecord, EvidencePart, RecordStatus
from tests.liveness.conftest import REPO
from tests.liveness.evidence.test_store import Row, append, drawing_persons

D = dt.date.fromisoformat
AS_OF = D("2025-06-30")
POLICY = load_policy(REPO / "config" / "scoring.toml")


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence")


@pytest.fixture
def persons(session: Session) -> list[int]:
    """Three persons drawing a pension."""
    return drawing_persons(session, "P1", "P2", "P3")


def half_year(ids: list[int]) -> list[Row]:
    """Traces of every person on several days of each month from January to June 2025."""
    kinds = ["tap_face", "tap", "tap_face_failed"]
    rows: list[Row] = []
    for month in range(1, 7):
        for day in (1, 9, 17, 28):
            for n, person in enumerate(ids):
                kind = kinds[(month + day + n) % 3]
                rows.append(
                    (f"T{month}-{day}-{n}", person, f"2025-{month:02d}-{day:02d}", kind, False)
                )
    return rows


def snapshot(
    session: Session, store: EvidenceStore, policy: ScoringPolicy = POLICY
) -> EvidenceSnapshot:
    """Take the snapshot as of the end of June."""
    return take_snapshot(
        session, as_of=AS_OF, store=store, scoring=policy,
        health=load_health_policy(REPO / "config" / "health.toml"),
    )  # fmt: skip


def cold(
    session: Session, store: EvidenceStore, policy: ScoringPolicy = POLICY
) -> EvidenceSnapshot:
    """Take the snapshot from the traces alone, every summary forgotten first."""
    shutil.rmtree(store.root / SUMMARY_FOLDER, ignore_errors=True)
    return snapshot(session, store, policy)


def assert_same(warm: EvidenceSnapshot, reference: EvidenceSnapshot) -> None:
    """Assert two snapshots agree exactly on every feature and count."""
    for name in ("last_day", "recent_weight", "long_weight", "window_weight", "face_pass_day",
                 "recent_sources"):  # fmt: skip
        assert np.array_equal(getattr(warm.features, name), getattr(reference.features, name)), name
    assert warm.trace_count == reference.trace_count
    assert np.array_equal(warm.post_death, reference.post_death)


def summaries(store: EvidenceStore) -> list[Path]:
    """Return the summary files kept beside the store."""
    return sorted((store.root / SUMMARY_FOLDER).rglob("*.arrow"))


def test_a_later_snapshot_adds_summaries_instead_of_reading_the_parts(
    session: Session, store: EvidenceStore, persons: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    append(session, store, half_year(persons))
    first = snapshot(session, store)
    kept = summaries(store)
    # January to March and May to June lie in one age bucket each as of June 30; April and
    # its 90-day edge do not, and are read trace by trace every time.
    assert len(kept) >= 4
    assert first.trace_count == 72
    parts = {store.root / p for p in session.scalars(select(EvidencePart.path))}
    summarised = {p for p in parts if any(k.name.startswith(p.stem + ".") for k in kept)}
    assert summarised and summarised != parts
    decoded: list[Path] = []
    row_group_batches = store.row_group_batches

    def spy(path: Path, *args: Any, **kwargs: Any) -> Any:
        decoded.append(path)
        return row_group_batches(path, *args, **kwargs)

    monkeypatch.setattr(store, "row_group_batches", spy)
    assert_same(snapshot(session, store), first)
    # The summarised parts' traces were not decoded again; the others were.
    assert set(decoded) == parts - summarised


def test_a_changed_policy_does_not_reuse_the_summaries(
    session: Session, store: EvidenceStore, persons: list[int], tmp_path: Path
) -> None:
    append(session, store, half_year(persons))
    snapshot(session, store)
    text = (REPO / "config" / "scoring.toml").read_text(encoding="utf-8")
    changed = tmp_path / "scoring.toml"
    changed.write_text(text.replace("tap = 0.25", "tap = 0.75"), encoding="utf-8")
    policy = load_policy(changed)
    warm = snapshot(session, store, policy)
    assert not np.array_equal(
        warm.features.long_weight, snapshot(session, store).features.long_weight
    )
    assert_same(warm, cold(session, store, policy))


def test_a_new_correction_is_seen_through_the_summaries(
    session: Session, store: EvidenceStore, persons: list[int]
) -> None:
    append(session, store, half_year(persons))
    before = snapshot(session, store)
    # A February tap of P1 was P3's, and one of P2 is moved to June.
    append(session, store, [
        ("T2-9-0", persons[2], "2025-02-09", "tap_face", True),
        ("T2-17-1", persons[1], "2025-06-29", "tap_face", True),
    ])  # fmt: skip
    after = snapshot(session, store)
    assert not np.array_equal(after.features.long_weight, before.features.long_weight)
    assert_same(after, cold(session, store))


def test_a_death_learnt_later_still_counts_the_traces_after_it(
    session: Session, store: EvidenceStore, persons: list[int]
) -> None:
    append(session, store, half_year(persons))
    snapshot(session, store)
    session.add(
        DeathRecord(
            source="cremation", record_id="C1", id_status="valid", died_on=D("2025-02-01"),
            recorded_on=D("2025-06-01"), person_id=persons[0], match=DeathMatch.ID_NUMBER,
            confidence=1.0, status=RecordStatus.ACTIVE,
        )
    )  # fmt: skip
    session.flush()
    warm = snapshot(session, store)
    row = int(warm.roll.set_index("person_id").index.get_indexer([persons[0]])[0])
    # Evidence-bearing taps of P1 after February 1st, in summarised months and others alike.
    assert warm.post_death[row] > 0
    assert_same(warm, cold(session, store))


def test_an_unreadable_summary_is_a_miss(
    session: Session, store: EvidenceStore, persons: list[int]
) -> None:
    append(session, store, half_year(persons))
    first = snapshot(session, store)
    for path in summaries(store):
        path.write_bytes(b"garbage")
    assert_same(snapshot(session, store), first)
    # Read again, they were kept anew.
    assert all(path.read_bytes() != b"garbage" for path in summaries(store))


def test_summaries_of_compacted_parts_go_with_them(
    session: Session, store: EvidenceStore, persons: list[int]
) -> None:
    append(session, store, half_year(persons)[:12])
    append(session, store, half_year(persons)[12:24])
    first = snapshot(session, store)
    assert summaries(store)
    compact(session, store=store, source="transit", month="2025-01")
    compact(session, store=store, source="transit", month="2025-02")
    remove_orphans(session, store=store, grace=dt.timedelta(0))
    kept = summaries(store)
    parts = {Path(p).stem for p in session.scalars(select(EvidencePart.path))}
    assert all(path.name.split(".")[0] in parts for path in kept)
    assert_same(snapshot(session, store), first)


def test_summaries_of_parts_before_every_window_can_go(
    session: Session, store: EvidenceStore, persons: list[int]
) -> None:
    append(session, store, half_year(persons))
    snapshot(session, store)
    months = {path.parent.name for path in summaries(store)}
    assert {"month=2025-02", "month=2025-03"} <= months
    remove_orphans(session, store=store, summaries_before=D("2025-04-01"))
    left = {path.parent.name for path in summaries(store)}
    assert left == months - {"month=2025-02", "month=2025-03"}
    assert left
    # The parts themselves stay: they are the record.
    assert len(list(store.root.glob("source=*/month=2025-02/*.parquet"))) == 1


def test_a_part_read_in_several_batches_is_summarised_as_a_whole(
    session: Session, store: EvidenceStore, persons: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Row groups of 5 rows read one at a time: each month's part is summarised batch by batch.
    for module in ("store", "writer"):
        monkeypatch.setattr(f"liveness.evidence.{module}.ROW_GROUP_ROWS", 5)
    monkeypatch.setattr("liveness.evidence.store.BATCH_ROWS", 5)
    append(session, store, half_year(persons))
    summarising = snapshot(session, store)
    assert summaries(store)
    warm = snapshot(session, store)
    # The same traces scattered one by one, no part summarised: another path to the features.
    monkeypatch.setattr(FeatureAccumulator, "part_bucket", lambda *_: None)
    traced = cold(session, store)
    assert not summaries(store)
    assert_same(summarising, traced)
    assert_same(warm, traced)
