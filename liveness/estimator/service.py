"""Train, save and evaluate the estimator in the caller's transaction; the demo's evaluation."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from liveness.certification.run import RunPolicies
from liveness.db import session_scope
from liveness.estimator.artifacts import load_artifact, save_artifact
from liveness.estimator.config import EstimatorConfig, load_estimator_config
from liveness.estimator.dataset import (
    Dataset,
    EstimatorError,
    build_dataset,
    feature_names,
    held_out,
)
from liveness.estimator.estimator import fit_estimator
from liveness.estimator.evaluation import EvaluationReport, evaluate
from liveness.evidence.snapshot import EvidenceSnapshot
from liveness.evidence.store import EvidenceStore
from liveness.services import Services
from liveness.settings import Settings
from models import EstimatorArtifact

__all__ = [
    "TrainingResult",
    "demo_evaluation",
    "estimator_config",
    "evaluate_artifact",
    "train_estimator",
]


@dataclass(frozen=True)
class TrainingResult:
    """The saved artifact's row and the held-out evaluation made at training."""

    artifact: EstimatorArtifact
    report: EvaluationReport


def estimator_config(settings: Settings) -> EstimatorConfig:
    """Load ``estimator.toml`` from the configuration folder."""
    return load_estimator_config(settings.config_dir / "estimator.toml")


def train_estimator(
    session: Session,
    *,
    as_of: dt.date,
    horizon_days: int | None = None,
    store: EvidenceStore,
    policies: RunPolicies,
    config: EstimatorConfig,
    folder: Path,
) -> TrainingResult:
    """Fit on the persons not held out as of ``as_of``, evaluate the rest, save the artifact."""
    horizon = config.horizon_days if horizon_days is None else horizon_days
    dataset, test = _held_out_dataset(
        session, as_of=as_of, horizon_days=horizon, store=store, policies=policies, config=config
    )
    estimator = fit_estimator(
        features=dataset.features[~test], alive=dataset.alive[~test], config=config
    )
    report = evaluate(
        estimator=estimator, dataset=dataset, test=test, scoring=policies.scoring, config=config,
        trained_as_of=as_of,
    )  # fmt: skip
    artifact = save_artifact(
        session, estimator=estimator, folder=folder, trained_as_of=as_of, horizon_days=horizon,
        feature_names=list(dataset.features.columns),
        metrics=_stored_metrics(report, training_alive=dataset.alive[~test], config=config),
        policy_version=policies.scoring.version,
    )  # fmt: skip
    return TrainingResult(
        artifact=artifact, report=dataclasses.replace(report, artifact_version=artifact.version)
    )


def _held_out_dataset(
    session: Session,
    *,
    as_of: dt.date,
    horizon_days: int,
    store: EvidenceStore,
    policies: RunPolicies,
    config: EstimatorConfig,
    snapshots: dict[dt.date, EvidenceSnapshot] | None = None,
) -> tuple[Dataset, npt.NDArray[np.bool_]]:
    """Build the dataset as of a day; return it with its held-out persons marked."""
    dataset = build_dataset(
        session, as_of=as_of, horizon_days=horizon_days, store=store, scoring=policies.scoring,
        health=policies.health, age=config.age, snapshots=snapshots,
    )  # fmt: skip
    test = held_out(
        person_ref=dataset.person_ref, alive=dataset.alive, share=config.test_share,
        salt=config.salt,
    )  # fmt: skip
    return dataset, test


def _stored_metrics(
    report: EvaluationReport, *, training_alive: npt.NDArray[np.int8], config: EstimatorConfig
) -> dict[str, Any]:
    """Return what an artifact's row keeps of its training: metrics first, then the detail."""
    detail = report.as_dict()
    return {
        **detail.pop("metrics"),
        "held_out": detail,
        "training_persons": len(training_alive),
        "training_dead": int((training_alive == 0).sum()),
        "estimator_config_version": config.version,
    }


def evaluate_artifact(
    session: Session,
    *,
    as_of: dt.date,
    version: str | None = None,
    store: EvidenceStore,
    policies: RunPolicies,
    config: EstimatorConfig,
) -> EvaluationReport:
    """Evaluate a saved artifact (the latest by default) on the held-out persons as of a date.

    The held-out persons are chosen as at training (same salt and share), so persons the
    artifact learned from stay out, except those whose outcome changed class since.
    """
    loaded = load_artifact(session, version=version)
    row = loaded.row
    expected = feature_names(policy=policies.scoring, age=config.age)
    if list(row.feature_names) != expected:
        raise EstimatorError(
            f"artifact {row.version} was trained on other features than the current scoring "
            "policy gives: train a new one"
        )
    dataset, test = _held_out_dataset(
        session, as_of=as_of, horizon_days=row.horizon_days, store=store, policies=policies,
        config=config,
    )  # fmt: skip
    report = evaluate(
        estimator=loaded.estimator, dataset=dataset, test=test, scoring=policies.scoring,
        config=config, artifact_version=row.version, trained_as_of=row.trained_as_of,
    )  # fmt: skip
    if row.policy_version != policies.scoring.version:
        report.notes.append(
            f"trained under scoring policy {row.policy_version}, evaluated under "
            f"{policies.scoring.version}: feature weights may differ"
        )
    return report


def demo_evaluation(
    services: Services, *, train_as_of: dt.date, evaluate_as_of: dt.date, horizon_days: int
) -> EvaluationReport:
    """Fit on the demo city as of one day, evaluate held-out persons as of another; save none."""
    config = estimator_config(services.settings)
    policies = services.policies
    snapshots: dict[dt.date, EvidenceSnapshot] = {}
    with session_scope(services.sessions) as session:
        training, train_test = _held_out_dataset(
            session, as_of=train_as_of, horizon_days=horizon_days, store=services.store,
            policies=policies, config=config, snapshots=snapshots,
        )  # fmt: skip
        estimator = fit_estimator(
            features=training.features[~train_test], alive=training.alive[~train_test],
            config=config,
        )  # fmt: skip
        evaluation, test = (
            (training, train_test)
            if evaluate_as_of == train_as_of
            else _held_out_dataset(
                session, as_of=evaluate_as_of, horizon_days=horizon_days, store=services.store,
                policies=policies, config=config, snapshots=snapshots,
            )
        )  # fmt: skip
        return evaluate(
            estimator=estimator, dataset=evaluation, test=test, scoring=policies.scoring,
            config=config, trained_as_of=train_as_of,
        )  # fmt: skip
