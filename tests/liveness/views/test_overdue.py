"""Overdue reviews per grid: oldest first, paged without gaps, scoped, summarised for the run."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy.orm import Session

from liveness.views.overdue import grids_behind, overdue_reviews, overdue_summary
from models import Person, ReviewTask, TaskKind, TaskStatus

TODAY = dt.date(2025, 7, 1)
REGIONS = {"A": "330102", "B": "330106", "C": "330782", "D": "330102", "E": "330782"}
# (grid, kind, status, due, cause, claimed_by): A, B and C are behind, D only due today.
TASKS = [
    ("A", TaskKind.HOME_VISIT, TaskStatus.OPEN, "2025-06-10", "renewal", None),
    ("A", TaskKind.DEATH_REVIEW, TaskStatus.CLAIMED, "2025-06-20", "death_record", "w1"),
    ("A", TaskKind.HOME_VISIT, TaskStatus.OPEN, "2025-07-05", "renewal", None),
    ("A", TaskKind.HOME_VISIT, TaskStatus.DONE, "2025-06-01", "renewal", None),
    ("A", TaskKind.FACE_VERIFICATION, TaskStatus.OPEN, "2025-06-30", "after_visit", None),
    ("B", TaskKind.HOME_VISIT, TaskStatus.OPEN, "2025-06-25", "face_failed", None),
    ("B", TaskKind.HOME_VISIT, TaskStatus.OPEN, "2025-05-20", "face_failed", None),
    ("B", TaskKind.HOME_VISIT, TaskStatus.CLOSED_BY_DATA, "2025-05-01", "renewal", None),
    ("C", TaskKind.HOME_VISIT, TaskStatus.OPEN, "2025-06-29", "after_visit", None),
    ("C", TaskKind.HOME_VISIT, TaskStatus.OPEN, "2025-06-29", None, None),
    ("C", TaskKind.HOME_VISIT, TaskStatus.OPEN, "2025-06-29", "renewal", None),
    ("D", TaskKind.HOME_VISIT, TaskStatus.OPEN, "2025-07-01", "renewal", None),
    ("E", TaskKind.HOME_VISIT, TaskStatus.OPEN, "2025-06-29", "renewal", None),
]


@pytest.fixture
def tasks(session: Session) -> list[int]:
    """Seed a person and a review per row of TASKS; give the task ids in TASKS' order."""
    ids = []
    for index, (grid, kind, status, due, cause, claimed_by) in enumerate(TASKS):
        person = Person(
            person_ref=f"R{index}", id_number=f"33010219500101{index:03d}X", id_status="valid",
            name=f"王{index}", sex="F", birth_date=dt.date(1950, 1, 1),
            region_code=REGIONS[grid], grid_code=grid,
        )  # fmt: skip
        session.add(person)
        session.flush()
        task = ReviewTask(
            person_id=person.id, kind=kind, status=status, grid_code=grid, priority=1.0,
            opened_on=dt.date(2025, 4, 1), due_on=dt.date.fromisoformat(due), cause=cause,
            claimed_by=claimed_by,
        )  # fmt: skip
        session.add(task)
        session.flush()
        ids.append(task.id)
    return ids


# Overdue tasks in the order expected: grid longest behind first (a tie: the most overdue),
# then by due date and id.
EXPECTED = [6, 5, 0, 1, 4, 8, 9, 10, 12]


