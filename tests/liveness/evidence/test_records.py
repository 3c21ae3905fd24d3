"""The record index against a model: re-deliveries, conflicts and corrections, whatever the month."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from liveness.evidence.records import runs as runs_module
from liveness.evidence.records.contents import content_hashes
from liveness.evidence.records.index import RecordIndex

# Few records and contents, so that repeats, changes and corrections are common.
ROWS = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 3), st.sampled_from([False, False, False, True])),
    max_size=25,
)
# Record hashes spread over the 64-bit range, as the store's are.
HASH_OF = {k: np.uint64((k * 0x9E3779B97F4A7C15 + 12345) % 2**64) for k in range(31)}


def traces(rows: list[tuple[int, int]], delivery: int) -> pa.Table:
    """Return evidence rows of (record, content): content c is card C{c}, at one time."""
    return pa.table(
        {
            "record_hash": pa.array([HASH_OF[r] for r, _ in rows], pa.uint64()),
            "delivery_id": pa.array([delivery] * len(rows), pa.int32()),
            "link_key": pa.array([f"C{c}" for _, c in rows], pa.string()),
            "event_at": pa.array([0] * len(rows), pa.timestamp("s", tz="UTC")),
            "kind": pa.array(["tap"] * len(rows), pa.string()),
        }
    )


class RecordIndexMachine(RuleBasedStateMachine):
    """Deliveries judged by the index, against a model of what the store holds."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="records-"))
        self.committed: dict[int, set[int]] = {}  # record -> contents stored
        self.deliveries: dict[int, int] = {}  # record -> latest delivery holding it
        self.parts: dict[str, Path] = {}
        self.pending: dict[int, set[int]] = {}
        self.delivery = 1
        # A tiny filter, so that it fills and is rebuilt, pending records and all.
        self.min_words = runs_module.BLOOM_MIN_WORDS
        runs_module.BLOOM_MIN_WORDS = 1
        self.index = self._open()

    def _open(self) -> RecordIndex:
        return RecordIndex.open(self.folder / "index", source="transit", manifest=self.parts)

    def teardown(self) -> None:
        runs_module.BLOOM_MIN_WORDS = self.min_words
        shutil.rmtree(self.folder, ignore_errors=True)

    @rule(rows=ROWS)
    def deliver_a_batch(self, rows: list[tuple[int, int, bool]]) -> None:
        hashes = np.array([HASH_OF[r] for r, _, _ in rows], dtype=np.uint64)
        contents = content_hashes(traces([(r, c) for r, c, _ in rows], 0), "transit")
        corrections = np.array([k for _, _, k in rows], dtype=bool)
        verdict = self.index.check(hashes, contents, corrections)
        in_batch: set[int] = set()
        for i, (record, content, correction) in enumerate(rows):
            stored = self.committed.get(record, set()) | self.pending.get(record, set())
            if correction:
                fate = "load"
            elif content in stored:
                fate = "redelivered"
            elif stored or record in in_batch:
                fate = "conflict"
            else:
                fate = "load"
            in_batch.add(record)
            if fate == "load":
                self.pending.setdefault(record, set()).add(content)
            got = (
                "redelivered" if verdict.redelivered[i]
                else "conflict" if verdict.conflict[i] else "load"
            )  # fmt: skip
            assert got == fate, (i, rows, got, fate)
            if fate == "conflict":
                committed_only = record in self.committed and record not in self.pending
                if committed_only and not any(r == record for r, _, _ in rows[:i]):
                    assert verdict.earlier[i] == self.deliveries[record]
                else:
                    assert verdict.earlier[i] in (-1, self.deliveries.get(record, -1))

    @rule()
    def commit_the_delivery(self) -> None:
        part = f"source=transit/month=2025-01/part-{self.delivery:08d}.parquet"
        self.index.publish(delivery_id=self.delivery, parts=[part])
        if self.pending:
            self.parts[part] = self.folder / part
            self.parts[part].parent.mkdir(parents=True, exist_ok=True)
            stored = [(r, c) for r, contents in self.pending.items() for c in sorted(contents)]
            pq.write_table(traces(stored, self.delivery), self.parts[part])
        for record, contents in self.pending.items():
            self.committed.setdefault(record, set()).update(contents)
            self.deliveries[record] = self.delivery
        self.pending = {}
        self.delivery += 1

    @rule()
    def roll_the_delivery_back(self) -> None:
        self.index.discard()
        self.pending = {}
        self.delivery += 1

    @rule()
    def roll_back_after_publishing(self) -> None:
        # The run is written, then the transaction fails: the manifest never lists the part.
        part = f"source=transit/month=2025-01/part-{self.delivery:08d}.parquet"
        self.index.publish(delivery_id=self.delivery, parts=[part])
        self.pending = {}
        self.delivery += 1
        self.index = self._open()

    @precondition(lambda self: not self.pending)
    @rule()
    def reopen(self) -> None:
        self.index = self._open()

    @precondition(lambda self: not self.pending)
    @rule()
    def lose_the_index_folder(self) -> None:
        # A cache: rebuilt from the parts, it answers alike.
        shutil.rmtree(self.folder / "index", ignore_errors=True)
        self.index = self._open()

    @invariant()
    def runs_cover_only_committed_parts(self) -> None:
        for run in self.index.runs:
            # what the index trusts since it opened: committed parts only
            assert run.parts <= self.parts.keys()
        for run in [*self.index.runs, *self.index.fresh]:
            assert run.parts <= self.parts.keys() | {
                f"source=transit/month=2025-01/part-{self.delivery - 1:08d}.parquet"
            }
            assert np.all(np.diff(run.keys.astype(np.float64)) >= 0) or run.rows < 2


