"""The learned estimator of P(alive): a calibrated scikit-learn classifier over rule features.

Guardrails. The estimator ranks review queues (``rank_reviews``); the rules in
``liveness.scoring`` stay the hard guardrails. Where the operator enables it (estimator.toml
``[certify]``), the nightly run may also certify silently with it, within guardrails, and
review early whoever it finds unlikely alive (``liveness.certification.workflow.estimate``).
A probability alone never suspends or lowers anyone: suspension still needs matched death
evidence, a review outcome, or a certification lapsed past its notice period.

It trains on the same features the rules use (``take_snapshot``), labelled from outcomes
known later (death records, face passes; see ``liveness.estimator.dataset`` for the label
definition and its bias), and is evaluated on held-out persons beside the rules. Fitted
estimators are saved as versioned artifacts (``liveness.estimator.artifacts``).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liveness.estimator.artifacts import (
        LoadedArtifact,
        artifacts_dir,
        load_artifact,
        save_artifact,
    )
    from liveness.estimator.config import EstimatorConfig, load_estimator_config
    from liveness.estimator.dataset import (
        Dataset,
        EstimatorError,
        build_dataset,
        feature_frame,
        feature_names,
        held_out,
        label_persons,
    )
    from liveness.estimator.estimator import (
        alive_probability,
        build_estimator,
        fit_estimator,
        rank_reviews,
    )
    from liveness.estimator.evaluation import EvaluationReport, evaluate, probability_levels
    from liveness.estimator.service import (
        TrainingResult,
        demo_evaluation,
        estimator_config,
        evaluate_artifact,
        train_estimator,
    )

# Where each public name lives: the package loads scikit-learn only when a name is first used,
# so that the command line (which lists `liveness classifier`) starts without it.
_HOMES = {
    "Dataset": "dataset",
    "EstimatorConfig": "config",
    "EstimatorError": "dataset",
    "EvaluationReport": "evaluation",
    "LoadedArtifact": "artifacts",
    "TrainingResult": "service",
    "alive_probability": "estimator",
    "artifacts_dir": "artifacts",
    "build_dataset": "dataset",
    "build_estimator": "estimator",
    "demo_evaluation": "service",
    "estimator_config": "service",
    "evaluate": "evaluation",
    "evaluate_artifact": "service",
    "feature_frame": "dataset",
    "feature_names": "dataset",
    "fit_estimator": "estimator",
    "held_out": "dataset",
    "label_persons": "dataset",
    "load_artifact": "artifacts",
    "load_estimator_config": "config",
    "probability_levels": "evaluation",
    "rank_reviews": "estimator",
    "save_artifact": "artifacts",
    "train_estimator": "service",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that holds `name` on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "Dataset",
    "EstimatorConfig",
    "EstimatorError",
    "EvaluationReport",
    "LoadedArtifact",
    "TrainingResult",
    "alive_probability",
    "artifacts_dir",
    "build_dataset",
    "build_estimator",
    "demo_evaluation",
    "estimator_config",
    "evaluate",
    "evaluate_artifact",
    "feature_frame",
    "feature_names",
    "fit_estimator",
    "held_out",
    "label_persons",
    "load_artifact",
    "load_estimator_config",
    "probability_levels",
    "rank_reviews",
    "save_artifact",
    "train_estimator",
]
