"""The estimator's configuration read from ``config/estimator.toml``, versioned by its hash."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from liveness.policy_files import (
    PolicyFile,
    PolicyModel,
    Texts,
    parse_policy_file,
    read_policy_file,
    validate_policy,
)

__all__ = ["EstimatorConfig", "load_estimator_config", "parse_estimator_config"]


class LabelsTable(PolicyModel):
    """How persons are labelled alive or dead."""

    horizon_days: int = Field(ge=1)


class FeaturesTable(PolicyModel):
    """Which features beside the rules' evidence the estimator sees."""

    age: bool


class SplitTable(PolicyModel):
    """How persons are held out for testing."""

    test_share: float = Field(gt=0, lt=1)
    salt: str


class EstimatorTable(PolicyModel):
    """The estimator's kind, calibration and hyper-parameters."""

    kind: Literal["gradient_boosting", "logistic"]
    calibration: Literal["isotonic", "sigmoid"]
    calibration_folds: int = Field(ge=2)
    learning_rate: float = Field(gt=0)
    max_iter: int = Field(ge=1)
    max_leaf_nodes: int = Field(ge=2)
    l2_regularization: float
    logistic_c: float = Field(gt=0)
    random_state: int


class ThresholdsTable(PolicyModel):
    """Bands of P(alive) for the confusion beside the rules' levels."""

    strong: float
    weak: float

    @model_validator(mode="after")
    def _in_order(self) -> ThresholdsTable:
        if not 0 < self.weak <= self.strong <= 1:
            raise ValueError("need 0 < weak <= strong <= 1")
        return self


class CertifyTable(PolicyModel):
    """Whether the nightly run may certify on P(alive), and its guardrails."""

    enabled: bool = False
    min_probability: float = Field(default=0.995, gt=0.5, le=1)
    min_roc_auc: float = Field(default=0.7, ge=0.5, le=1)
    own_body_kinds: Texts = ()
    own_body_days: int = Field(default=60, ge=1)

    @field_validator("own_body_kinds")
    @classmethod
    def _source_dot_kind(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        for kind in kinds:
            if kind.count(".") != 1 or not all(kind.split(".")):
                raise ValueError(f"{kind!r} is not source.kind")
        return kinds


class ReviewTable(PolicyModel):
    """When a low P(alive) opens a review before the cycle is due (where certify is enabled)."""

    below_probability: float = Field(default=0.0, ge=0, lt=1)


class EstimatorFile(PolicyModel):
    """The tables of config/estimator.toml."""

    labels: LabelsTable
    features: FeaturesTable
    split: SplitTable
    estimator: EstimatorTable
    thresholds: ThresholdsTable
    certify: CertifyTable = CertifyTable()
    review: ReviewTable = ReviewTable()


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
    # The nightly run: off unless enabled; then it certifies silently at or above
    # `certify_min_probability` those with a trace of an `own_body_kinds` kind in the last
    # `own_body_days`, and opens a risk review below `review_below_probability`.
    certify_enabled: bool = False
    certify_min_probability: float = 0.995
    # An artifact whose held-out ROC AUC (at training) is below this is not used at all.
    certify_min_roc_auc: float = 0.7
    own_body_kinds: tuple[str, ...] = ()
    own_body_days: int = 60
    review_below_probability: float = 0.0


def load_estimator_config(path: Path) -> EstimatorConfig:
    """Read and validate the estimator configuration file."""
    policy_file = read_policy_file(path, what="estimator configuration")
    return _config(policy_file)


def parse_estimator_config(data: bytes, *, origin: str = "<estimator>") -> EstimatorConfig:
    """Parse and validate the bytes of an estimator configuration file."""
    return _config(parse_policy_file(data, origin=origin))


def _config(policy_file: PolicyFile) -> EstimatorConfig:
    values = validate_policy(policy_file.document, EstimatorFile, origin=policy_file.path)
    return EstimatorConfig(
        version=policy_file.version,
        horizon_days=values.labels.horizon_days,
        age=values.features.age,
        # The split's and the estimator's keys are the config's fields of the same names.
        **values.split.model_dump(),
        **values.estimator.model_dump(),
        threshold_strong=values.thresholds.strong,
        threshold_weak=values.thresholds.weak,
        certify_enabled=values.certify.enabled,
        certify_min_probability=values.certify.min_probability,
        certify_min_roc_auc=values.certify.min_roc_auc,
        own_body_kinds=values.certify.own_body_kinds,
        own_body_days=values.certify.own_body_days,
        review_below_probability=values.review.below_probability,
    )