TestRecordIndex = RecordIndexMachine.TestCase
TestRecordIndex.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def test_a_large_index_answers_like_a_set(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Small pieces and fences, so that streaming merges and fenced lookups cross many pages.
    monkeypatch.setattr(runs_module, "MERGE_ROWS", 1000)
    monkeypatch.setattr(runs_module, "READ_SEGMENTS", 3)
    rng = np.random.default_rng(3)
    index = RecordIndex.open(tmp_path / "i", source="transit", manifest={})
    stored = rng.integers(0, 2**64, 60_000, dtype=np.uint64, endpoint=False)
    contents = rng.integers(1, 2**32, stored.size, dtype=np.uint64).astype(np.uint32)
    manifest: dict[str, Path] = {}
    for d, (h, c) in enumerate(zip(np.array_split(stored, 7), np.array_split(contents, 7),
                                   strict=True)):  # fmt: skip
        verdict = index.check(h, c, np.zeros(h.size, dtype=bool))
        assert not verdict.redelivered.any() and not verdict.conflict.any()
        part = f"p{d}"
        index.publish(delivery_id=d + 1, parts=[part])
        manifest[part] = tmp_path / part
    assert len(index.fresh) <= 3
    index = RecordIndex.open(tmp_path / "i", source="transit", manifest=manifest)
    probe = np.concatenate([stored[::7], rng.integers(0, 2**64, 5000, dtype=np.uint64)])
    probe_contents = np.concatenate([contents[::7], np.ones(5000, dtype=np.uint32)])
    probe_contents[:100] += 1  # changed content: conflicts
    verdict = index.check(probe, probe_contents, np.zeros(probe.size, dtype=bool))
    known = np.isin(probe, stored)
    assert (verdict.redelivered | verdict.conflict).tolist() == known.tolist()
    assert verdict.conflict[:100].all() and not verdict.conflict[100 : stored[::7].size].any()
    assert (verdict.earlier[:100] >= 1).all()
    # Lookups at the edges of the segments they read: the fences themselves, the values
    # beside them, the ends, values that are not there; and the delivery of each found.
    run = max(index.runs, key=lambda r: r.rows)
    keys = np.asarray(run.keys)
    edges = np.concatenate(
        [run.key_fences[::7], keys[511::1024][:20], keys[:1], keys[-1:], [np.uint64(0)],
         [np.uint64(2**64 - 1)], keys[::997][:10] + np.uint64(1)]
    )  # fmt: skip
    edges = np.unique(edges)
    assert run.find(edges).tolist() == np.isin(edges, keys).tolist()
    delivery_of = {int(h): d + 1 for d, part in enumerate(np.array_split(stored, 7))
                   for h in part.tolist()}  # fmt: skip
    expected = [delivery_of.get(int(h), -1) for h in edges]
    assert run.latest_delivery(edges).tolist() == expected


def test_content_hashes_read_back_equal_those_of_the_batch(tmp_path: Path) -> None:
    table = pa.table(
        {
            "link_key": pa.array(["C1", "C2", "C3" * 40]),
            "event_at": pa.array([0, 60, None], pa.timestamp("s", tz="UTC")),
            "kind": pa.array(["tap", "tap_face", "tap"]).dictionary_encode(),
            "discharge_outcome": pa.array([None, "deceased", "alive"]),
        }
    )
    plain = table.set_column(2, "kind", table["kind"].cast(pa.string()))
    assert content_hashes(table, "medical").tolist() == content_hashes(plain, "medical").tolist()
    # Written and read back as a part is (Parquet keeps seconds as milliseconds).
    path = tmp_path / "part.parquet"
    pq.write_table(plain, path)
    back = pq.ParquetFile(path, read_dictionary=["kind"]).read()
    assert content_hashes(back, "medical").tolist() == content_hashes(plain, "medical").tolist()
    hashes = content_hashes(plain, "medical")
    assert len(set(hashes.tolist())) == 3 and (hashes != 0).all()
    # A part written before a content column existed: content unknown (0).
    assert content_hashes(plain.drop_columns(["discharge_outcome"]), "medical").tolist() == [0] * 3
    # Values are stable: the index keeps them between processes.
    assert content_hashes(plain, "transit").tolist() == content_hashes(plain, "transit").tolist()


@settings(max_examples=200, deadline=None)
@given(
    runs=st.lists(st.lists(st.integers(0, 50), max_size=40), max_size=6),
    piece=st.integers(1, 20),
)
def test_a_k_way_merge_yields_every_value_in_order(runs: list[list[int]], piece: int) -> None:
    arrays = [np.sort(np.array(run, dtype=np.uint64)) for run in runs]
    saved = runs_module.MERGE_ROWS
    runs_module.MERGE_ROWS = piece
    try:
        pieces = list(runs_module._k_way(arrays))
    finally:
        runs_module.MERGE_ROWS = saved
    merged = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.uint64)
    expected = np.sort(np.concatenate(arrays)) if arrays else np.empty(0, dtype=np.uint64)
    assert merged.tolist() == expected.tolist()


@settings(max_examples=200, deadline=None)
@given(
    older=st.lists(st.integers(0, 40), max_size=50),
    newer=st.lists(st.integers(0, 40), max_size=50),
    block=st.integers(1, 15),
)
def test_two_streams_merge_with_what_goes_with_each_value(
    older: list[int], newer: list[int], block: int
) -> None:
    def stream(values: list[int], tag: int):  # type: ignore[no-untyped-def]
        keys = np.sort(np.array(values, dtype=np.uint64))
        for start in range(0, keys.size, block):
            piece = keys[start : start + block]
            yield piece, piece.astype(np.int64) * 10 + tag

    pieces = list(runs_module._merge_streams(stream(older, 1), stream(newer, 2)))
    keys = np.concatenate([k for k, _ in pieces]) if pieces else np.empty(0, dtype=np.uint64)
    withs = np.concatenate([w for _, w in pieces]) if pieces else np.empty(0, dtype=np.int64)
    assert keys.tolist() == sorted(older + newer)
    assert sorted(withs.tolist()) == sorted(
        [v * 10 + 1 for v in older] + [v * 10 + 2 for v in newer]
    )
    assert (withs // 10 == keys.astype(np.int64)).all()
