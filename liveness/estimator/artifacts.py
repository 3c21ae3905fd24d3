"""Artifacts: fitted estimators saved with joblib, versioned by their bytes, listed in the DB.

Files go to ``<evidence_dir>/../artifacts/estimator-<version>.joblib`` (``artifacts_dir``):
beside the evidence store, so one data folder holds everything a deployment produced,
without a setting of its own. The version is the first 12 hex characters of the SHA-256 of
the file; loading checks it, so a file changed after training is refused. joblib files are
pickles: load only artifacts this engine wrote into its own folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
from sklearn.calibration import CalibratedClassifierCV
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.estimator.dataset import EstimatorError
from liveness.settings import Settings
from models import EstimatorArtifact

__all__ = ["LoadedArtifact", "artifacts_dir", "load_artifact", "save_artifact"]


@dataclass(frozen=True)
class LoadedArtifact:
    """A fitted estimator and the database row describing it."""

    row: EstimatorArtifact
    estimator: CalibratedClassifierCV


def artifacts_dir(settings: Settings) -> Path:
    """Return the folder of estimator artifacts, next to the evidence store."""
    return settings.evidence_dir.resolve().parent / "artifacts"


def save_artifact(
    session: Session,
    *,
    estimator: CalibratedClassifierCV,
    folder: Path,
    trained_as_of: dt.date,
    horizon_days: int,
    feature_names: list[str],
    metrics: dict[str, Any],
    policy_version: str,
) -> EstimatorArtifact:
    """Write the estimator's file atomically and add (or find) its row; flush, never commit."""
    buffer = io.BytesIO()
    joblib.dump({"estimator": estimator, "feature_names": feature_names}, buffer)
    data = buffer.getvalue()
    version = hashlib.sha256(data).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"estimator-{version}.joblib"
    temporary = final.with_suffix(".joblib.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, final)
    existing = session.scalar(select(EstimatorArtifact).where(EstimatorArtifact.version == version))
    if existing is not None:
        return existing
    row = EstimatorArtifact(
        version=version,
        path=str(final),
        trained_as_of=trained_as_of,
        horizon_days=horizon_days,
        feature_names=list(feature_names),
        metrics=metrics,
        policy_version=policy_version,
    )
    session.add(row)
    session.flush()
    return row


def load_artifact(session: Session, *, version: str | None = None) -> LoadedArtifact:
    """Load the given artifact version, or the latest saved, after checking its bytes."""
    query = select(EstimatorArtifact)
    if version is None:
        query = query.order_by(EstimatorArtifact.created_at.desc(), EstimatorArtifact.id.desc())
    else:
        query = query.where(EstimatorArtifact.version == version)
    row = session.scalars(query.limit(1)).first()
    if row is None:
        raise EstimatorError(
            "no estimator artifact saved yet: run `liveness classifier train` first"
            if version is None
            else f"no estimator artifact of version {version!r}"
        )
    try:
        data = Path(row.path).read_bytes()
    except FileNotFoundError:
        raise EstimatorError(f"artifact {row.version}: file {row.path} is missing") from None
    if hashlib.sha256(data).hexdigest()[:12] != row.version:
        raise EstimatorError(f"artifact {row.version}: {row.path} changed since it was saved")
    payload = joblib.load(io.BytesIO(data))
    if list(payload["feature_names"]) != list(row.feature_names):
        raise EstimatorError(f"artifact {row.version}: its file and row disagree on features")
    return LoadedArtifact(row=row, estimator=payload["estimator"])
