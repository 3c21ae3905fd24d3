"""The home visits planned per grid and week: what the scheduler starts from, what is reported.

A grid's load in a week is its open home visits planned for it; open visits planned for an
earlier week (still not done) or for none (opened before visits were planned) count in the
current week, and so do the visits done this week. A visit is over capacity (late) when its
planned week ends after its due date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from liveness.certification.policy import CapacityPolicy
from liveness.db import read_frame, unindexed
from liveness.review.capacity import week_start
from models import ReviewTask, TaskKind, TaskStatus

__all__ = ["GridPlan", "GridWeek", "grid_weeks", "visit_load", "visit_plan"]

_LIVE = (TaskStatus.OPEN, TaskStatus.CLAIMED)
_SUNDAY = dt.timedelta(days=6)


def visit_load(
    session: Session, *, today: dt.date, grid: str | None = None, before_run: int | None = None
) -> pd.DataFrame:
    """Return the home visits per grid and week (a Monday): open, done, visits (both), late.

    `before_run`: without the visits that run opened (those it is planning).
    """
    monday = week_start(today)
    where = [] if grid is None else [ReviewTask.grid_code == grid]
    if before_run is not None:
        where.append(
            or_(ReviewTask.opened_run_id.is_(None), ReviewTask.opened_run_id != before_run)
        )
    # The open visits one row each, counted below: grouped in SQL, SQLite walks the grid index
    # for the order and looks every row up (six times a plain scan of the table at a million);
    # the visits done this week are grouped by a grid no index answers (`unindexed`).
    planned = read_frame(
        session,
        select(ReviewTask.grid_code, ReviewTask.planned_week, ReviewTask.due_on).where(
            ReviewTask.kind == TaskKind.HOME_VISIT, ReviewTask.status.in_(_LIVE), *where
        ),
        ["grid_code", "week", "due_on"],
    )
    grid_code = ReviewTask.grid_code if grid is not None else unindexed(ReviewTask.grid_code)
    done = read_frame(
        session,
        select(grid_code, func.count())
        .where(ReviewTask.kind == TaskKind.HOME_VISIT, ReviewTask.status == TaskStatus.DONE,
               ReviewTask.closed_on >= monday, ReviewTask.closed_on <= today, *where)
        .group_by(grid_code),
        ["grid_code", "done"],
    )  # fmt: skip
    week = np.array(planned["week"].tolist(), dtype="datetime64[D]")
    week = np.where(np.isnat(week) | (week < np.datetime64(monday)), np.datetime64(monday), week)
    due = np.array(planned["due_on"].tolist(), dtype="datetime64[D]")
    planned = planned.assign(
        week=week.astype(object), open=1, late=(week + np.timedelta64(6, "D") > due).astype(int)
    )
    counts = ["open", "done", "late"]
    frame = pd.concat(
        [planned.assign(done=0), done.assign(week=monday, open=0, late=0)], ignore_index=True
    )[["grid_code", "week", *counts]]
    if not frame.empty:
        frame = frame.groupby(["grid_code", "week"], as_index=False)[counts].sum()
    frame = frame.astype(dict.fromkeys(counts, np.int64))
    return frame.assign(visits=frame["open"] + frame["done"])


def _over(load: pd.DataFrame, limits: pd.Series) -> pd.Series:
    """Return which rows of `load` are over capacity: open visits the week has no room left for.

    Visits already done count against the week's room, yet a week whose visits are all done
    asks nothing more of anyone: it is never over capacity.
    """
    return (load["open"] > 0) & (load["visits"] > limits)


@dataclass(frozen=True)
class GridWeek:
    """One week of a grid's visit plan: visits planned, capacity, visits late."""

    week: dt.date
    planned: int  # open visits planned for the week (this week: also those of past weeks)
    done: int  # visits done this week (the current week only)
    capacity: int
    late: int  # visits planned into this week that are due before it ends

    @property
    def ends(self) -> dt.date:
        """Return the week's Sunday."""
        return self.week + _SUNDAY

    @property
    def over_capacity(self) -> bool:
        """Return whether more visits are open than the week has room left for."""
        return self.planned > 0 and self.planned + self.done > self.capacity


