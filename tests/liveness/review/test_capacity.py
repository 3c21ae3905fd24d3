"""Home visits planned within each grid's weekly capacity: the scheduler against a model."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.certification.policy import load_certification_policy
from liveness.errors import ConfigurationError
from liveness.review.capacity import plan_visits, week_start
from tests.liveness.review.test_priority import policy_copy

GRIDS = ("A", "B", "C")
WEEK = dt.timedelta(days=7)


def _week_index(day: dt.date, monday: dt.date) -> int:
    return (day - monday).days // 7


def _last_fitting_week(deadline: dt.date, monday: dt.date) -> int:
    """The last week (0: the current one) whose Sunday is on or before the deadline."""
    return ((deadline - monday).days - 6) // 7


def model_plan(
    visits: list[tuple[str, dt.date, float]],
    load: list[tuple[str, dt.date, int]],
    capacity: dict[str, int],
    today: dt.date,
) -> list[int]:
    """Plan visit by visit: the week index of each, in the order given.

    Highest value first (then earliest deadline, then the order given), each into the
    earliest week with room that ends by its deadline; then the ones left over, in the same
    order, into the first week with room after their deadline.
    """
    monday = week_start(today)
    used: dict[tuple[str, int], int] = defaultdict(int)
    for grid, day, count in load:
        used[grid, max(_week_index(day, monday), 0)] += count

    def has_room(grid: str, week: int) -> bool:
        return used[grid, week] < capacity[grid]

    order = sorted(range(len(visits)), key=lambda i: (-visits[i][2], visits[i][1], i))
    weeks: dict[int, int] = {}
    for i in order:
        grid, deadline, _ = visits[i]
        for week in range(_last_fitting_week(deadline, monday) + 1):
            if has_room(grid, week):
                weeks[i] = week
                used[grid, week] += 1
                break
    for i in order:
        if i in weeks:
            continue
        grid, deadline, _ = visits[i]
        week = max(_last_fitting_week(deadline, monday) + 1, 0)
        while not has_room(grid, week):
            week += 1
        weeks[i] = week
        used[grid, week] += 1
    return [weeks[i] for i in range(len(visits))]


@st.composite
def _cases(
    draw: st.DrawFn,
) -> tuple[
    list[tuple[str, dt.date, float]], list[tuple[str, dt.date, int]], dict[str, int], dt.date
]:
    today = dt.date(2025, 3, 3) + dt.timedelta(days=draw(st.integers(0, 13)))
    capacity = {grid: draw(st.integers(1, 4)) for grid in GRIDS}
    visits = draw(
        st.lists(
            st.tuples(
                st.sampled_from(GRIDS),
                st.integers(-3, 45).map(lambda n: today + dt.timedelta(days=n)),
                # Few values, so that ties are common.
                st.integers(0, 6).map(float),
            ),
            max_size=40,
        )
    )
    load = draw(
        st.lists(
            st.tuples(
                st.sampled_from(GRIDS),
                st.integers(-14, 50).map(lambda n: today + dt.timedelta(days=n)),
                st.integers(0, 6),
            ),
            max_size=8,
        )
    )
    return visits, load, capacity, today


@settings(max_examples=400, deadline=None)
@given(_cases())
def test_the_plan_never_exceeds_capacity_and_matches_the_model(
    case: tuple[list[tuple[str, dt.date, float]], list[tuple[str, dt.date, int]], dict[str, int],
                dt.date],
) -> None:  # fmt: skip
    visits, load, capacity, today = case
    monday = week_start(today)
    frame = pd.DataFrame(visits, columns=["grid_code", "deadline", "value"])
    planned = plan_visits(
        frame.assign(person_id=range(len(frame))),
        load=pd.DataFrame(load, columns=["grid_code", "week", "visits"]),
        capacity=pd.Series(capacity),
        today=today,
    )
    # Every visit gets a week, a Monday from the current week on; none is dropped.
    assert list(planned["person_id"]) == list(range(len(visits)))
    weeks = [_week_index(day, monday) for day in planned["planned_week"]]
    assert all(day.weekday() == 0 for day in planned["planned_week"])
    assert all(week >= 0 for week in weeks)
    # Earliest fit, highest value first: the same weeks as the visit-by-visit model.
    assert weeks == model_plan(visits, load, capacity, today)
    # Late exactly when the planned week ends after the deadline.
    for (_, deadline, _), day, late in zip(visits, planned["planned_week"], planned["late"],
                                           strict=True):  # fmt: skip
        assert late == (day + dt.timedelta(days=6) > deadline)

    existing: dict[tuple[str, int], int] = defaultdict(int)
    for grid, day, count in load:
        existing[grid, max(_week_index(day, monday), 0)] += count
    new: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (grid, week) in enumerate(zip(planned["grid_code"], weeks, strict=True)):
        new[grid, week].append(i)
    # No week of any grid over capacity: new visits only fill the room left.
    for (grid, week), members in new.items():
        assert existing[grid, week] + len(members) <= capacity[grid]
    # A visit is late only if every week up to its deadline is full of visits planned before
    # or of higher or equal value.
    for i, (grid, deadline, value) in enumerate(visits):
        if not planned["late"].iloc[i]:
            continue
        for week in range(_last_fitting_week(deadline, monday) + 1):
            ahead = [j for j in new[grid, week] if visits[j][2] >= value]
            assert existing[grid, week] + len(ahead) >= capacity[grid]


def test_a_grid_s_own_capacity_and_the_default() -> None:
    today = dt.date(2025, 3, 5)  # a Wednesday: the week of 03-03
    frame = pd.DataFrame(
        {
            "person_id": [1, 2, 3, 4],
            "grid_code": ["A", "A", "A", "B"],
            "deadline": [dt.date(2025, 3, 16)] * 4,
            "value": [5.0, 9.0, 1.0, 3.0],
        }
    )
    already = pd.DataFrame(
        {"grid_code": ["A", "A"], "week": [dt.date(2025, 2, 24), dt.date(2025, 3, 12)],
         "visits": [1, 1]}
    )  # fmt: skip
    planned = plan_visits(frame, load=already, capacity=pd.Series({"A": 2, "B": 1}), today=today)
    by_person = planned.set_index("person_id")
    # A visit still open from last week takes one of this week's two places, one planned
    # already one of next week's; the most valuable new visit takes this week's other place,
    # the next one next week's; the least valuable fits no week that ends by its deadline
    # (Sunday 03-16): it is planned the week after, flagged, never dropped.
    assert by_person.loc[2, "planned_week"] == dt.date(2025, 3, 3)
    assert by_person.loc[1, "planned_week"] == dt.date(2025, 3, 10)
    assert by_person.loc[3, "planned_week"] == dt.date(2025, 3, 17)
    assert list(by_person["late"]) == [False, False, True, False]
    assert by_person.loc[4, "planned_week"] == dt.date(2025, 3, 3)


def test_no_visits_plan_nothing() -> None:
    empty = pd.DataFrame({"grid_code": [], "deadline": [], "value": []})
    planned = plan_visits(
        empty, load=pd.DataFrame({"grid_code": [], "week": [], "visits": []}),
        capacity=pd.Series(dtype="int64"), today=dt.date(2025, 3, 5),
    )  # fmt: skip
    assert planned.empty and {"planned_week", "late"} <= set(planned.columns)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("visits_per_week = 25", "visits_per_week = 0", "review.capacity.visits_per_week"),
        ("visits_per_week = 25", "visits_per_week = 2.5", "review.capacity.visits_per_week"),
        ('# "G0317" = 40', '"G0317" = -3', "review.capacity.grids.G0317"),
        ("face_first_for_weak = true", "face_first_for_weak = 1",
         "review.capacity.face_first_for_weak"),
    ],
)  # fmt: skip
def test_capacity_policy_is_validated(tmp_path: Path, old: str, new: str, key: str) -> None:
    folder = policy_copy(tmp_path, {old: new})
    with pytest.raises(ConfigurationError, match=key.replace(".", r"\.")):
        load_certification_policy(folder / "certification.toml")


def test_capacity_policy_per_grid(tmp_path: Path) -> None:
    folder = policy_copy(tmp_path, {'# "G0317" = 40': '"G0317" = 40'})
    capacity = load_certification_policy(folder / "certification.toml").capacity
    assert (capacity.of("G0317"), capacity.of("G1"), capacity.face_first_for_weak) == (40, 25, True)
