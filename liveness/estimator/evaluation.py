"""Held-out evaluation of the estimator beside the rule policy on the same persons."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import brier_score_loss, roc_auc_score

from liveness.estimator.config import EstimatorConfig
from liveness.estimator.dataset import Dataset
from liveness.estimator.estimator import alive_probability
from liveness.scoring import LEVELS, NO_LEVEL, ScoringPolicy, benefit_type_codes, grade

__all__ = ["BANDS", "EvaluationReport", "calibration_table", "evaluate", "probability_levels"]

BANDS = 10
_CONFUSION_LEVELS = ("strong", "medium", "weak", "deceased")


@dataclass(frozen=True)
class EvaluationReport:
    """Metrics of the estimator and of the rules on the same held-out persons.

    ``metrics`` maps "estimator" and "rules" to ROC AUC and Brier score (with P(alive) as
    the score, the rules' score standing in for it); ``calibration`` has one row per
    equal-count band of predicted P(alive); ``confusion`` counts persons by level and outcome.
    """

    as_of: dt.date
    horizon_days: int
    persons: int
    dead: int
    confirmed_alive: int
    metrics: dict[str, dict[str, float]]
    calibration: pd.DataFrame
    confusion: pd.DataFrame
    thresholds: dict[str, float]
    artifact_version: str | None = None
    trained_as_of: dt.date | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data."""

        def number(value: float) -> float | None:
            return None if math.isnan(value) else round(float(value), 6)

        return {
            "as_of": self.as_of.isoformat(),
            "horizon_days": self.horizon_days,
            "artifact_version": self.artifact_version,
            "trained_as_of": None if self.trained_as_of is None else self.trained_as_of.isoformat(),
            "persons": self.persons,
            "dead": self.dead,
            "confirmed_alive": self.confirmed_alive,
            "metrics": {
                who: {name: number(value) for name, value in values.items()}
                for who, values in self.metrics.items()
            },
            "calibration": [
                {
                    "band": int(row.band),
                    "persons": int(row.persons),
                    "mean_predicted": number(row.mean_predicted),
                    "observed_alive": number(row.observed_alive),
                }
                for row in self.calibration.itertuples(index=False)
            ],
            "confusion": {
                level: {column: int(value) for column, value in row.items()}
                for level, row in self.confusion.iterrows()
            },
            "thresholds": self.thresholds,
            "notes": self.notes,
        }

    def render(self, console: Console) -> None:
        """Print the report as Rich tables: metrics, calibration, confusion."""
        origin = "" if self.artifact_version is None else f", artifact {self.artifact_version}"
        metrics = Table(
            title=f"estimator beside the rules: held-out persons as of {self.as_of}, "
            f"deaths within {self.horizon_days} days{origin}"
        )
        metrics.add_column("figure")
        metrics.add_column("estimator", justify="right")
        metrics.add_column("rules", justify="right")
        metrics.add_row("held-out persons", f"{self.persons:,}", f"{self.persons:,}")
        metrics.add_row("  of whom dead (by record)", f"{self.dead:,}", f"{self.dead:,}")
        for name, label in (("roc_auc", "ROC AUC (higher is better)"),
                            ("brier", "Brier score (lower is better)")):  # fmt: skip
            metrics.add_row(
                label,
                _fmt(self.metrics["estimator"][name]),
                _fmt(self.metrics["rules"][name]),
            )
        console.print(metrics)

        calibration = Table(title="calibration of P(alive), equal-count bands")
        for column in ("band", "persons", "mean predicted", "observed alive"):
            calibration.add_column(column, justify="right")
        for row in self.calibration.itertuples(index=False):
            calibration.add_row(
                str(row.band), f"{row.persons:,}", _fmt(row.mean_predicted),
                _fmt(row.observed_alive),
            )  # fmt: skip
        console.print(calibration)

        strong, weak = self.thresholds["strong"], self.thresholds["weak"]
        confusion = Table(
            title=f"levels against outcomes (estimator: strong >= {strong}, weak < {weak})"
        )
        confusion.add_column("level")
        for column in self.confusion.columns:
            confusion.add_column(column.replace("_", " "), justify="right")
        for level, row in self.confusion.iterrows():
            confusion.add_row(str(level), *(f"{int(v):,}" for v in row.to_numpy()))
        console.print(confusion)
        for note in self.notes:
            console.print(f"[yellow]note:[/] {note}")


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def probability_levels(
    p_alive: npt.NDArray[np.float64], *, config: EstimatorConfig
) -> npt.NDArray[np.object_]:
    """Band P(alive) into strong / medium / weak at the configured thresholds."""
    return np.select(
        [p_alive >= config.threshold_strong, p_alive >= config.threshold_weak],
        np.array(["strong", "medium"], dtype=object),
        default=np.array("weak", dtype=object),
    ).astype(object)


def calibration_table(
    *, p_alive: npt.NDArray[np.float64], alive: npt.NDArray[np.int8], bands: int = BANDS
) -> pd.DataFrame:
    """Return mean predicted against observed P(alive) in equal-count bands, lowest first."""
    n = len(p_alive)
    # Ranks split ties between bands, so a calibrated estimator's few distinct values still
    # give equal-count bands rather than one band holding almost everyone.
    order = np.argsort(p_alive, kind="stable")
    band = np.empty(n, dtype=np.int64)
    band[order] = np.arange(n) * min(bands, max(n, 1)) // max(n, 1)
    frame = pd.DataFrame({"band": band + 1, "p": p_alive, "alive": alive.astype(float)})
    table = frame.groupby("band").agg(
        persons=("p", "size"), mean_predicted=("p", "mean"), observed_alive=("alive", "mean")
    )
    return table.reset_index()


def _metrics(alive: npt.NDArray[np.int8], score: npt.NDArray[np.float64]) -> dict[str, float]:
    both = len(np.unique(alive)) == 2
    return {
        "roc_auc": float(roc_auc_score(alive, score)) if both else math.nan,
        "brier": float(brier_score_loss(alive, np.clip(score, 0.0, 1.0), pos_label=1))
        if len(alive)
        else math.nan,
    }


# Long by design: the estimator and the rules scored side by side, then the caveats.
def evaluate(
    *,
    estimator: CalibratedClassifierCV,
    dataset: Dataset,
    test: npt.NDArray[np.bool_],
    scoring: ScoringPolicy,
    config: EstimatorConfig,
    artifact_version: str | None = None,
    trained_as_of: dt.date | None = None,
) -> EvaluationReport:
    """Evaluate the estimator and the rules on the held-out persons ``test`` of ``dataset``."""
    snapshot = dataset.snapshot
    grades = grade(
        features=snapshot.features, benefit_type=benefit_type_codes(snapshot.roll["benefit_type"]),
        death_day=snapshot.death_day, degraded=snapshot.degraded,
        previous_level=np.full(len(snapshot.roll), NO_LEVEL, dtype=np.int8), policy=scoring,
    )  # fmt: skip
    rows = dataset.rows[test]
    alive = dataset.alive[test]
    p_alive = alive_probability(estimator, dataset.features.iloc[np.flatnonzero(test)])
    rule_score = grades.score[rows].astype(np.float64)
    rule_level = np.asarray(LEVELS, dtype=object)[grades.level[rows]]
    ours = probability_levels(p_alive, config=config)

    outcome = np.where(alive == 1, "alive", "dead")
    columns = {
        "estimator_alive": (ours, "alive"),
        "estimator_dead": (ours, "dead"),
        "rules_alive": (rule_level, "alive"),
        "rules_dead": (rule_level, "dead"),
    }
    confusion = pd.DataFrame(
        {
            name: [int(((levels == lv) & (outcome == out)).sum()) for lv in _CONFUSION_LEVELS]
            for name, (levels, out) in columns.items()
        },
        index=pd.Index(_CONFUSION_LEVELS, name="level"),
    )
    # Known deaths are excluded from the persons, so "deceased" is empty unless something
    # is wrong; show it only then.
    if not confusion.loc["deceased"].any():
        confusion = confusion.drop(index="deceased")

    notes = []
    dead = int((alive == 0).sum())
    if dead < 10:
        notes.append(f"only {dead} deaths among the held-out persons: metrics are noisy")
    return EvaluationReport(
        as_of=dataset.as_of,
        horizon_days=dataset.horizon_days,
        persons=len(alive),
        dead=dead,
        confirmed_alive=int((dataset.confirmed[test] & (alive == 1)).sum()),
        metrics={"estimator": _metrics(alive, p_alive), "rules": _metrics(alive, rule_score)},
        calibration=calibration_table(p_alive=p_alive, alive=alive),
        confusion=confusion,
        thresholds={"strong": config.threshold_strong, "weak": config.threshold_weak},
        artifact_version=artifact_version,
        trained_as_of=trained_as_of,
        notes=notes,
    )