def test_overdue_reviews_come_per_grid_oldest_first(session: Session, tasks: list[int]) -> None:
    found = overdue_reviews(session, today=TODAY, limit=50, offset=0)
    assert (found.as_of, found.total, found.grids_behind) == (TODAY, 9, 4)
    assert [(g.grid_code, g.overdue, g.oldest_due_on, g.days_behind) for g in found.grids] == [
        ("B", 2, dt.date(2025, 5, 20), 42),
        ("A", 3, dt.date(2025, 6, 10), 21),
        ("C", 3, dt.date(2025, 6, 29), 2),
        ("E", 1, dt.date(2025, 6, 29), 2),
    ]
    flat = [task for grid in found.grids for task in grid.tasks]
    assert [task.id for task in flat] == [tasks[i] for i in EXPECTED]
    oldest = flat[0]
    assert (oldest.kind, oldest.status, oldest.person_ref, oldest.due_on) == (
        "home_visit", "open", "R6", dt.date(2025, 5, 20),
    )  # fmt: skip
    assert (oldest.days_overdue, oldest.cause, oldest.claimed_by) == (42, "face_failed", None)
    assert oldest.id_number_masked == "330102********006X"
    claimed = flat[3]
    assert (claimed.kind, claimed.status, claimed.claimed_by) == ("death_review", "claimed", "w1")


@pytest.mark.parametrize("limit", [1, 2, 3, 4])
def test_pages_neither_skip_nor_repeat(session: Session, tasks: list[int], limit: int) -> None:
    seen: list[int] = []
    for offset in range(0, 12, limit):
        page = overdue_reviews(session, today=TODAY, limit=limit, offset=offset)
        assert page.total == 9
        assert sum(len(g.tasks) for g in page.grids) == max(0, min(limit, 9 - offset))
        # A grid split over pages carries its whole count on each.
        assert all(g.overdue == {"A": 3, "B": 2, "C": 3, "E": 1}[g.grid_code] for g in page.grids)
        seen += [task.id for grid in page.grids for task in grid.tasks]
    assert seen == [tasks[i] for i in EXPECTED]


def test_grids_and_regions_narrow_the_scope(session: Session, tasks: list[int]) -> None:
    mine = overdue_reviews(session, today=TODAY, grids=["A", "D"], limit=50, offset=0)
    assert [g.grid_code for g in mine.grids] == ["A"] and mine.total == 3
    city = overdue_reviews(session, today=TODAY, regions=["3301"], limit=50, offset=0)
    assert [g.grid_code for g in city.grids] == ["B", "A"] and city.total == 5
    county = overdue_reviews(session, today=TODAY, regions=["330782"], limit=50, offset=0)
    assert [g.grid_code for g in county.grids] == ["C", "E"] and county.grids_behind == 2
    none = overdue_reviews(session, today=TODAY, grids=["D"], limit=50, offset=0)
    assert (none.total, none.grids_behind, none.grids) == (0, 0, [])


def test_the_grids_longest_behind_with_their_oldest_review(
    session: Session, tasks: list[int]
) -> None:
    top, behind = grids_behind(session, today=TODAY, limit=2)
    assert behind == 4
    assert [(g.grid_code, g.overdue, g.days_behind) for g in top] == [("B", 2, 42), ("A", 3, 21)]
    assert [[t.id for t in g.tasks] for g in top] == [[tasks[6]], [tasks[0]]]
    local, behind = grids_behind(session, today=TODAY, regions=["330782"])
    assert [g.grid_code for g in local] == ["C", "E"] and behind == 2
    assert local[0].tasks[0].id == tasks[8]  # a tie on the due date: the lower id
    assert grids_behind(session, today=dt.date(2025, 5, 1)) == ([], 0)


def test_the_run_report_summary_is_json(session: Session, tasks: list[int]) -> None:
    summary = overdue_summary(session, as_of=TODAY)
    assert json.loads(json.dumps(summary)) == {
        "total": 9,
        "grids_behind": 4,
        "grids": [
            {"grid_code": "B", "overdue": 2, "oldest_due_on": "2025-05-20"},
            {"grid_code": "A", "overdue": 3, "oldest_due_on": "2025-06-10"},
            {"grid_code": "C", "overdue": 3, "oldest_due_on": "2025-06-29"},
            {"grid_code": "E", "overdue": 1, "oldest_due_on": "2025-06-29"},
        ],
    }
    # A review due on the run's own day is not late yet.
    assert overdue_summary(session, as_of=dt.date(2025, 5, 20)) == {
        "total": 0, "grids_behind": 0, "grids": [],
    }  # fmt: skip
