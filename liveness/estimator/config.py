"""The estimator's configuration read from ``config/estimator.toml``, versioned by its hash."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from liveness.errors import ConfigurationError

__all__ = ["EstimatorConfig", "load_estimator_config", "parse_estimator_config"]

_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "labels": {"horizon_days": int},
    "features": {"age": bool},
    "split": {"test_share": (float, int), "salt": str},
    "estimator": {
        "kind": str,
        "calibration": str,
        "calibration_folds": int,
        "learning_rate": (float, int),
        "max_iter": int,
        "max_leaf_nodes": int,
        "l2_regularization": (float, int),
        "logistic_c": (float, int),
        "random_state": int,
    },
    "thresholds": {"strong": (float, int), "weak": (float, int)},
}


@dataclass(frozen=True)
class EstimatorConfig:
    """Hold the estimator's labels, split, hyper-parameters and probability bands."""

    version: str
    horizon_days: int
    age: bool
    test_share: float
    salt: str
    kind: Literal["gradient_boosting", "logistic"]
    calibration: Literal["isotonic", "sigmoid"]
    calibration_folds: int
    learning_rate: float
    max_iter: int
    max_leaf_nodes: int
    l2_regularization: float
    logistic_c: float
    random_state: int
    threshold_strong: float
    threshold_weak: float


def load_estimator_config(path: Path) -> EstimatorConfig:
    """Read and validate the estimator configuration file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: estimator configuration not found") from None
    return parse_estimator_config(data, origin=str(path))


def parse_estimator_config(data: bytes, *, origin: str = "<estimator>") -> EstimatorConfig:
    """Parse and validate the bytes of an estimator configuration file."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{origin}: not valid UTF-8 TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for table, keys in _KEYS.items():
        section = doc.get(table)
        if not isinstance(section, dict):
            raise ConfigurationError(f"{origin}: {table}: missing table")
        for key in section:
            if key not in keys:
                raise ConfigurationError(f"{origin}: {table}.{key}: unknown key")
        for key, kind in keys.items():
            value = section.get(key)
            # bool is an int subclass: `max_iter = true` must not become 1.
            wrong_bool = isinstance(value, bool) and kind is not bool
            if value is None or wrong_bool or not isinstance(value, kind):
                raise ConfigurationError(f"{origin}: {table}.{key}: missing or of the wrong type")
            values[f"{table}.{key}"] = value
    config = EstimatorConfig(
        version=hashlib.sha256(data).hexdigest()[:12],
        horizon_days=values["labels.horizon_days"],
        age=values["features.age"],
        test_share=float(values["split.test_share"]),
        salt=values["split.salt"],
        kind=values["estimator.kind"],
        calibration=values["estimator.calibration"],
        calibration_folds=values["estimator.calibration_folds"],
        learning_rate=float(values["estimator.learning_rate"]),
        max_iter=values["estimator.max_iter"],
        max_leaf_nodes=values["estimator.max_leaf_nodes"],
        l2_regularization=float(values["estimator.l2_regularization"]),
        logistic_c=float(values["estimator.logistic_c"]),
        random_state=values["estimator.random_state"],
        threshold_strong=float(values["thresholds.strong"]),
        threshold_weak=float(values["thresholds.weak"]),
    )
    _check(config, origin)
    return config


def _check(config: EstimatorConfig, origin: str) -> None:
    problems = [
        (config.horizon_days >= 1, "labels.horizon_days must be >= 1"),
        (0 < config.test_share < 1, "split.test_share must be in (0, 1)"),
        (config.kind in ("gradient_boosting", "logistic"), "estimator.kind: unknown kind"),
        (config.calibration in ("isotonic", "sigmoid"), "estimator.calibration: unknown method"),
        (config.calibration_folds >= 2, "estimator.calibration_folds must be >= 2"),
        (config.max_iter >= 1 and config.max_leaf_nodes >= 2, "estimator: bad tree sizes"),
        (config.learning_rate > 0 and config.logistic_c > 0, "estimator: rates must be > 0"),
        (
            0 < config.threshold_weak <= config.threshold_strong <= 1,
            "thresholds: need 0 < weak <= strong <= 1",
        ),
    ]
    for ok, message in problems:
        if not ok:
            raise ConfigurationError(f"{origin}: {message}")
