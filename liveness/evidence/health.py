"""Source health: daily volumes against their trailing median, and the days that collapsed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.db import query_frame
from liveness.errors import ConfigurationError
from liveness.policy_files import read_policy_file
from models import SourceVolume


@dataclass(frozen=True)
class HealthPolicy:
    """When a day's volume counts as a collapse of its source."""

    version: str
    trailing_days: int
    collapse_ratio: float
    min_history_days: int
    min_median_volume: int


def load_health_policy(path: Path) -> HealthPolicy:
    """Read and validate config/health.toml."""
    policy_file = read_policy_file(path, what="source health policy")
    document = policy_file.document
    unknown = set(document) - {
        "trailing_days", "collapse_ratio", "min_history_days", "min_median_volume",
    }  # fmt: skip
    if unknown:
        raise ConfigurationError(f"{path}: {sorted(unknown)[0]} is not a setting")
    for key in ("trailing_days", "min_history_days", "min_median_volume"):
        value = document.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigurationError(f"{path}: {key} must be a positive integer")
    ratio = document.get("collapse_ratio")
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 < ratio < 1:
        raise ConfigurationError(f"{path}: collapse_ratio must be a number between 0 and 1")
    return HealthPolicy(
        version=policy_file.version,
        trailing_days=document["trailing_days"],
        collapse_ratio=float(ratio),
        min_history_days=document["min_history_days"],
        min_median_volume=document["min_median_volume"],
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


def source_health(
    session: Session,
    *,
    sources: tuple[str, ...],
    first_day: dt.date,
    last_day: dt.date,
    policy: HealthPolicy,
) -> dict[str, list[dt.date]]:
    """Return, per source, its degraded days within [first_day, last_day].

    Days after a source's last delivered day up to `last_day` count as zero volume: a source
    that stopped delivering is silent, not quiet.
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
    result: dict[str, list[dt.date]] = {}
    for source in sources:
        rows = frame[frame["source"] == source]
        volumes = pd.Series(
            rows["traces"].to_numpy(dtype=np.int64), index=pd.to_datetime(rows["day"])
        )
        if not volumes.empty and volumes.index.max() < pd.Timestamp(last_day):
            volumes[pd.Timestamp(last_day)] = 0
        flags = degraded_days(volumes.sort_index(), policy=policy)
        days = flags[flags & (flags.index >= pd.Timestamp(first_day))].index
        result[source] = [day.date() for day in days]
    return result
