"""Part summaries: a later snapshot adds them instead of the traces, and sees exactly the same."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from liveness.evidence.compaction import compact, remove_orphans
from liveness.evidence.health import load_health_policy
from liveness.evidence.snapshot import EvidenceSnapshot, take_snapshot
from liveness.evidence.store import EvidenceStore
from liveness.evidence.summaries import GROUP_FOLDER, SUMMARY_FOLDER, SummaryCache
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
    session: Session, store: EvidenceStore, policy: ScoringPolicy = POLICY, *,
    as_of: dt.date = AS_OF,
) -> EvidenceSnapshot:  # fmt: skip
    """Take the snapshot as of the end of June (or `as_of`)."""
    return take_snapshot(
        session, as_of=as_of, store=store, scoring=policy,
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


def learn_death(
    session: Session, person_id: int, *, record_id: str = "C1",
    died_on: dt.date = dt.date(2025, 2, 1), recorded_on: dt.date = dt.date(2025, 6, 1),
) -> None:  # fmt: skip
    """Record a cremation matched to the person by id number."""
    session.add(
        DeathRecord(
            source="cremation", record_id=record_id, id_status="valid", died_on=died_on,
            recorded_on=recorded_on, person_id=person_id, match=DeathMatch.ID_NUMBER,
            confidence=1.0, status=RecordStatus.ACTIVE,
        )
    )  # fmt: skip
    session.flush()


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
    learn_death(session, persons[0])
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


def groups(store: EvidenceStore) -> list[Path]:
    """Return the group summary files kept beside the store."""
    return sorted((store.root / SUMMARY_FOLDER / GROUP_FOLDER).rglob("*.arrow"))


def traced(session: Session, store: EvidenceStore, as_of: dt.date = AS_OF) -> EvidenceSnapshot:
    """Take the snapshot with every trace scattered one by one: no summary read or kept."""
    with patch.object(FeatureAccumulator, "part_bucket", lambda *_: None):
        return snapshot(session, store, as_of=as_of)


def test_the_parts_of_one_age_bucket_are_added_as_one_group_summary(
    session: Session, store: EvidenceStore, persons: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two deliveries a month: each age bucket holds several parts of the source.
    rows = half_year(persons)
    append(session, store, rows[::2])
    append(session, store, rows[1::2])
    first = snapshot(session, store)
    # The first run keeps each part's summary; the next one their sum per bucket as well.
    assert summaries(store) and not groups(store)
    second = snapshot(session, store)
    assert groups(store)
    loaded: list[Path] = []
    load = SummaryCache.load

    def spy(cache: SummaryCache, part_path: Path, key: str) -> Any:
        loaded.append(part_path)
        return load(cache, part_path, key)

    monkeypatch.setattr(SummaryCache, "load", spy)
    third = snapshot(session, store)
    # No part's own summary was read: every bucket's parts came as their group's.
    assert loaded == []
    reference = traced(session, store)
    for warm in (first, second, third):
        assert_same(warm, reference)


def test_a_group_summary_is_not_used_for_other_parts(
    session: Session, store: EvidenceStore, persons: list[int]
) -> None:
    rows = half_year(persons)
    append(session, store, rows[::2])
    append(session, store, rows[1::2])
    snapshot(session, store)
    snapshot(session, store)
    kept = {path: path.read_bytes() for path in groups(store)}
    assert kept
    # One more delivery into February and May: their buckets hold one more part each.
    append(session, store, [
        ("X1", persons[0], "2025-02-20", "tap_face", False),
        ("X2", persons[1], "2025-05-20", "tap", False),
    ])  # fmt: skip
    # The kept groups miss (their parts are not the buckets' parts any more) ...
    assert_same(snapshot(session, store), traced(session, store))
    # ... and once the new parts' own summaries are kept, the groups are replaced ...
    assert_same(snapshot(session, store), traced(session, store))
    assert any(path.read_bytes() != content for path, content in kept.items())
    # ... by groups that are exact too.
    assert_same(snapshot(session, store), traced(session, store))


def face_checks(ids: list[int]) -> list[Row]:
    """Face checks of every person twice a month, January to June 2025, their last one latest."""
    kinds = ["pass_assisted", "pass_proxy", "fail"]
    return [
        (
            f"F{month}-{day}-{n}",
            person,
            f"2025-{month:02d}-{day:02d}",
            kinds[(month + n) % 3],
            False,
        )
        for month in range(1, 7)
        for day in (3, 19)
        for n, person in enumerate(ids)
    ]


def test_group_summaries_keep_the_last_face_pass_and_a_death_learnt_later(
    session: Session, store: EvidenceStore, persons: list[int]
) -> None:
    # Two deliveries a month of each source: each bucket holds several parts of both.
    for rows, source in ((half_year(persons), "transit"), (face_checks(persons), "face")):
        append(session, store, rows[::2], source=source)
        append(session, store, rows[1::2], source=source)
    for _ in range(3):
        assert_same(snapshot(session, store), traced(session, store))
    assert {path.parent.name for path in groups(store)} == {"source=face", "source=transit"}
    # A death on February 1st, learnt after the groups were kept: the taps after it in their
    # months are counted one by one, as the parts' own summaries would have them.
    learn_death(session, persons[0])
    warm = snapshot(session, store)
    row = int(warm.roll.set_index("person_id").index.get_indexer([persons[0]])[0])
    assert warm.post_death[row] > 0
    assert_same(warm, traced(session, store))


# Each source's kinds; the face checks' weights (0.8, 0.3) do not add exactly in binary, so
# sums of them in another order would differ, and their passes settle.
KINDS = {
    "transit": ["tap_face", "tap", "tap_face_failed"],
    "face": ["pass_app", "pass_assisted", "pass_proxy", "fail"],
}
# Days whose windows cut different months, so that buckets gain and lose parts.
AS_OF_DAYS = [D("2025-06-30"), D("2025-07-01"), D("2025-08-15"), D("2025-09-30")]


class SummaryHistory(RuleBasedStateMachine):
    """Deliveries, corrections, compactions, deaths and snapshots as of several days.

    Whatever summaries and group summaries the snapshots kept along the way, each snapshot
    equals the one that scatters every trace one by one.
    """

    engine: Engine
    root: Path

    def __init__(self) -> None:
        super().__init__()
        self.connection = self.engine.connect()
        self.outer = self.connection.begin()
        self.session = Session(bind=self.connection, join_transaction_mode="create_savepoint")
        self.store = EvidenceStore(self.root / uuid.uuid4().hex)
        self.persons = drawing_persons(self.session, "P1", "P2", "P3")
        self.records: dict[str, list[str]] = {source: [] for source in KINDS}
        self.dead: set[int] = set()
        # The model: each record's latest content (person, day, kind), by source and record.
        self.traces: dict[tuple[str, str], tuple[int, dt.date, str]] = {}

    @rule(
        data=st.data(),
        source=st.sampled_from(sorted(KINDS)),
        month=st.integers(1, 6),
        size=st.integers(1, 6),
    )  # fmt: skip
    def deliver(self, data: st.DataObject, source: str, month: int, size: int) -> None:
        rows: list[Row] = []
        for _ in range(size):
            who, day, kind = data.draw(
                st.tuples(st.integers(0, 2), st.integers(1, 28), st.sampled_from(KINDS[source])),
                label="trace",
            )
            record = f"R{len(self.records[source])}"
            self.records[source].append(record)
            rows.append((record, self.persons[who], f"2025-{month:02d}-{day:02d}", kind, False))
            self.traces[source, record] = (who, dt.date(2025, month, day), kind)
        # As two deliveries: a bucket then holds several parts even when one month is in it.
        half = (len(rows) + 1) // 2
        append(self.session, self.store, rows[:half], source=source)
        if rows[half:]:
            append(self.session, self.store, rows[half:], source=source)

    @precondition(lambda self: bool(self.records["transit"]))
    @rule(data=st.data(), who=st.integers(0, 2), month=st.integers(1, 6), day=st.integers(1, 28))
    def correct(self, data: st.DataObject, who: int, month: int, day: int) -> None:
        record = data.draw(st.sampled_from(self.records["transit"]), label="record")
        day_text = f"2025-{month:02d}-{day:02d}"
        append(self.session, self.store, [(record, self.persons[who], day_text, "tap", True)])
        self.traces["transit", record] = (who, dt.date(2025, month, day), "tap")

    @rule(source=st.sampled_from(sorted(KINDS)), month=st.integers(1, 6))
    def compact_month(self, source: str, month: int) -> None:
        compact(self.session, store=self.store, source=source, month=f"2025-{month:02d}")
        remove_orphans(self.session, store=self.store, grace=dt.timedelta(0))

    @rule(who=st.integers(0, 2), month=st.integers(1, 6))
    def die(self, who: int, month: int) -> None:
        if who in self.dead:
            return
        self.dead.add(who)
        learn_death(
            self.session, self.persons[who], record_id=f"C{who}",
            died_on=dt.date(2025, month, 5), recorded_on=dt.date(2025, month, 9),
        )  # fmt: skip

    @rule(as_of=st.sampled_from(AS_OF_DAYS))
    def snapshot(self, as_of: dt.date) -> None:
        reference = traced(self.session, self.store, as_of)
        # Three nights on the same store: the parts' summaries are kept, then their groups,
        # then the groups are added.
        for _ in range(3):
            assert_same(snapshot(self.session, self.store, as_of=as_of), reference)
        self.assert_model(reference, as_of)

    def assert_model(self, taken: EvidenceSnapshot, as_of: dt.date) -> None:
        """Assert the features are those of the model's records, counted here one by one."""
        n_sources = len(POLICY.sources)
        last = np.full((3, n_sources), -1)
        face = np.full(3, -1)
        weights = {days: np.zeros((3, n_sources)) for days in (*POLICY.recent_windows, POLICY.long)}
        for (source, _), (who, day, kind) in self.traces.items():
            code = POLICY.kinds.index((source, kind))
            age = (as_of - day).days
            weight = float(POLICY.weight_of_kind[code])
            if weight <= 0 or not 0 <= age < POLICY.long:
                continue
            column = POLICY.sources.index(source)
            number = (day - dt.date(1970, 1, 1)).days
            last[who, column] = max(last[who, column], number)
            if POLICY.settles_of_kind[code]:
                face[who] = max(face[who], number)
            for days, total in weights.items():
                if age < days:
                    total[who, column] += weight
        rows = taken.roll.reset_index(drop=True).set_index("person_id").index
        at = rows.get_indexer(self.persons)
        features = taken.features
        np.testing.assert_array_equal(features.last_day[at], last)
        np.testing.assert_array_equal(features.face_pass_day[at], face)
        for i, days in enumerate(POLICY.recent_windows):
            np.testing.assert_allclose(features.window_weight[i][at], weights[days], rtol=1e-6)
        np.testing.assert_allclose(features.long_weight[at], weights[POLICY.long], rtol=1e-6)

    def teardown(self) -> None:
        self.session.close()
        self.outer.rollback()
        self.connection.close()
        shutil.rmtree(self.store.root, ignore_errors=True)


def test_summaries_stay_exact_under_random_histories(engine: Engine, tmp_path: Path) -> None:
    machine = type("History", (SummaryHistory,), {"engine": engine, "root": tmp_path})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25, stateful_step_count=14, deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )  # fmt: skip
