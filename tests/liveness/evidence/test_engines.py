"""One interface, two engines: the local engine and Spark give the same features and levels.

A small simulated city is ingested once; corrections are then delivered (a record moved, one
re-kinded twice in one delivery, one corrected in two deliveries, one voided) and a dead
person's card is used after their death. Each engine's snapshot must equal, array for array and
bit for bit, the features computed plainly from the store's corrected traces.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from liveness.db import session_scope
from liveness.errors import ConfigurationError
from liveness.evidence.engines import FeatureEngine, spark_engine
from liveness.evidence.local_engine import LocalEngine
from liveness.evidence.parts import day_number
from liveness.evidence.snapshot import EvidenceSnapshot, snapshots_by_range, take_snapshot
from liveness.evidence.store import EvidenceStore
from liveness.evidence.summaries import SUMMARY_FOLDER
from liveness.ingest import INGEST_ORDER
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.scoring import LEVELS, NO_LEVEL, compute_features, grade
from liveness.services import Services
from liveness.settings import Settings
from liveness.simulate import simulate_city
from models import Delivery, DeliveryStatus, EvidencePart, Person
from tests.liveness.conftest import REPO, invoke_cli

# Scheduling: about 12 s a test on a quiet 2-core machine (tests/conftest.py).
pytestmark = pytest.mark.slow(seconds=12)

START = dt.date(2025, 1, 1)
DAYS = 120
AS_OF = START + dt.timedelta(days=DAYS - 1)
ENGINES = ("local", "spark")


def _spark_missing() -> str | None:
    """Say what the Spark engine lacks on this machine, or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "PySpark is not installed (pip install -e '.[test]')"
    if shutil.which("java") is None:
        return "no Java runtime (apt-get install openjdk-17-jre-headless)"
    return None


@pytest.fixture(scope="session")
def spark() -> Iterator[FeatureEngine]:
    """Give the Spark engine on local[2], one Spark session for every test that asks."""
    missing = _spark_missing()
    if missing is not None:
        # On CI the Spark tests must run: a missing runtime fails them instead of skipping.
        if os.environ.get("CI"):
            pytest.fail(f"the Spark engine cannot run on CI: {missing}")
        pytest.skip(missing)
    engine = spark_engine(master="local[2]", evidence_url=None, shuffle_partitions=2)
    yield engine
    engine.spark().stop()  # type: ignore[attr-defined]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> FeatureEngine:
    """Give each engine in turn."""
    if request.param == "spark":
        spark_engine: FeatureEngine = request.getfixturevalue("spark")
        return spark_engine
    return LocalEngine()


