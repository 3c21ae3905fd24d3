"""Artifacts of the learned estimator of P(alive): one row per saved file, with its metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Date, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class EstimatorArtifact(Base):
    """A fitted estimator saved to a file, versioned by the hash of the file's bytes."""

    __tablename__ = "estimator_artifacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    trained_as_of: Mapped[dt.date] = mapped_column(Date)
    horizon_days: Mapped[int] = mapped_column(Integer)
    feature_names: Mapped[list[Any]]
    metrics: Mapped[dict[str, Any]]
    policy_version: Mapped[str] = mapped_column(String(64))
