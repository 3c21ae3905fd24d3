"""The dashboard lists the grids most behind with their oldest overdue review."""

from __future__ import annotations

import html
import re

from sqlalchemy import select

from liveness.db import session_scope
from models import AuditEntry
from tests.api.conftest import World, make_reviews_late
from tests.web.conftest import signed_in

GRID_ROW = re.compile(r'<tr data-grid="([^"]+)">(.*?)</tr>', re.S)


def _section(page: str) -> str:
    return page.split('data-section="overdue"')[1].split("</section>")[0]


def test_the_grids_longest_behind_link_to_their_queues(web_world: World) -> None:
    make_reviews_late(web_world)
    client = signed_in(web_world, "operator")
    page = client.get("/web/dashboard")
    assert page.status_code == 200
    section = _section(html.unescape(page.text))
    rows = GRID_ROW.findall(section)
    assert [grid for grid, _ in rows] == ["G2", "G1"]
    g2 = rows[0][1]
    assert '<a href="/web/queue?grid=G2">G2</a>' in g2
    assert re.search(r'<td class="num">2</td><td>\d{4}-\d\d-\d\d</td><td class="num">60</td>', g2)
    task = web_world.tasks["visit_g2"]
    assert f'<a href="/web/tasks/{task}">上门核查 #{task}</a>' in g2
    assert "P4" in g2 and "人脸认证未通过或逾期" in g2
    assert "不会因此暂停任何人的待遇" in section
    # The link leads to the grid's queue; another region has nothing overdue.
    assert client.get("/web/queue?grid=G2").status_code == 200
    # A region where nobody lives says so rather than showing empty sections.
    unknown = client.get("/web/dashboard?region=3301").text
    assert "没有地区代码为 3301 的人员" in unknown and "data-grid" not in unknown
    english = _section(html.unescape(client.get("/web/dashboard?lang=en").text))
    assert "Overdue reviews" in english and "face verification failed or ignored" in english
    with session_scope(web_world.services.sessions) as session:
        reads = session.scalars(
            select(AuditEntry.action).where(AuditEntry.actor == "operator")
        ).all()
    assert reads.count("dashboard.read") == 3


def test_an_auditor_sees_the_grids_behind_within_a_region(web_world: World) -> None:
    client = signed_in(web_world, "auditor")
    make_reviews_late(web_world)
    section = _section(client.get("/web/dashboard?region=110101").text)
    assert len(GRID_ROW.findall(section)) == 2
    assert "逾期未办的复核" in client.get("/web/dashboard").text
