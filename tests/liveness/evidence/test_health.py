import datetime as dt
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.orm import Session

from liveness.db import session_scope
from liveness.errors import ConfigurationError
from liveness.evidence.health import (
    HealthPolicy,
    degraded_days,
    load_health_policy,
    source_health,
)
from liveness.ingest.runner import ingest_paths
from liveness.services import Services
from models import SourceVolume
from tests.liveness.conftest import REPO

POLICY = HealthPolicy(
    version="t", trailing_days=28, collapse_ratio=0.3, min_history_days=7, min_median_volume=50,
    lag_days=dict.fromkeys(("transit", "card_txn", "medical", "face"), 0),
)  # fmt: skip


def default_policy() -> HealthPolicy:
    """Return the shipped health policy."""
    return load_health_policy(REPO / "config" / "health.toml")


@pytest.fixture(params=["sqlite", "postgresql"])
def services(
    request: pytest.FixtureRequest, services_factory: Callable[[str], Services]
) -> Services:
    return services_factory(request.param)


def _series(values: list[int]) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2025-01-01", periods=len(values), freq="D"))


def test_a_collapse_against_the_trailing_median_is_degraded() -> None:
    volumes = [1000] * 30 + [0, 0, 120, 900] + [1000] * 5
    flags = degraded_days(_series(volumes), policy=POLICY)
    assert list(flags[flags].index.day) == [31, 1, 2]  # 2025-01-31, 02-01, 02-02


def test_missing_days_count_as_silent() -> None:
    volumes = _series([1000] * 30 + [1000]).drop(pd.Timestamp("2025-01-20"))
    flags = degraded_days(volumes, policy=POLICY)
    assert list(flags[flags].index) == [pd.Timestamp("2025-01-20")]


def test_sparse_sources_and_short_histories_are_never_degraded() -> None:
    assert not degraded_days(_series([3, 0, 5, 0, 0, 4] * 10), policy=POLICY).any()
    assert not degraded_days(_series([1000] * 5 + [0]), policy=POLICY).any()


def test_the_default_policy_loads_and_a_bad_one_names_its_key(tmp_path: Path) -> None:
    assert default_policy().trailing_days > 0
    bad = tmp_path / "health.toml"
    bad.write_text(
        "trailing_days = 28\ncollapse_ratio = 3\nmin_history_days = 7\nmin_median_volume = 5\n"
    )
    with pytest.raises(ConfigurationError, match="collapse_ratio"):
        load_health_policy(bad)


def test_lag_days_are_validated(tmp_path: Path) -> None:
    policy = default_policy()
    # Each default covers how late the simulated city's deliveries land, with a margin.
    assert policy.lag_days["transit"] >= 3 and policy.lag_days["card_txn"] >= 3
    assert policy.lag_days["medical"] > 31 and policy.lag_days["face"] > 31
    base = (REPO / "config" / "health.toml").read_text()
    for bad, message in (
        (base.replace("medical = 38", "medical = -1"), "lag_days.medical"),
        (base.replace("face = 38", ""), "lag_days.face"),
        (base + "bus = 2\n", "lag_days.bus: unknown key"),
        (base.split("[lag_days]")[0], "lag_days: missing"),
    ):
        path = tmp_path / "health.toml"
        path.write_text(bad)
        with pytest.raises(ConfigurationError, match=message):
            load_health_policy(path)


SOURCES = ("transit", "card_txn", "medical", "face")


def _volumes(session: Session, source: str, first: dt.date, last: dt.date, traces: int) -> None:
    day = first
    while day <= last:
        session.add(SourceVolume(source=source, day=day, traces=traces))
        day += dt.timedelta(days=1)


