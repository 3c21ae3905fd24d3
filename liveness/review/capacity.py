"""Plan home visits into weeks within each grid's weekly capacity: pure and vectorised.

Weeks start on Monday. Each new visit has a grid, a deadline (the last day it may be done) and
an expected value (risk of death x amount at stake). Visits go highest expected value first
into the earliest week, from the current one on, that has room and ends (its Sunday) on or
before the deadline: later weeks keep their slack for later runs. A visit that no such week
has room for is over capacity: it goes into the first week with room after its deadline,
flagged `late`, once every visit that still fits has been placed; it is never dropped. No week
of a grid ever receives more visits than its room (capacity less what is already planned).

Placing in order of value into the earliest fitting week is the same as filling week after
week with the most valuable visits still waiting that fit it (every visit's weeks start at
the current one), so the plan loops over weeks, never over visits: week by week, one sort of
all grids' waiting visits and a running count per grid. The loop covers the weeks up to the
furthest deadline or already planned visit (a handful); beyond them every week offers its full
capacity, and the visits still waiting are spread there by their rank in one step.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import numpy.typing as npt
import pandas as pd

from liveness.weeks import week_start

__all__ = ["VISIT_COLUMNS", "plan_visits", "week_start"]

# What `plan_visits` reads of each visit.
VISIT_COLUMNS = ("grid_code", "deadline", "value")
_DAYS = 7
_SUNDAY = 6  # days from a week's Monday to its Sunday


def _days(values: pd.Series) -> npt.NDArray[np.int64]:
    """Return dates as day numbers (days since 1970-01-01)."""
    return np.array(values.tolist(), dtype="datetime64[D]").astype(np.int64).reshape(-1)


def _ranks(grid: npt.NDArray[np.int64], wanted: npt.NDArray[np.bool_], grids: int) -> np.ndarray:
    """Return each wanted visit's rank among the wanted of its grid, in the arrays' order.

    The arrays are sorted by grid (then by value), so a running count of the wanted less the
    count before the grid's first row is the rank; unwanted visits get -1.
    """
    counted = np.cumsum(wanted)
    first = np.searchsorted(grid, np.arange(grids), side="left")
    before = np.concatenate([[0], counted])[first]
    return np.where(wanted, counted - 1 - before[grid], -1)


def plan_visits(
    visits: pd.DataFrame, *, load: pd.DataFrame, capacity: pd.Series, today: dt.date
) -> pd.DataFrame:
    """Return `visits` with the Monday of each one's planned week and whether it is late.

    `visits` has grid_code, deadline (a date) and value; `load` has grid_code, week (a
    Monday, or any day of the week) and visits: what each grid has planned already, weeks
    before the current one counting in it; `capacity` gives the visits a week of every grid
    of `visits` (indexed by grid code, positive). `late` marks a visit planned into a week
    that ends after its deadline. Visits of equal value go earliest deadline first, then in
    the order given.
    """
    planned = visits.copy()
    if planned.empty:
        return planned.assign(planned_week=pd.Series(dtype=object), late=pd.Series(dtype=bool))
    monday = np.datetime64(week_start(today), "D").astype(np.int64)
    codes, grid_of = np.unique(planned["grid_code"].astype(str).to_numpy(), return_inverse=True)
    cap = capacity.reindex(codes).to_numpy()
    if np.isnan(cap.astype(float)).any() or (cap <= 0).any():
        raise ValueError("capacity must give a positive number of visits for every grid")
    cap = cap.astype(np.int64)
    deadline = _days(planned["deadline"])
    # The last week (0: the current one) whose Sunday is on or before each deadline.
    fits = (deadline - monday - _SUNDAY) // _DAYS
    load = load[load["grid_code"].astype(str).isin(codes)]
    load_grid = np.searchsorted(codes, load["grid_code"].astype(str).to_numpy())
    load_week = np.maximum((_days(load["week"]) - monday) // _DAYS, 0)
    horizon = int(max(fits.max(), load_week.max(initial=-1))) + 1
    room = np.repeat(cap[:, None], max(horizon, 1), axis=1)
    # A week already planned beyond capacity has no room, not a negative one.
    np.subtract.at(room, (load_grid, load_week), load["visits"].to_numpy(dtype=np.int64))
    room = np.maximum(room, 0)

    # Grid, then highest value, then earliest deadline, then the order given.
    value = planned["value"].to_numpy(float)
    order = np.lexsort((np.arange(len(planned)), deadline, -value, grid_of))
    grid, fit = grid_of[order], fits[order]
    week = np.full(len(planned), -1, dtype=np.int64)
    for w in range(horizon):
        # First the waiting visits this week ends in time for, then the late ones.
        for wanted in (fit >= w, fit < w):
            wanted &= week < 0
            rank = _ranks(grid, wanted, len(codes))
            taken = wanted & (rank < room[grid, w])
            week[taken] = w
            room[:, w] -= np.bincount(grid[taken], minlength=len(codes))
    # Past the horizon every week is empty and every waiting visit late: rank r of a grid of
    # capacity c goes r // c weeks after the horizon.
    waiting = week < 0
    rank = _ranks(grid, waiting, len(codes))
    week[waiting] = horizon + rank[waiting] // cap[grid[waiting]]

    weeks = np.empty(len(planned), dtype=np.int64)
    weeks[order] = week
    mondays = (monday + _DAYS * weeks).astype("datetime64[D]")
    planned["planned_week"] = mondays.astype(object)
    planned["late"] = weeks > fits
    return planned