def _delivery(session, source: str) -> int:  # type: ignore[no-untyped-def]
    """Record a delivery of corrections; return its id."""
    row = Delivery(
        source=source, file_name="corrections.csv", path="corrections.csv", checksum="0" * 64,
        size_bytes=1, format="csv", encoding="utf-8", status=DeliveryStatus.LOADED,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row.id


def _corrections(services: Services) -> None:
    """Deliver corrections of transit records, and a dead person's card used after death."""
    store = services.store
    with session_scope(services.sessions) as session:
        part = session.scalars(
            select(EvidencePart).where(EvidencePart.source == "transit").order_by(EvidencePart.id)
        ).all()[-1]
        table = pq.read_table(store.path_of(part)).filter(pc.field("person_id") >= 0)
        rows = table.slice(0, 4).to_pylist()
        moved, rekinded, twice, voided = rows

        first, second = _delivery(session, "transit"), _delivery(session, "transit")

        def correction(row: dict, delivery: int, **changes: object) -> dict:  # type: ignore[type-arg]
            return {**row, **changes, "delivery_id": delivery, "correction": True}

        store.append(session, source="transit", delivery_id=first, traces=pa.Table.from_pylist([
            correction(moved, first, day=moved["day"] - 40),
            # Two corrections of one record in one delivery: the later row wins.
            correction(rekinded, first, kind="tap"), correction(rekinded, first, kind="tap_face"),
            correction(twice, first, kind="tap_face_failed"),
        ], schema=table.schema))  # fmt: skip
        store.append(session, source="transit", delivery_id=second, traces=pa.Table.from_pylist([
            correction(twice, second, kind="tap", day=twice["day"] - 1),
            correction(voided, second, kind="voided"),
        ], schema=table.schema))  # fmt: skip


def _plant_post_death_use(services: Services, snapshot: EvidenceSnapshot) -> None:
    """Use the card of someone with death evidence two days after their death."""
    dead = np.flatnonzero(snapshot.death_day >= 0)
    assert dead.size, "the city has no death evidence"
    person = int(snapshot.roll["person_id"].iloc[int(dead[0])])
    day = int(snapshot.death_day[dead[0]]) + 2
    with session_scope(services.sessions) as session:
        delivery = _delivery(session, "transit")
        services.store.append(session, source="transit", delivery_id=delivery, traces=pa.table({
            "record_id": ["after-death"], "record_hash": pa.array([12345], pa.uint64()),
            "person_id": pa.array([person], pa.int32()), "day": pa.array([day], pa.int32()),
            "event_at": pa.array([None], pa.timestamp("s", tz="UTC")), "kind": ["tap_face"],
            "link": ["card"], "link_key": ["X"], "delivery_id": pa.array([delivery], pa.int32()),
            "correction": [False],
        }))  # fmt: skip


@pytest.fixture(scope="module")
def city_services(tmp_path_factory: pytest.TempPathFactory, database_url_factory) -> Services:  # type: ignore[no-untyped-def]
    """Give services on an ingested small city, with corrections and a post-death trace."""
    out = tmp_path_factory.mktemp("engine-city")
    simulate_city(persons=300, start=START, days=DAYS, seed=11, out=out)
    settings = Settings(
        database_url=database_url_factory("sqlite"),
        evidence_dir=tmp_path_factory.mktemp("engine-evidence"), config_dir=REPO / "config",
    )  # fmt: skip
    services = Services(settings)
    upgrade(services.engine)
    for source in INGEST_ORDER:
        ingest_paths(services, source=source, paths=[out / source])
    _corrections(services)
    with session_scope(services.sessions) as session:
        before = _snapshot(services, session, LocalEngine())
    _plant_post_death_use(services, before)
    return services


def _snapshot(services: Services, session, engine: FeatureEngine) -> EvidenceSnapshot:  # type: ignore[no-untyped-def]
    """Take the snapshot as of the city's last day, its features computed by `engine`."""
    store = EvidenceStore(services.store.root, engine=engine)
    policies = services.policies
    return take_snapshot(
        session, as_of=AS_OF, store=store, scoring=policies.scoring, health=policies.health
    )


def _plain_features(services: Services, session, snapshot: EvidenceSnapshot):  # type: ignore[no-untyped-def]
    """Compute the roll's features plainly from the store's corrected traces, all at once."""
    scoring = services.policies.scoring
    first = AS_OF - dt.timedelta(days=scoring.long - 1)
    index = {int(p): i for i, p in enumerate(snapshot.roll["person_id"])}
    arrays: dict[str, list[np.ndarray]] = {"person": [], "source": [], "kind": [], "day": []}
    for code, source in enumerate(scoring.sources):
        table = services.store.read_table(
            session, source=source, columns=["person_id", "day", "kind"], first_day=first,
            last_day=AS_OF,
        ).to_pydict()  # fmt: skip
        codes = scoring.kind_codes(source)
        for person, day, kind in zip(table["person_id"], table["day"], table["kind"], strict=True):
            if person in index and kind in codes:
                arrays["person"].append(index[person])
                arrays["source"].append(code)
                arrays["kind"].append(codes[kind])
                arrays["day"].append(day)
    return compute_features(
        person_idx=np.asarray(arrays["person"], dtype=np.int32),
        source_code=np.asarray(arrays["source"], dtype=np.int8),
        kind_code=np.asarray(arrays["kind"], dtype=np.int16),
        day=np.asarray(arrays["day"], dtype=np.int32), n_persons=len(snapshot.roll),
        as_of_day=day_number(AS_OF), policy=scoring,
    )  # fmt: skip


FEATURES = (
    "last_day", "recent_weight", "long_weight", "window_weight", "face_pass_day",
    "recent_sources",
)  # fmt: skip


def _levels(services: Services, snapshot: EvidenceSnapshot, degraded: np.ndarray) -> np.ndarray:
    """Grade the snapshot's roll; everyone was strong before (so a degraded source holds)."""
    grades = grade(
        features=snapshot.features, benefit_type=snapshot.roll["benefit_type"].to_numpy(),
        death_day=snapshot.death_day, degraded=degraded,
        previous_level=np.full(len(snapshot.roll), LEVELS.index("strong"), dtype=np.int8),
        policy=services.policies.scoring,
    )  # fmt: skip
    return grades.level


def test_each_engine_gives_the_plain_features_exactly(
    city_services: Services, engine: FeatureEngine
) -> None:
    with session_scope(city_services.sessions) as session:
        snapshot = _snapshot(city_services, session, engine)
        expected = _plain_features(city_services, session, snapshot)
    for name in FEATURES:
        got, want = getattr(snapshot.features, name), getattr(expected, name)
        assert got.dtype == want.dtype, name
        assert np.array_equal(got, want), name
    # Weights that float32 cannot hold exactly (0.1, 0.3, 0.8) are in play: equality is
    # exact because both engines sum in float64 and round once.
    weights = snapshot.features.window_weight
    assert np.any(weights.astype(np.float64) * 20 != np.round(weights.astype(np.float64) * 20))


def test_spark_reads_the_store_where_its_url_says(
    city_services: Services, spark: FeatureEngine, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    # The store as the executors see it (here a copy; on a cluster hdfs:// or s3a://), read
    # with the corrected records dropped by a sort-merge join, as past the broadcast limit.
    from liveness.evidence.spark_engine import SparkEngine  # PySpark is there: `spark` says so

    elsewhere = tmp_path / "synced"
    shutil.copytree(city_services.store.root, elsewhere)
    synced = SparkEngine(master="local[2]", evidence_url=elsewhere.as_uri(), shuffle_partitions=2)
    monkeypatch.setattr("liveness.evidence.spark_engine.BROADCAST_CORRECTED", 0)
    with session_scope(city_services.sessions) as session:
        snapshot = _snapshot(city_services, session, synced)
        expected = _plain_features(city_services, session, snapshot)
    for name in FEATURES:
        assert np.array_equal(getattr(snapshot.features, name), getattr(expected, name)), name
    # A store that lacks a part the manifest lists is refused, naming the setting.
    next(elsewhere.glob("source=transit/month=*/*.parquet")).unlink()
    refused = pytest.raises(ConfigurationError, match="LIVENESS_SPARK_EVIDENCE_URL")
    with session_scope(city_services.sessions) as session, refused:
        _snapshot(city_services, session, synced)


def test_spark_results_too_large_for_the_driver_are_refused_clearly(
    city_services: Services, spark: FeatureEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyspark.errors import PySparkException

    def collect_refused(*_: object) -> None:
        raise PySparkException(
            message="Job aborted due to stage failure: Total size of serialized results of 1 "
            "tasks (9.4 MiB) is bigger than spark.driver.maxResultSize (5.0 MiB)"
        )

    monkeypatch.setattr("liveness.evidence.spark_engine._evidence", collect_refused)
    refused = pytest.raises(ConfigurationError, match=r"spark\.driver\.maxResultSize")
    with session_scope(city_services.sessions) as session, refused:
        _snapshot(city_services, session, spark)


def _same_as_local(
    services: Services, engine: FeatureEngine
) -> tuple[EvidenceSnapshot, EvidenceSnapshot]:
    """Take the snapshot with the local engine and with `engine`; check their features agree."""
    with session_scope(services.sessions) as session:
        local = _snapshot(services, session, LocalEngine())
        other = _snapshot(services, session, engine)
    for name in FEATURES:
        assert np.array_equal(getattr(local.features, name), getattr(other.features, name)), name
    assert local.trace_count == other.trace_count > 0
    return local, other


def test_spark_equals_the_local_engine_for_every_person(
    city_services: Services, spark: FeatureEngine
) -> None:
    local, other = _same_as_local(city_services, spark)
    # The traces that count against the dead, one by one (in any order).
    weight = city_services.policies.scoring.weight_of_kind
    after = {}
    for key, s in (("local", local), ("spark", other)):
        t = s.traces
        keep = (t["day"] > s.death_day[t["person"]]) & (weight[t["kind"]] > 0)
        order = np.lexsort(tuple(t[k][keep] for k in ("day", "kind", "source", "person")))
        after[key] = {k: t[k][keep][order] for k in ("person", "source", "kind", "day")}
    for key in ("person", "source", "kind", "day"):
        assert np.array_equal(after["local"][key], after["spark"][key]), key
    assert np.array_equal(local.post_death, other.post_death)
    assert int(local.post_death.sum()) > 0
    assert np.array_equal(local.degraded, other.degraded)
    # Levels, with the sources as the database found them and with one source degraded.
    degraded = np.zeros(len(local.degraded), dtype=bool)
    degraded[list(city_services.policies.scoring.sources).index("transit")] = True
    for mask in (local.degraded, degraded):
        levels = _levels(city_services, local, mask)
        assert np.array_equal(levels, _levels(city_services, other, mask))
        assert len(set(levels.tolist()) - {NO_LEVEL}) >= 3


def test_spark_brings_the_sums_back_range_by_range(
    city_services: Services, spark: FeatureEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A roll of ~300 person ids collected 37 at a time: each range's sums hold its persons
    # and no others, and the joined features are the local engine's, bit for bit.
    from liveness.evidence import spark_engine as module

    ranges: list[tuple[int, int, int]] = []
    turn_into_features = module._range_features

    def checked(table: pa.Table, *, lo: int, hi: int, request: object) -> object:
        persons = table["person_id"].to_numpy()
        assert hi - lo <= 37 and np.all((persons >= lo) & (persons < hi))
        ranges.append((lo, hi, len(persons)))
        return turn_into_features(table, lo=lo, hi=hi, request=request)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "_range_features", checked)
    ranged = module.SparkEngine(master="local[2]", shuffle_partitions=2, collect_persons=37)
    local, other = _same_as_local(city_services, ranged)
    assert np.array_equal(local.post_death, other.post_death)
    # Consecutive ranges from id 0 past the highest, every one with sums to bring back.
    assert [lo for lo, _, _ in ranges] == list(range(0, ranges[-1][1], 37))
    assert len(ranges) >= 8 and all(rows > 0 for _, _, rows in ranges)


def _by_range(services: Services, engine: FeatureEngine, size: int) -> list[EvidenceSnapshot]:
    """Take the snapshot range by range, `size` person ids a range, its features by `engine`."""
    store = EvidenceStore(services.store.root, engine=engine)
    policies = services.policies
    with session_scope(services.sessions) as session:
        return list(
            snapshots_by_range(
                session, as_of=AS_OF, store=store, scoring=policies.scoring,
                health=policies.health, range_persons=size,
            )
        )  # fmt: skip


def _after_death(services: Services, snapshot: EvidenceSnapshot) -> list[tuple[int, ...]]:
    """Return a snapshot's evidence dated after a death, with person ids, in one order.

    What both engines keep: the local engine keeps more of the dead's traces (those it read).
    """
    ids = snapshot.roll["person_id"].to_numpy()
    t = snapshot.traces
    weight = services.policies.scoring.weight_of_kind
    keep = (t["day"] > snapshot.death_day[t["person"]]) & (weight[t["kind"]] > 0)
    columns = (ids[t["person"][keep]], *(t[key][keep] for key in ("source", "kind", "day")))
    return sorted(tuple(int(v) for v in row) for row in zip(*columns, strict=True))


def _check_ranges(
    services: Services, whole: EvidenceSnapshot, parts: list[EvidenceSnapshot], size: int
) -> None:
    """Check that snapshots by ranges of `size` ids are the whole one, person by person."""
    whole_ids = whole.roll["person_id"].to_numpy()
    ids = np.concatenate([p.roll["person_id"].to_numpy() for p in parts])
    # Consecutive ranges from id 0 past the highest, each holding its own persons only,
    # together the roll.
    with session_scope(services.sessions) as session:
        top = session.scalar(select(func.max(Person.id)))
    assert len(parts) == top // size + 1
    for number, part in enumerate(parts):
        lo, hi = number * size, (number + 1) * size
        for frame in (part.roll, part.deaths, part.roll_certified):
            assert frame is not None
            assert frame["person_id"].between(lo, hi - 1).all()
    assert sorted(ids.tolist()) == sorted(whole_ids.tolist())
    row = {int(p): i for i, p in enumerate(whole_ids)}
    order = np.array([row[int(p)] for p in ids])
    for name in FEATURES:
        joined = np.concatenate(
            [getattr(p.features, name) for p in parts], axis=-2 if name == "window_weight" else 0
        )
        want = getattr(whole.features, name)
        assert np.array_equal(joined, want[:, order] if name == "window_weight" else want[order]), (
            name
        )
    for name in ("death_day", "post_death"):
        joined = np.concatenate([getattr(p, name) for p in parts])
        assert np.array_equal(joined, getattr(whole, name)[order]), name
    assert sum(p.trace_count for p in parts) == whole.trace_count > 0
    after_death = sorted(r for p in parts for r in _after_death(services, p))
    assert after_death == _after_death(services, whole) != []
    for name in ("deaths", "roll_certified"):
        frames = [getattr(p, name) for p in parts]
        joined = pd.concat(frames).sort_values(list(frames[0].columns)).reset_index(drop=True)
        want = getattr(whole, name).sort_values(list(frames[0].columns)).reset_index(drop=True)
        pd.testing.assert_frame_equal(joined, want, check_dtype=False)
    assert all(p.health == whole.health for p in parts)
    # Graded range by range, every person's level is the level graded with everyone.
    mask = whole.degraded
    levels = np.concatenate([_levels(services, p, mask) for p in parts])
    assert np.array_equal(levels, _levels(services, whole, mask)[order])


@given(size=st.integers(min_value=1, max_value=400), summarised=st.booleans())
@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_snapshots_by_range_are_the_snapshot_cut_by_person_id(
    city_services: Services, size: int, summarised: bool
) -> None:
    # Any range size, from one person a range to one range for everyone, the local engine
    # adding slices of the parts' kept summaries, or reading every trace (none kept yet).
    with session_scope(city_services.sessions) as session:
        whole = _snapshot(city_services, session, LocalEngine())
    folder = city_services.store.root / SUMMARY_FOLDER
    assert any(folder.rglob("*")), "the whole snapshot keeps the parts' summaries"
    if not summarised:
        shutil.rmtree(folder)
    parts = _by_range(city_services, LocalEngine(), size)
    _check_ranges(city_services, whole, parts, size)
    # A range of several never keeps a summary: it would stand for some persons only. One
    # range for everyone is a whole read, which does.
    assert any(folder.rglob("*")) == (summarised or len(parts) == 1)


@pytest.mark.parametrize("size", [37, 1000])
def test_spark_gives_the_snapshot_range_by_range(
    city_services: Services, spark: FeatureEngine, size: int
) -> None:
    with session_scope(city_services.sessions) as session:
        whole = _snapshot(city_services, session, LocalEngine())
    parts = _by_range(city_services, spark, size)
    _check_ranges(city_services, whole, parts, size)
    # Every dead person's traces after their death came back with their range.
    assert sum(int(p.post_death.sum()) for p in parts) == int(whole.post_death.sum()) > 0


def test_the_corrections_are_in_the_store(city_services: Services) -> None:
    # Six correction rows over four records: what the equalities above read through.
    with session_scope(city_services.sessions) as session:
        parts = session.scalars(select(EvidencePart).where(EvidencePart.source == "transit"))
        raw = pa.concat_tables(
            [pq.read_table(city_services.store.path_of(p), columns=["correction"]) for p in parts]
        )
    assert pc.sum(raw["correction"]).as_py() == 6


def test_the_settings_choose_the_engine(tmp_path: Path) -> None:
    local = Services(Settings(evidence_dir=tmp_path, database_url="sqlite://"))
    assert local.store.engine is None  # the local engine, with its caches
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip("PySpark is not installed")
    chosen = Services(Settings(evidence_dir=tmp_path, engine="spark", spark_master="local[1]"))
    assert chosen.store.engine is not None
    assert chosen.store.engine.name == "spark"  # no Spark session is started to say so


def _without_pyspark(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make PySpark look uninstalled."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyspark" else find_spec(name, *a),
    )


def test_without_pyspark_the_spark_engine_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str]
) -> None:
    _without_pyspark(monkeypatch)
    with pytest.raises(ConfigurationError, match=r"pip install 'liveness\[spark\]'"):
        spark_engine(master="local[2]", evidence_url=None, shuffle_partitions=2)
    assert invoke_cli(cli_env, "db", "upgrade")[0] == 0
    code, output = invoke_cli(
        {**cli_env, "LIVENESS_ENGINE": "spark"}, "run", "--as-of", "2025-06-30"
    )
    assert code == 10
    assert "pip install 'liveness[spark]'" in output
