"""Artifacts on both backends: the file, its row, and the same predictions after loading."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sqlalchemy.orm import Session

from liveness.estimator import (
    EstimatorError,
    alive_probability,
    build_estimator,
    load_artifact,
    load_estimator_config,
    save_artifact,
)
from tests.liveness.conftest import REPO


def _fitted() -> tuple[CalibratedClassifierCV, pd.DataFrame]:
    rng = np.random.default_rng(3)
    features = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    alive = (features["a"] + rng.normal(scale=0.5, size=300) > -1.2).astype(np.int8).to_numpy()
    config = load_estimator_config(REPO / "config" / "estimator.toml")
    return build_estimator(config=config).fit(features, alive), features


def test_the_estimator_follows_the_sklearn_contract() -> None:
    config = load_estimator_config(REPO / "config" / "estimator.toml")
    estimator = build_estimator(config=config)
    assert clone(estimator).get_params().keys() == estimator.get_params().keys()
    assert not [name for name in vars(estimator) if name.endswith("_")]
    fitted, features = _fitted()
    p = alive_probability(fitted, features)
    assert ((p >= 0) & (p <= 1)).all()
    # P(alive) is the column of class 1, whatever the order of classes_.
    assert np.corrcoef(p, features["a"])[0, 1] > 0.5


def test_artifact_round_trip(session: Session, tmp_path: Path) -> None:
    estimator, features = _fitted()
    row = save_artifact(
        session, estimator=estimator, folder=tmp_path, trained_as_of=dt.date(2025, 3, 1),
        horizon_days=90, feature_names=["a", "b", "c"], metrics={"estimator": {"roc_auc": 0.9}},
        policy_version="abc",
    )  # fmt: skip
    assert Path(row.path) == tmp_path / f"estimator-{row.version}.joblib"
    loaded = load_artifact(session)
    assert loaded.row.version == row.version
    assert loaded.row.metrics["estimator"]["roc_auc"] == 0.9
    assert loaded.row.feature_names == ["a", "b", "c"]
    np.testing.assert_array_equal(
        alive_probability(loaded.estimator, features),
        alive_probability(estimator, features),
    )
    Path(row.path).write_bytes(Path(row.path).read_bytes() + b"x")
    with pytest.raises(EstimatorError, match="changed"):
        load_artifact(session, version=row.version)
    with pytest.raises(EstimatorError, match="no estimator artifact"):
        load_artifact(session, version="nope")
