"""Source health: daily volumes against their trailing median, and the days that collapsed.

A day is judged only once its deliveries are due: each source delivers its days some days
late (`lag_days`), so the last days before a run are not yet silent, only not yet delivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, create_model
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.db import query_frame
from liveness.policy_files import PolicyModel, load_policy
from liveness.sources import traces_beside
from models import SourceVolume


@dataclass(frozen=True)
class HealthPolicy:
    """When a day's volume counts as a collapse of its source."""

    version: str
    trailing_days: int
    collapse_ratio: float
    min_history_days: int
    min_median_volume: int
    lag_days: Mapping[str, int]

    def due_through(self, source: str, as_of: dt.date) -> dt.date:
        """Return the last day of `source` whose deliveries are due by `as_of`."""
        return as_of - dt.timedelta(days=self.lag_days.get(source, 0))


class _HealthFile(PolicyModel):
    """The keys of config/health.toml but `lag_days`, whose keys are the trace sources."""

    trailing_days: int = Field(ge=1)
    collapse_ratio: float = Field(gt=0, lt=1)
    min_history_days: int = Field(ge=1)
    min_median_volume: int = Field(ge=1)


@lru_cache(maxsize=16)
def health_file(sources: tuple[str, ...]) -> type[PolicyModel]:
    """Return the model of config/health.toml: its lag table names exactly `sources`."""
    lag_days = create_model(
        "LagDays",
        __base__=PolicyModel,
        __doc__="Days after a day before its deliveries are due, for every trace source.",
        **{source: (int, Field(ge=0)) for source in sources},  # type: ignore[call-overload]
    )
    return create_model("HealthFile", __base__=_HealthFile, lag_days=(lag_days, ...))


def load_health_policy(path: Path, *, sources: tuple[str, ...] | None = None) -> HealthPolicy:
    """Read and validate config/health.toml; its lags name every trace source of `sources`.

    By default, those of the sources.toml beside the file (else the shipped ones).
    """
    names = tuple(traces_beside(path)) if sources is None else sources
    loaded = load_policy(path, health_file(names), what="source health policy")
    values: Any = loaded.model
    return HealthPolicy(
        version=loaded.version,
        trailing_days=values.trailing_days,
        collapse_ratio=values.collapse_ratio,
        min_history_days=values.min_history_days,
        min_median_volume=values.min_median_volume,
        lag_days=values.lag_days.model_dump(),
    )


def degraded_days(volumes: pd.Series, *, policy: HealthPolicy) -> pd.Series:
    """Mark each day of a daily volume series (missing days are zero) that collapsed."""
    if volumes.empty:
        return pd.Series(dtype=bool, index=pd.DatetimeIndex([]))
    index = pd.date_range(volumes.index.min(), volumes.index.max(), freq="D")
    daily = volumes.reindex(index, fill_value=0).astype(float)
    trailing = daily.shift(1).rolling(policy.trailing_days, min_periods=policy.min_history_days)
    median = trailing.median()
    judged = median >= max(policy.min_median_volume, 1)
    collapsed = judged & (daily < policy.collapse_ratio * median)
    return collapsed.fillna(False).astype(bool)


@dataclass(frozen=True)
class SourceHealth:
    """Per source: its degraded days, and the days its deliveries are not yet due for.

    `not_yet_due` holds, for each source with a lag, the first and the last day that were not
    judged (the days after the run's day less the source's lag, up to the run's day).
    """

    degraded: dict[str, list[dt.date]]
    not_yet_due: dict[str, tuple[dt.date, dt.date]]


def source_health(
    session: Session,
    *,
    sources: tuple[str, ...],
    first_day: dt.date,
    last_day: dt.date,
    policy: HealthPolicy,
) -> SourceHealth:
    """Return, per source, its degraded days within [first_day, last_day] that are due.

    A day is judged once its deliveries are due (`policy.lag_days`): later days are neither
    degraded nor counted, and no trailing median includes them. Days after a source's last
    delivered day up to its last due day count as zero volume: a source that stopped
    delivering is silent, not quiet.
    """
    history_start = first_day - dt.timedelta(days=policy.trailing_days)
    frame = query_frame(
        session,
        select(SourceVolume.source, SourceVolume.day, SourceVolume.traces).where(
            SourceVolume.source.in_(sources),
            SourceVolume.day >= history_start,
            SourceVolume.day <= last_day,
        ),
        ["source", "day", "traces"],
    )
    frame["day"] = pd.to_datetime(frame["day"])
    degraded: dict[str, list[dt.date]] = {}
    not_yet_due: dict[str, tuple[dt.date, dt.date]] = {}
    for source in sources:
        due = policy.due_through(source, last_day)
        if due < last_day:
            not_yet_due[source] = (due + dt.timedelta(days=1), last_day)
        rows = frame[(frame["source"] == source) & (frame["day"] <= pd.Timestamp(due))]
        volumes = pd.Series(
            rows["traces"].to_numpy(dtype=np.int64), index=pd.DatetimeIndex(rows["day"])
        )
        if not volumes.empty and volumes.index.max() < pd.Timestamp(due):
            volumes[pd.Timestamp(due)] = 0
        flags = degraded_days(volumes.sort_index(), policy=policy)
        days = flags[flags & (flags.index >= pd.Timestamp(first_day))].index
        degraded[source] = [day.date() for day in days]
    return SourceHealth(degraded=degraded, not_yet_due=not_yet_due)
