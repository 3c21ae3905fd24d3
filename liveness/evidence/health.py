"""Source health: daily volumes against their trailing median, and the days that collapsed.

A day is judged only once its deliveries are due: each source delivers its days some days
late (`lag_days`), so the last days before a run are not yet silent, only not yet delivered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.db import query_frame
from liveness.ingest.traces import TRACE_SOURCES
from liveness.policy_files import PolicyModel, load_policy
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
        return as_of - dt.timedelta(days=self.lag_days[source])


class LagDays(PolicyModel):
    """Days after a day before its deliveries are due, for every trace source."""

    transit: int = Field(ge=0)
    card_txn: int = Field(ge=0)
    medical: int = Field(ge=0)
    face: int = Field(ge=0)


# The lag table must name exactly the trace sources the ingest knows.
assert tuple(LagDays.model_fields) == TRACE_SOURCES


class HealthFile(PolicyModel):
    """The keys of config/health.toml, as the file holds them."""

    trailing_days: int = Field(ge=1)
    collapse_ratio: float = Field(gt=0, lt=1)
    min_history_days: int = Field(ge=1)
    min_median_volume: int = Field(ge=1)
    lag_days: LagDays


def load_health_policy(path: Path) -> HealthPolicy:
    """Read and validate config/health.toml."""
    loaded = load_policy(path, HealthFile, what="source health policy")
    # The file's keys are the policy's fields; the lag table becomes a plain mapping.
    return HealthPolicy(version=loaded.version, **loaded.model.model_dump())


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
