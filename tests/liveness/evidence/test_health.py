from pathlib import Path

import pandas as pd
import pytest

from liveness.errors import ConfigurationError
from liveness.evidence.health import HealthPolicy, degraded_days, load_health_policy
from tests.liveness.conftest import REPO

POLICY = HealthPolicy(
    version="t", trailing_days=28, collapse_ratio=0.3, min_history_days=7, min_median_volume=50
)


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
    assert load_health_policy(REPO / "config" / "health.toml").trailing_days > 0
    bad = tmp_path / "health.toml"
    bad.write_text(
        "trailing_days = 28\ncollapse_ratio = 3\nmin_history_days = 7\nmin_median_volume = 5\n"
    )
    with pytest.raises(ConfigurationError, match="collapse_ratio"):
        load_health_policy(bad)
