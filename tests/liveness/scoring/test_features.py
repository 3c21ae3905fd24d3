import itertools
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.evidence.engines import ThreadedJob
from liveness.scoring import (
    ScoringPolicy,
    compute_features,
    load_policy,
    post_death_traces,
)
from liveness.scoring import features as feature_module
from liveness.scoring.features import FeatureAccumulator

POLICY_PATH = Path(__file__).parents[3] / "config" / "scoring.toml"
AS_OF = 20_453  # 2025-12-31


@pytest.fixture(scope="module")
def policy() -> ScoringPolicy:
    return load_policy(POLICY_PATH)


def random_traces(
    policy: ScoringPolicy, *, seed: int, n_persons: int, n_traces: int
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(policy.kinds), n_traces).astype(np.int16)
    # Days straddle every window edge, including traces after as_of that must be ignored.
    day = rng.integers(AS_OF - 500, AS_OF + 5, n_traces).astype(np.int32)
    edges = np.array([AS_OF - 90, AS_OF - 89, AS_OF - 180, AS_OF - 365, AS_OF - 364, AS_OF])
    pick = rng.random(n_traces) < 0.2
    day[pick] = rng.choice(edges, int(pick.sum())).astype(np.int32)
    return {
        "person_idx": rng.integers(0, n_persons, n_traces).astype(np.int32),
        "source_code": policy.source_of_kind[kind],
        "kind_code": kind,
        "day": day,
    }


def reference(
    policy: ScoringPolicy, traces: dict[str, np.ndarray], n_persons: int
) -> dict[str, Any]:
    n_sources = len(policy.sources)
    windows = policy.recent_windows
    last = np.full((n_persons, n_sources), -1)
    sums: defaultdict[tuple[int, int, int], float] = defaultdict(float)
    face = np.full(n_persons, -1)
    for p, s, k, d in zip(*(traces[c].tolist() for c in traces), strict=True):
        w = float(policy.weight_of_kind[k])
        if w <= 0 or d > AS_OF:
            continue
        last[p, s] = max(last[p, s], d)
        for window in (*windows, policy.long):
            if d > AS_OF - window:
                sums[window, p, s] += w
        if policy.settles_of_kind[k]:
            face[p] = max(face[p], d)
    weight = {
        window: np.array([[sums[window, p, s] for s in range(n_sources)] for p in range(n_persons)])
        for window in (*windows, policy.long)
    }
    return {"last": last, "weight": weight, "face": face}


