"""A grid's page shows its supervisor the home visits planned for the weeks ahead, against the
grid's weekly capacity, and warns of a week over capacity or a visit past its due date.

Expected figures come from what the test itself added to the seeded world and its own query.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from liveness.db import session_scope
from models import Person, ReviewTask, TaskKind, TaskStatus
from tests.api.conftest import World
from tests.web.conftest import signed_in
from tests.web.test_supervision_pages import _today

WEEK_ROW = re.compile(r'<tr data-week="([^"]+)"[^>]*>(.*?)</tr>', re.S)
COUNT = re.compile(r'data-count="([a-z]+)">(?:<strong>)?([\d,]+)')
CAPACITY = 25  # visits_per_week of the shipped policy


def _weeks(page: str) -> dict[str, dict[str, int]]:
    part = page.split('data-table="visit-weeks"')[1].split("</table>")[0]
    return {
        week: {name: int(value.replace(",", "")) for name, value in COUNT.findall(row)}
        for week, row in WEEK_ROW.findall(part)
    }


def test_a_grid_shows_its_weeks_ahead_and_warns_over_capacity(web_world: World) -> None:
    today = _today(web_world)
    monday = today - dt.timedelta(days=today.weekday())
    week = [monday + dt.timedelta(weeks=n) for n in range(8)]
    with session_scope(web_world.services.sessions) as session:
        person_id = session.scalar(select(Person.id).where(Person.person_ref == "P1"))
        assert person_id is not None

        def visit(planned: dt.date | None, due: dt.date, **fields: object) -> ReviewTask:
            values = {"status": TaskStatus.OPEN, **fields}
            return ReviewTask(
                person_id=person_id, kind=TaskKind.HOME_VISIT, grid_code="G1", priority=1.0,
                opened_on=monday, due_on=due, planned_week=planned, **values,
            )  # fmt: skip

        # Next week: one visit more than the grid can make. The week after: one visit due
        # before that week ends. Today: one visit done, which used this week's room.
        session.add_all(visit(week[1], monday + dt.timedelta(days=30)) for _ in range(26))
        session.add(visit(week[2], monday + dt.timedelta(days=10)))
        session.add(
            visit(None, today, status=TaskStatus.DONE, closed_on=today, outcome="alive_confirmed")
        )
        # The world's open visits in G1 have no planned week: they count in this one.
        carried = session.execute(
            select(ReviewTask.due_on).where(
                ReviewTask.grid_code == "G1", ReviewTask.kind == TaskKind.HOME_VISIT,
                ReviewTask.status.in_([TaskStatus.OPEN, TaskStatus.CLAIMED]),
                ReviewTask.planned_week.is_(None),
            )
        ).scalars().all()  # fmt: skip
    assert len(carried) == 2
    carried_late = sum(due < week[0] + dt.timedelta(days=6) for due in carried)

    page = signed_in(web_world, "operator").get("/web/grids/G1")
    assert page.status_code == 200
    weeks = _weeks(page.text)
    assert list(weeks) == [monday.isoformat() for monday in week]
    assert weeks[week[0].isoformat()] == {
        "planned": 2, "done": 1, "capacity": CAPACITY, "late": carried_late,
    }  # fmt: skip
    assert weeks[week[1].isoformat()] == {"planned": 26, "done": 0, "capacity": CAPACITY, "late": 0}
    assert weeks[week[2].isoformat()] == {"planned": 1, "done": 0, "capacity": CAPACITY, "late": 1}
    assert all(weeks[monday.isoformat()]["planned"] == 0 for monday in week[3:])
    # The week over capacity is flagged in its row, and both warnings lead the section.
    over = dict(WEEK_ROW.findall(page.text))[week[1].isoformat()]
    assert 'data-flag="over-capacity"' in over
    section = page.text.split('data-section="visit-weeks"')[1].split("</section>")[0]
    late = 1 + carried_late
    assert f"有 {late} 次走访在截止日期前排不进任何一周" in section
    assert "有 1 周计划的走访超出本网格的容量" in section
    assert section.count('role="alert"') == 2

    english = signed_in(web_world, "operator").get("/web/grids/G1?lang=en").text
    assert f"Over capacity: {late} visit(s) fit no week before their due date" in english
    assert "Over capacity: 1 week(s) have more visits planned" in english
    # A grid worker's page of their own grid lists people, not the plan.
    own = signed_in(web_world, "grid_worker").get("/web/grids/G1")
    assert own.status_code == 200 and 'data-section="visit-weeks"' not in own.text


def test_a_grid_within_capacity_shows_no_warning(web_world: World) -> None:
    page = signed_in(web_world, "operator").get("/web/grids/G2").text
    section = page.split('data-section="visit-weeks"')[1].split("</section>")[0]
    # G2's one open visit is the world's, due long ago: the only warning is that it is late.
    assert 'data-warning="over-capacity"' not in section
    weeks = _weeks(page)
    assert sum(week["planned"] for week in weeks.values()) == 1
