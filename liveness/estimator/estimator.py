"""The scikit-learn estimator of P(alive), and the review priority it gives."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from liveness.estimator.config import EstimatorConfig
from liveness.estimator.dataset import EstimatorError

__all__ = ["ALIVE", "alive_probability", "build_estimator", "fit_estimator", "rank_reviews"]

ALIVE = 1


def build_estimator(*, config: EstimatorConfig) -> CalibratedClassifierCV:
    """Return an unfitted, calibrated pipeline built from the configuration's parameters."""
    if config.kind == "logistic":
        pipeline = Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "classify",
                    LogisticRegression(C=config.logistic_c, max_iter=1000),
                ),
            ]
        )
    else:
        pipeline = Pipeline(
            [
                (
                    "classify",
                    HistGradientBoostingClassifier(
                        learning_rate=config.learning_rate,
                        max_iter=config.max_iter,
                        max_leaf_nodes=config.max_leaf_nodes,
                        l2_regularization=config.l2_regularization,
                        random_state=config.random_state,
                    ),
                )
            ]
        )
    folds = StratifiedKFold(
        n_splits=config.calibration_folds, shuffle=True, random_state=config.random_state
    )
    return CalibratedClassifierCV(pipeline, method=config.calibration, cv=folds)


def fit_estimator(
    *, features: pd.DataFrame, alive: npt.NDArray[np.int8], config: EstimatorConfig
) -> CalibratedClassifierCV:
    """Fit a calibrated estimator, refusing data too thin to calibrate on."""
    deaths = int((alive == 0).sum())
    if deaths < config.calibration_folds or int((alive == 1).sum()) < config.calibration_folds:
        raise EstimatorError(
            f"{deaths} deaths among {len(alive):,} training persons: calibration needs at least "
            f"{config.calibration_folds} of each outcome; choose an earlier date or a longer "
            "horizon"
        )
    return build_estimator(config=config).fit(features, alive)


def alive_probability(
    estimator: CalibratedClassifierCV, features: pd.DataFrame
) -> npt.NDArray[np.float64]:
    """Return P(alive) per row, read from the column of ``classes_`` that is alive."""
    column = int(np.flatnonzero(estimator.classes_ == ALIVE)[0])
    return np.asarray(estimator.predict_proba(features)[:, column], dtype=np.float64)


def rank_reviews(
    *,
    person_id: npt.NDArray[np.int64],
    p_alive: npt.NDArray[np.float64],
    monthly_amount: npt.NDArray[np.float64],
) -> pd.DataFrame:
    """Return a review priority per person: the expected monthly payment to a dead person.

    Only orders the queue the rules opened: it never opens, closes or suspends anything.
    Rank 1 is visited first; ties keep the input order.
    """
    priority = (1.0 - np.clip(p_alive, 0.0, 1.0)) * np.asarray(monthly_amount, dtype=np.float64)
    order = np.argsort(-priority, kind="stable")
    rank = np.empty(len(priority), dtype=np.int64)
    rank[order] = np.arange(1, len(priority) + 1)
    return pd.DataFrame(
        {"person_id": person_id, "p_alive": p_alive, "priority": priority, "rank": rank}
    )