@pytest.mark.parametrize("block", [None, 7])
@pytest.mark.parametrize("seed", range(5))
def test_features_match_reference(
    policy: ScoringPolicy, seed: int, block: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if block is not None:  # persons in blocks of 7, the last one short: every edge is crossed
        monkeypatch.setattr(feature_module, "RESULT_BLOCK", block)
    n_persons = 60
    traces = random_traces(policy, seed=seed, n_persons=n_persons, n_traces=1500)
    got = compute_features(**traces, n_persons=n_persons, as_of_day=AS_OF, policy=policy)
    want = reference(policy, traces, n_persons)

    assert got.last_day.dtype == np.int32
    np.testing.assert_array_equal(got.last_day, want["last"])
    np.testing.assert_array_equal(got.face_pass_day, want["face"])
    for i, window in enumerate(policy.recent_windows):
        np.testing.assert_allclose(got.window_weight[i], want["weight"][window], rtol=1e-5)
    np.testing.assert_allclose(got.recent_weight, want["weight"][policy.recent], rtol=1e-5)
    np.testing.assert_allclose(got.long_weight, want["weight"][policy.long], rtol=1e-5)
    agree = want["weight"][policy.recent] >= policy.default.min_weight
    # Agreeing sources count by independence group: two of one group (sources.toml) are one.
    agreeing = [len({policy.group_of_source[s] for s in np.flatnonzero(row)}) for row in agree]
    np.testing.assert_array_equal(got.recent_sources, agreeing)
    assert got.recent_weight.dtype == got.long_weight.dtype == np.float32


def test_zero_weight_traces_are_not_evidence(policy: ScoringPolicy) -> None:
    code = policy.kind_index[("card_txn", "auto_debit")]
    got = compute_features(
        person_idx=np.array([0, 0], dtype=np.int32),
        source_code=policy.source_of_kind[[code, code]],
        kind_code=np.array([code, code], dtype=np.int16),
        day=np.array([AS_OF, AS_OF - 3], dtype=np.int32),
        n_persons=2,
        as_of_day=AS_OF,
        policy=policy,
    )
    assert (got.last_day == -1).all()
    assert (got.long_weight == 0).all()


def test_no_traces_gives_empty_features(policy: ScoringPolicy) -> None:
    empty = np.array([], dtype=np.int32)
    got = compute_features(
        person_idx=empty,
        source_code=empty.astype(np.int8),
        kind_code=empty.astype(np.int16),
        day=empty,
        n_persons=3,
        as_of_day=AS_OF,
        policy=policy,
    )
    assert got.last_day.shape == (3, len(policy.sources))
    assert (got.face_pass_day == -1).all()
    assert got.window_weight.shape == (len(policy.recent_windows), 3, len(policy.sources))


def test_inconsistent_source_code_is_refused(policy: ScoringPolicy) -> None:
    traces = random_traces(policy, seed=1, n_persons=5, n_traces=50)
    traces["source_code"] = (traces["source_code"] + 1) % len(policy.sources)
    with pytest.raises(ValueError, match="source_code"):
        compute_features(**traces, n_persons=5, as_of_day=AS_OF, policy=policy)


def test_person_out_of_range_is_refused(policy: ScoringPolicy) -> None:
    traces = random_traces(policy, seed=1, n_persons=5, n_traces=50)
    with pytest.raises(ValueError, match="person_idx"):
        compute_features(**traces, n_persons=4, as_of_day=AS_OF, policy=policy)


@pytest.mark.parametrize("seed", range(3))
def test_post_death_traces_match_reference(policy: ScoringPolicy, seed: int) -> None:
    n_persons = 40
    traces = random_traces(policy, seed=seed, n_persons=n_persons, n_traces=800)
    rng = np.random.default_rng(seed)
    death = np.where(rng.random(n_persons) < 0.5, rng.integers(AS_OF - 300, AS_OF, n_persons), -1)
    death = death.astype(np.int32)
    got = post_death_traces(
        person_idx=traces["person_idx"],
        kind_code=traces["kind_code"],
        day=traces["day"],
        death_day=death,
        policy=policy,
    )
    want = np.zeros(n_persons, dtype=np.int64)
    for p, k, d in zip(
        traces["person_idx"].tolist(),
        traces["kind_code"].tolist(),
        traces["day"].tolist(),
        strict=True,
    ):
        if death[p] >= 0 and d > death[p] and policy.weight_of_kind[k] > 0:
            want[p] += 1
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    assert want.sum() > 0


@pytest.mark.parametrize("when", ["before", "midway", "after", "concurrently"])
@pytest.mark.parametrize("seed", range(3))
def test_result_is_the_same_whenever_its_arrays_are_prepared(
    policy: ScoringPolicy, seed: int, when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepared arrays must hold the same features as arrays `result` allocates itself, and a
    # preparation that comes after `result` must not touch what it returned.
    monkeypatch.setattr(feature_module, "RESULT_BLOCK", 7)
    n_persons = 50
    traces = random_traces(policy, seed=seed, n_persons=n_persons, n_traces=1200)
    want = reference(policy, traces, n_persons)

    def accumulate(accumulator: FeatureAccumulator, sources: np.ndarray) -> None:
        for source in sources:
            rows = traces["source_code"] == source
            accumulator.add(
                person_idx=traces["person_idx"][rows], source=int(source),
                kind_code=traces["kind_code"][rows], day=traces["day"][rows],
            )  # fmt: skip

    accumulator = FeatureAccumulator(n_persons=n_persons, as_of_day=AS_OF, policy=policy)
    sources = np.unique(traces["source_code"])
    if when == "before":
        accumulator.prepare_result()
    accumulate(accumulator, sources[: len(sources) // 2])
    if when == "midway":
        accumulator.prepare_result()
    if when == "concurrently":
        preparing = threading.Thread(target=accumulator.prepare_result)
        preparing.start()
    accumulate(accumulator, sources[len(sources) // 2 :])
    got = accumulator.result()
    if when == "concurrently":
        preparing.join()
    if when == "after":
        accumulator.prepare_result()
        assert accumulator._result_arrays is None
    np.testing.assert_array_equal(got.last_day, want["last"])
    np.testing.assert_array_equal(got.face_pass_day, want["face"])
    for i, window in enumerate(policy.recent_windows):
        np.testing.assert_allclose(got.window_weight[i], want["weight"][window], rtol=1e-5)
    np.testing.assert_allclose(got.long_weight, want["weight"][policy.long], rtol=1e-5)
    fresh = compute_features(**traces, n_persons=n_persons, as_of_day=AS_OF, policy=policy)
    for name in ("last_day", "window_weight", "long_weight", "recent_sources"):
        np.testing.assert_array_equal(getattr(got, name), getattr(fresh, name))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**16), prepared=st.booleans())
def test_features_are_exact_when_only_some_sources_deliver(
    policy: ScoringPolicy, data: st.DataObject, seed: int, prepared: bool
) -> None:
    # A source that delivers nothing has no last day and no weight, wherever it lies among
    # those that do (result reads only the span of sources that delivered), whether its
    # evidence came as traces or as a part's summary.
    n_persons = 30
    delivering = data.draw(
        st.sets(st.integers(0, len(policy.sources) - 1), max_size=4), label="delivering"
    )
    summarised = data.draw(st.sets(st.sampled_from(sorted(delivering or {0}))), label="summarised")
    traces = random_traces(policy, seed=seed, n_persons=n_persons, n_traces=400)
    rows = np.isin(traces["source_code"], sorted(delivering))
    traces = {name: values[rows] for name, values in traces.items()}
    want = reference(policy, traces, n_persons)
    accumulator = FeatureAccumulator(n_persons=n_persons, as_of_day=AS_OF, policy=policy)
    if prepared:
        accumulator.prepare_result()
    for source in sorted(delivering):
        rows = traces["source_code"] == source
        if source not in summarised:
            accumulator.add(
                person_idx=traces["person_idx"][rows], source=source,
                kind_code=traces["kind_code"][rows], day=traces["day"][rows],
            )  # fmt: skip
            continue
        # Summarised by bucket, as a part whose days all fall in one bucket is.
        ages = AS_OF - traces["day"][rows]
        for bucket in range(accumulator.buckets):
            days = traces["day"][rows]
            in_bucket = np.array(
                [accumulator.part_bucket(int(day), int(day)) == bucket for day in days], dtype=bool
            ) & (ages >= 0)
            summary = accumulator.summarise(
                accumulator.empty_summary(source),
                person_idx=traces["person_idx"][rows][in_bucket],
                kind_code=traces["kind_code"][rows][in_bucket], day=days[in_bucket],
            )  # fmt: skip
            accumulator.add_summary(
                source=source, bucket=bucket, summary=accumulator.finished(summary)
            )
    got = accumulator.result()
    np.testing.assert_array_equal(got.last_day, want["last"])
    np.testing.assert_array_equal(got.face_pass_day, want["face"])
    for i, window in enumerate(policy.recent_windows):
        np.testing.assert_allclose(got.window_weight[i], want["weight"][window], rtol=1e-5)
    np.testing.assert_allclose(got.long_weight, want["weight"][policy.long], rtol=1e-5)


def test_a_job_prepares_only_while_its_work_runs() -> None:
    # The waiting thread's preparation runs while the work is still going, never after it.
    prepared: list[bool] = []
    release = threading.Event()

    def work(stop: threading.Event) -> Any:
        release.wait(5)
        return "evidence"

    def before_wait() -> None:
        prepared.append(True)
        release.set()

    job = ThreadedJob(work, name="test-job", before_wait=before_wait)
    assert job.result() == "evidence"
    assert prepared == [True]
    done = ThreadedJob(lambda stop: "evidence", name="test-job", before_wait=before_wait)
    while not done._future.done():
        time.sleep(0.001)
    assert done.result() == "evidence"
    assert prepared == [True]


FEATURE_ARRAYS = (
    "last_day", "recent_weight", "long_weight", "window_weight", "face_pass_day",
    "recent_sources",
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n_persons=st.integers(0, 40), seed=st.integers(0, 2**16))
def test_features_of_consecutive_blocks_join_into_everyones(
    policy: ScoringPolicy, data: st.DataObject, n_persons: int, seed: int
) -> None:
    # Any split of the persons into consecutive blocks (empty ones included), each block's
    # features computed from its own persons' traces alone, joins into the features of all.
    traces = random_traces(policy, seed=seed, n_persons=max(n_persons, 1), n_traces=300)
    if n_persons == 0:
        traces = {key: values[:0] for key, values in traces.items()}
    whole = compute_features(**traces, n_persons=n_persons, as_of_day=AS_OF, policy=policy)
    cuts = sorted(data.draw(st.lists(st.integers(0, n_persons), max_size=6)))
    edges = [0, *cuts, n_persons]
    blocks = []
    for lo, hi in itertools.pairwise(edges):
        mine = (traces["person_idx"] >= lo) & (traces["person_idx"] < hi)
        local = {key: values[mine] for key, values in traces.items()}
        local["person_idx"] = local["person_idx"] - np.int32(lo)
        blocks.append(compute_features(**local, n_persons=hi - lo, as_of_day=AS_OF, policy=policy))
    joined = feature_module.join_features(iter(blocks), n_persons=n_persons)
    for name in FEATURE_ARRAYS:
        got, want = getattr(joined, name), getattr(whole, name)
        assert got.dtype == want.dtype and np.array_equal(got, want), name
    # The default window's weights are a row of the windows' (as the accumulator gives them).
    assert n_persons == 0 or np.shares_memory(joined.recent_weight, joined.window_weight)


def test_joining_blocks_that_do_not_cover_the_persons_is_refused(policy: ScoringPolicy) -> None:
    traces = random_traces(policy, seed=1, n_persons=10, n_traces=50)
    block = compute_features(**traces, n_persons=10, as_of_day=AS_OF, policy=policy)
    assert feature_module.join_features([block], n_persons=10) is block  # one block: as it is
    with pytest.raises(ValueError, match="more than 15"):
        feature_module.join_features([block, block], n_persons=15)
    with pytest.raises(ValueError, match="hold 10 persons, not 12"):
        feature_module.join_features([block], n_persons=12)
    with pytest.raises(ValueError, match="no blocks"):
        feature_module.join_features([], n_persons=0)