def _weeks(today: dt.date, count: int) -> list[dt.date]:
    """Return the Mondays of `count` weeks from the current one."""
    monday = week_start(today)
    return [monday + dt.timedelta(weeks=n) for n in range(count)]


@dataclass(frozen=True)
class GridPlan:
    """A grid's visit plan: its capacity, the weeks ahead, and what exceeds the capacity."""

    grid_code: str
    capacity: int
    weeks: list[GridWeek]
    late_total: int  # open visits planned after their due date, in any week
    weeks_over: int  # weeks, shown or not, planned beyond capacity


def grid_weeks(
    session: Session, *, grid: str, today: dt.date, capacity: CapacityPolicy
) -> GridPlan:
    """Return a grid's visits planned for the weeks ahead (the policy's `report_weeks`)."""
    load = visit_load(session, today=today, grid=grid)
    limit = capacity.of(grid)
    by_week = load.set_index("week")
    weeks = [
        GridWeek(
            week=monday,
            planned=int(by_week["open"].get(monday, 0)),
            done=int(by_week["done"].get(monday, 0)),
            capacity=limit,
            late=int(by_week["late"].get(monday, 0)),
        )
        for monday in _weeks(today, capacity.report_weeks)
    ]
    return GridPlan(
        grid_code=grid, capacity=limit, weeks=weeks, late_total=int(load["late"].sum()),
        weeks_over=int(_over(load, pd.Series(limit, index=load.index)).sum()),
    )  # fmt: skip


def visit_plan(session: Session, *, today: dt.date, capacity: CapacityPolicy) -> dict[str, Any]:
    """Return the run report's visit plan: per grid with visits, the weeks ahead and capacity.

    `weeks` are the Mondays shown; per grid its `capacity` a week, the open visits `planned`
    and the `late` ones (due before the week ends) per week shown, the visits `done` this
    week, and `late_total` over every week; `weeks_over_capacity` lists each grid and week
    whose open visits exceed the room left (visits planned before a capacity was lowered,
    visits still open from past weeks); `visits_over_capacity` counts every open visit
    planned after its due date.
    """
    mondays = _weeks(today, capacity.report_weeks)
    load = visit_load(session, today=today)
    codes = sorted(set(load["grid_code"].astype(str)))
    limits = pd.Series({code: capacity.of(code) for code in codes}, dtype=np.int64)
    shown = load[load["week"].isin(mondays)]

    def per_week(column: str) -> pd.DataFrame:
        table = shown.pivot_table(
            index="grid_code", columns="week", values=column, aggfunc="sum", fill_value=0
        )
        return table.reindex(index=codes, columns=mondays, fill_value=0).astype(np.int64)

    planned, late, done = per_week("open"), per_week("late"), per_week("done")
    late_total = load.groupby("grid_code")["late"].sum().reindex(codes, fill_value=0)
    over = load[_over(load, limits.reindex(load["grid_code"]).set_axis(load.index))]
    over_rows = zip(over["grid_code"], over["week"], over["open"], over["done"], strict=True)
    # The tables are indexed by `codes` in order: a grid's row is its position (thousands of
    # grids in a city: one `.loc` each would cost more than the plan).
    return {
        "weeks": [monday.isoformat() for monday in mondays],
        "grids": {
            code: {
                "capacity": cap,
                "planned": planned_row,
                "late": late_row,
                "done": done_row[0],
                "late_total": late_all,
            }
            for code, cap, planned_row, late_row, done_row, late_all in zip(
                codes,
                limits.reindex(codes).to_numpy(dtype=np.int64).tolist(),
                planned.to_numpy().tolist(),
                late.to_numpy().tolist(),
                done.to_numpy().tolist(),
                late_total.to_numpy(dtype=np.int64).tolist(),
                strict=True,
            )
        },
        "weeks_over_capacity": [
            {
                "grid": str(g),
                "week": w.isoformat(),
                "planned": int(n),
                "done": int(d),
                "capacity": int(limits[g]),
            }
            for g, w, n, d in over_rows
        ],
        "visits_over_capacity": int(load["late"].sum()),
    }