def test_days_not_yet_due_are_not_judged(services: Services) -> None:
    policy = default_policy()
    as_of = dt.date(2025, 11, 18)
    with session_scope(services.sessions) as session:
        # An ordinary day: taps and card payments up to two days ago, the last day only in
        # part; medical settlements up to the end of last month, none yet of this month.
        _volumes(session, "transit", dt.date(2025, 6, 1), as_of - dt.timedelta(days=3), 1000)
        session.add(SourceVolume(source="transit", day=as_of - dt.timedelta(days=2), traces=40))
        _volumes(session, "card_txn", dt.date(2025, 6, 1), as_of - dt.timedelta(days=2), 500)
        _volumes(session, "medical", dt.date(2025, 6, 1), dt.date(2025, 10, 31), 300)
    with session_scope(services.sessions) as session:
        health = source_health(
            session, sources=SOURCES, first_day=as_of - dt.timedelta(days=89), last_day=as_of,
            policy=policy,
        )  # fmt: skip
        assert health.degraded == {source: [] for source in SOURCES}
        assert health.not_yet_due == {
            "transit": (dt.date(2025, 11, 16), as_of),
            "card_txn": (dt.date(2025, 11, 16), as_of),
            "medical": (dt.date(2025, 10, 12), as_of),
            "face": (dt.date(2025, 10, 12), as_of),
        }
        # The finding of issue 20: judged without lags, the same ordinary day is an outage.
        at_once = replace(policy, lag_days=dict.fromkeys(SOURCES, 0))
        finding = source_health(
            session, sources=SOURCES, first_day=as_of - dt.timedelta(days=89), last_day=as_of,
            policy=at_once,
        )  # fmt: skip
        assert finding.degraded["transit"][-2:] == [as_of - dt.timedelta(days=1), as_of]
        assert finding.degraded["medical"][0] == dt.date(2025, 11, 1)
        assert finding.not_yet_due == {}


def test_a_source_that_stops_delivering_is_silent_once_its_days_are_due(
    services: Services,
) -> None:
    policy = default_policy()
    with session_scope(services.sessions) as session:
        _volumes(session, "transit", dt.date(2025, 6, 1), dt.date(2025, 11, 5), 1000)
        # A day's collapse inside the due days is an outage as before.
        _volumes(session, "card_txn", dt.date(2025, 6, 1), dt.date(2025, 11, 17), 500)
        session.get_one(SourceVolume, ("card_txn", dt.date(2025, 10, 20))).traces = 30
    with session_scope(services.sessions) as session:

        def degraded(as_of: dt.date) -> dict[str, list[dt.date]]:
            return source_health(
                session, sources=SOURCES, first_day=as_of - dt.timedelta(days=89),
                last_day=as_of, policy=policy,
            ).degraded  # fmt: skip

        # Two days after the last delivery its lack is not yet news; then each due day is.
        assert degraded(dt.date(2025, 11, 7))["transit"] == []
        assert degraded(dt.date(2025, 11, 9))["transit"] == [dt.date(2025, 11, 6)]
        stopped = degraded(dt.date(2025, 11, 18))
        assert stopped["transit"] == [
            dt.date(2025, 11, 6) + dt.timedelta(days=d) for d in range(10)
        ]
        assert stopped["card_txn"] == [dt.date(2025, 10, 20)]


def test_an_ordinary_day_of_the_simulated_city_is_no_outage(city: Path, services: Services) -> None:
    # Judge the sparse medical settlements of this small city too.
    policy = replace(default_policy(), min_median_volume=10)
    as_of = dt.date(2025, 4, 30)

    def deliver(last_daily: dt.date, last_month: str) -> None:
        for source in ("registry", "cards"):
            ingest_paths(services, source=source, paths=[city / source])
        for source in ("transit", "card_txn"):
            files = sorted(
                path for path in (city / source).glob("*.csv")
                if path.name.split("_")[-1][:8] <= f"{last_daily:%Y%m%d}"
            )  # fmt: skip
            ingest_paths(services, source=source, paths=files)
        for source in ("medical", "face"):
            files = sorted(p for p in (city / source).glob("*.csv") if p.stem[-6:] <= last_month)
            ingest_paths(services, source=source, paths=files)

    def health(day: dt.date, health_policy: HealthPolicy = policy) -> dict[str, list[dt.date]]:
        with session_scope(services.sessions) as session:
            return source_health(
                session, sources=SOURCES, first_day=day - dt.timedelta(days=89), last_day=day,
                policy=health_policy,
            ).degraded  # fmt: skip

    # As of April 30: the taps and payments of the last two days, and April's medical
    # settlements and face checks, have not arrived yet.
    deliver(as_of - dt.timedelta(days=2), "202503")
    assert health(as_of) == {source: [] for source in SOURCES}
    at_once = health(as_of, replace(policy, lag_days=dict.fromkeys(SOURCES, 0)))
    assert at_once["transit"] and at_once["card_txn"] and at_once["medical"]
    # Every delivery up to May 28: the card feed's planted silence is still an outage.
    deliver(dt.date(2025, 5, 28), "202504")
    anomalies = json.loads((city / "anomalies.json").read_text())
    last = health(dt.date(2025, 5, 30))
    assert [day.isoformat() for day in last["card_txn"]] == anomalies["silent"]["days"]
    assert last["transit"] == last["medical"] == []
