"""The supervisor's pages: the dashboard by region, names beside codes, the drill-down region ->
grid -> people, each grid worker's load, and the run report in words.

Expected figures come from the test's own queries over the seeded world, or from what the
test itself added; never from the views the pages use.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from api.web.formats import local_time_text, money_text
from liveness.db import session_scope
from liveness.views.area_names import load_area_names
from models import (
    Assessment,
    AuditEntry,
    Level,
    Person,
    ReviewTask,
    Run,
    TaskKind,
    TaskStatus,
    assessments_as_of,
)
from tests.api.conftest import World
from tests.web.browsing import DESKTOP, check_page, serving, sign_in_by_keyboard
from tests.web.conftest import signed_in

REPO = Path(__file__).resolve().parents[2]
# A person of the simulated city's first county, in its first street's second grid.
COUNTY, COUNTY_GRID = "330702", "330702-001-02"
ROW = re.compile(r'<tr data-(?:grid|person|worker|run)="([^"]+)">(.*?)</tr>', re.S)
CELL = re.compile(r'data-(?:level|count)="([^"]+)">(?:<a [^>]+>)?([\d,]+)')


def _today(world: World) -> dt.date:
    return dt.datetime.now(ZoneInfo(world.services.settings.timezone)).date()


def _cells(row: str) -> dict[str, int]:
    """Return a table row's figures by their data-level / data-count name."""
    return {name: int(value.replace(",", "")) for name, value in CELL.findall(row)}


def _rows(page: str, table: str) -> dict[str, str]:
    """Return the rows of one data-table of a page by their key."""
    part = page.split(f'data-table="{table}"')[1].split("</table>")[0]
    return dict(ROW.findall(part))


def _add_county_people(world: World, count: int, *, level: Level) -> None:
    """Add people to the county's grid, graded `level` by the world's run."""
    with session_scope(world.services.sessions) as session:
        for i in range(count):
            person = Person(
                person_ref=f"C{i:03d}", id_number=f"33070219400101{i:03d}X", id_status="valid",
                name=f"李{i:03d}", sex="F", birth_date=dt.date(1940, 1, 1), region_code=COUNTY,
                grid_code=COUNTY_GRID,
            )  # fmt: skip
            session.add(person)
            session.flush()
            session.add(
                Assessment(
                    run_id=world.run_id, person_id=person.id, level=level, score=0.1,
                    rule="test", reasons={}, policy_version="test",
                )
            )  # fmt: skip


def test_the_trend_follows_the_region_with_counts_and_an_unknown_region_says_so(
    web_world: World,
) -> None:
    _add_county_people(web_world, 3, level=Level.WEAK)
    client = signed_in(web_world, "operator")
    with session_scope(web_world.services.sessions) as session:
        standing = assessments_as_of(web_world.run_id)
        expected = {
            region: {
                str(level): int(count)
                for level, count in session.execute(
                    select(standing.level, func.count())
                    .join(Person, Person.id == standing.person_id)
                    .where(Person.region_code == region)
                    .group_by(standing.level)
                )
            }
            for region in ("110101", COUNTY)
        }
    assert expected[COUNTY] == {"weak": 3}
    for region, counts in expected.items():
        page = client.get(f"/web/dashboard?region={region}")
        assert page.status_code == 200
        trend = _cells(_rows(page.text, "trend")[str(web_world.run_id)])
        assert trend == {
            **{lv: counts.get(lv, 0) for lv in ("strong", "medium", "weak", "deceased")},
            "total": sum(counts.values()),
        }
    # The whole roll's trend is the run's report (this world's report has no levels).
    whole = _cells(_rows(client.get("/web/dashboard").text, "trend")[str(web_world.run_id)])
    assert whole["total"] == 0
    # A code nobody lives under says so, in both languages, instead of drawing empty charts.
    for lang, words in (("zh", "花名册中没有地区代码为 3301 的人员"),
                        ("en", "Nobody on the roll lives in region 3301")):  # fmt: skip
        unknown = client.get(f"/web/dashboard?region=3301&lang={lang}")
        assert unknown.status_code == 200
        assert words in unknown.text and "<svg" not in unknown.text
    assert "花名册中没有地区代码为 abc" in client.get("/web/dashboard?region=abc&lang=zh").text


def test_names_stand_beside_codes_and_a_code_without_one_shows_bare(web_world: World) -> None:
    _add_county_people(web_world, 2, level=Level.STRONG)
    client = signed_in(web_world, "auditor")
    dashboard = html.unescape(client.get("/web/dashboard").text)
    assert f'<a href="/web/regions/{COUNTY}">{COUNTY} 婺城区</a>' in dashboard
    assert '<a href="/web/regions/110101">110101</a>' in dashboard  # no name: the bare code
    region = client.get(f"/web/regions/{COUNTY}").text
    assert f'<a href="/web/grids/{COUNTY_GRID}">{COUNTY_GRID} 城东街道第2网格</a>' in region
    english = client.get(f"/web/regions/{COUNTY}?lang=en").text
    assert "Wucheng District" in english and f"{COUNTY_GRID} Chengdong, grid 2" in english
    names = load_area_names(REPO / "config" / "areas.toml")
    assert names.grid("330702-099-01", "zh") is None and names.region("999999", "en") is None
    assert load_area_names(REPO / "no-such-areas.toml").region(COUNTY, "zh") is None


def test_a_region_lists_its_grids_and_a_grid_its_people_paged(web_world: World) -> None:
    _add_county_people(web_world, 52, level=Level.MEDIUM)
    today = _today(web_world)
    client = signed_in(web_world, "operator")
    live = ReviewTask.status.in_([TaskStatus.OPEN, TaskStatus.CLAIMED])
    with session_scope(web_world.services.sessions) as session:
        persons = dict(
            session.execute(
                select(Person.grid_code, func.count())
                .where(Person.region_code == "110101")
                .group_by(Person.grid_code)
            ).all()
        )
        open_ = dict(
            session.execute(
                select(ReviewTask.grid_code, func.count())
                .where(live)
                .group_by(ReviewTask.grid_code)
            ).all()
        )
        late = dict(
            session.execute(
                select(ReviewTask.grid_code, func.count())
                .where(live, ReviewTask.due_on < today)
                .group_by(ReviewTask.grid_code)
            ).all()
        )
    page = client.get("/web/regions/110101")
    assert page.status_code == 200
    grids = _rows(page.text, "grids")
    assert set(grids) == set(persons) == {"G1", "G2"}
    for grid, row in grids.items():
        cells = _cells(row)
        assert cells["persons"] == persons[grid]
        assert cells["medium"] == persons[grid]  # the world grades everyone medium
        assert (cells["open"], cells["overdue"]) == (open_.get(grid, 0), late.get(grid, 0))
    # The county's grid: 52 people on two pages, every one once, linked to their file.
    first = client.get(f"/web/grids/{COUNTY_GRID}")
    second = client.get(f"/web/grids/{COUNTY_GRID}?page=2")
    assert first.status_code == second.status_code == 200
    shown = list(_rows(first.text, "people")) + list(_rows(second.text, "people"))
    assert sorted(shown) == [f"C{i:03d}" for i in range(52)]
    assert f'href="/web/grids/{COUNTY_GRID}?page=2"' in first.text
    assert '<a href="/web/persons/C000">李000</a>' in first.text
    assert "330702*******000X" not in first.text  # the identity number only masked
    assert "330702********000X" in first.text and "33070219400101000X" not in first.text
    # G1's people show their open review, linked to the task.
    g1 = client.get("/web/grids/G1").text
    task = web_world.tasks["visit_g1_high"]
    assert f'<a href="/web/tasks/{task}">上门核查 #{task}</a>' in _rows(g1, "people")["P3"]
    with session_scope(web_world.services.sessions) as session:
        reads = session.scalars(
            select(AuditEntry.target_ref).where(AuditEntry.action == "grids.read")
        ).all()
    assert sorted(str(ref) for ref in reads) == sorted([COUNTY_GRID, COUNTY_GRID, "G1"])


def test_each_grid_worker_s_load_counts_what_they_hold_and_recorded(web_world: World) -> None:
    today = _today(web_world)
    days = web_world.services.settings.web_visits_days
    now = dt.datetime.now(dt.UTC)
    with session_scope(web_world.services.sessions) as session:
        session.execute(
            update(ReviewTask)
            .where(ReviewTask.id == web_world.tasks["visit_g1_high"])
            .values(status=TaskStatus.CLAIMED, claimed_by="grid_worker",
                    claim_expires_at=now + dt.timedelta(hours=1))
        )  # fmt: skip
        person_id = session.scalar(select(Person.id).where(Person.person_ref == "P1"))
        assert person_id is not None
        for closed_days_ago in (days - 1, days + 5):  # one within the window, one before
            session.add(
                ReviewTask(
                    person_id=person_id, kind=TaskKind.HOME_VISIT, status=TaskStatus.DONE,
                    grid_code="G1", priority=1.0, opened_on=today - dt.timedelta(days=60),
                    due_on=today, closed_on=today - dt.timedelta(days=closed_days_ago),
                    outcome="alive_confirmed", outcome_detail={"by": "grid_worker"},
                )
            )  # fmt: skip
        live = ReviewTask.status.in_([TaskStatus.OPEN, TaskStatus.CLAIMED])
        in_g1 = ReviewTask.grid_code == "G1"
        open_g1 = session.scalar(select(func.count()).where(live, in_g1))
        late_g1 = session.scalar(select(func.count()).where(live, in_g1, ReviewTask.due_on < today))
    page = signed_in(web_world, "operator").get("/web/grids/G1")
    assert page.status_code == 200
    workers = _rows(page.text, "workload")
    assert list(workers) == ["grid_worker"]  # the only client serving G1
    assert _cells(workers["grid_worker"]) == {
        "open": open_g1, "claimed": 1, "overdue": late_g1, "visits": 1,
    }  # fmt: skip
    # G2 has no worker of its own.
    assert "没有负责该网格的网格员" in signed_in(web_world, "admin").get("/web/grids/G2").text


def test_the_drill_down_answers_out_of_scope_as_absent(web_world: World) -> None:
    worker = signed_in(web_world, "grid_worker")
    own = worker.get("/web/grids/G1")
    assert own.status_code == 200
    assert 'data-section="workload"' not in own.text  # a colleague's load is the supervisor's
    other, absent = worker.get("/web/grids/G2"), worker.get("/web/grids/G9")
    assert other.status_code == absent.status_code == 404
    # The same page but for the code; the session's form token is set aside first, since a
    # random token may hold "G2" itself.
    token = re.search(r'type="hidden" name="[^"]+" value="([^"]+)"', absent.text)
    assert token is not None  # the sign-out form's
    mask = token.group(1)
    assert other.text.replace(mask, "<token>").replace("G2", "G9") == absent.text.replace(
        mask, "<token>"
    )
    assert worker.get("/web/regions/110101").status_code == 403
    assert signed_in(web_world, "inspector").get("/web/regions/110101").status_code == 403
    assert signed_in(web_world, "operator").get("/web/regions/9999").status_code == 404
    with session_scope(web_world.services.sessions) as session:
        refused = session.scalars(
            select(AuditEntry.target_ref).where(
                AuditEntry.actor == "grid_worker", AuditEntry.action == "grids.read.refused"
            )
        ).all()
    assert sorted(str(ref) for ref in refused) == ["G2", "G9"]


def test_the_run_report_reads_as_sentences_with_amounts_and_local_times(
    web_world: World,
) -> None:
    report = {
        "as_of": "2025-05-30", "persons": 1234,
        "levels": {"strong": 1000, "medium": 150, "weak": 80, "deceased": 4},
        "certified_silently": 990,
        "tasks_opened": {"home_visit": 80, "face_verification": 150, "death_review": 1},
        "tasks_closed_by_data": 7, "tasks_cancelled": 0, "suspensions": 4,
        "overpayment_total": "12345.6", "held_for_approval": 2,
        "list": {"suspend:deceased": {"entries": 4, "amount": "12345.60"}},
        "overdue_reviews": {"total": 5, "grids_behind": 2, "grids": []},
        "ranges": {"persons": 1000000, "count": 11},
    }  # fmt: skip
    started = dt.datetime(2025, 5, 30, 16, 30, tzinfo=dt.UTC)  # 00:30 the next day in Shanghai
    with session_scope(web_world.services.sessions) as session:
        session.execute(
            update(Run)
            .where(Run.id == web_world.run_id)
            .values(report=report, started_at=started,
                    finished_at=started + dt.timedelta(minutes=5))
        )  # fmt: skip
    client = signed_in(web_world, "operator")
    zh = html.unescape(client.get(f"/web/runs/{web_world.run_id}").text)
    assert (
        "本批次截至 2025-05-30，共评定 1,234 人：强 1,000 人，中 150 人，弱 80 人，已故 4 人。"
        in zh
    )
    assert "新开复核任务 231 个（上门核查 80 个、人脸认证 150 个、死亡核查 1 个）" in zh
    assert "停发 4 人，多发待追回合计 ¥12,345.60；2 条恢复发放等待第二经办人批准。" in zh
    assert "5 个复核已逾期，分布在 2 个网格" in zh
    assert "本批次按人员编号分 11 段处理，每段 1,000,000 个编号" in zh
    assert '<dd data-time="started">2025-05-31 00:30:00</dd>' in zh
    assert '<dd data-amount="overpayment">¥12,345.60</dd>' in zh
    en = html.unescape(client.get(f"/web/runs/{web_world.run_id}?lang=en").text)
    assert "As of 2025-05-30, this run graded 1,234 people: 1,000 strong" in en
    assert "<td>deceased</td>" in en and "CNY 12,345.60" in en
    assert "This run was made in 11 ranges of 1,000,000 person ids" in en
    runs = client.get("/web/runs").text
    assert "2025-05-31 00:30" in runs and "1,234" in runs


def test_amounts_and_times_format_by_language_and_zone() -> None:
    assert money_text(Decimal("1234.5"), "zh") == "¥1,234.50"
    assert money_text("-1234.567", "en") == "-CNY 1,234.57"
    assert money_text(None, "zh") == "" and money_text("n/a", "zh") == "n/a"
    moment = dt.datetime(2025, 12, 31, 20, 0, tzinfo=dt.UTC)
    assert local_time_text(moment, "Asia/Shanghai") == "2026-01-01 04:00"
    assert local_time_text(moment.replace(tzinfo=None), "UTC", seconds=True) == (
        "2025-12-31 20:00:00"
    )


@pytest.mark.parametrize("web_world", ["sqlite"], indirect=True)
def test_the_drill_down_reads_in_a_browser(web_world: World, browser: Any) -> None:
    """Dashboard -> region -> grid -> person in Chromium: labelled, legible, photographed."""
    _add_county_people(web_world, 3, level=Level.WEAK)
    with serving(web_world.client.app) as base:
        page = browser.new_page(viewport=DESKTOP)
        sign_in_by_keyboard(page, base, web_world.tokens["operator"])
        page.goto(f"{base}/web/dashboard")
        page.click("#rg-h ~ details summary")  # the regions' table, folded under its chart
        page.click(f'a[href="/web/regions/{COUNTY}"]')
        check_page(page, "31-region")
        page.click(f'a[href="/web/grids/{COUNTY_GRID}"]')
        check_page(page, "32-grid")
        page.goto(f"{base}/web/grids/G1?lang=en")
        check_page(page, "33-grid-workload-en")
        page.goto(f"{base}/web/runs/{web_world.run_id}")
        check_page(page, "34-run-in-words")
        page.goto(f"{base}/web/dashboard?region=3301")
        check_page(page, "35-region-unknown")
        page.goto(f"{base}/web/persons/C000?lang=zh")
        assert "城东街道第2网格" in page.content()
        page.close()


def _csv(response: Any) -> list[list[str]]:
    """Return a CSV download's rows (after its byte-order mark)."""
    import csv
    import io

    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/csv")
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def test_every_table_exports_as_csv_whole_and_as_shown(web_world: World) -> None:
    _add_county_people(web_world, 52, level=Level.MEDIUM)
    client = signed_in(web_world, "operator")
    # Each table of the supervisor's pages has a CSV link that answers that table.
    for path in ("/web/dashboard", f"/web/runs/{web_world.run_id}", "/web/regions/330702",
                 f"/web/grids/{COUNTY_GRID}"):  # fmt: skip
        page = client.get(path).text
        tables = re.findall(r'<table[^>]* data-table="([^"]+)"', page)
        links = set(re.findall(r'href="([^"]*format=csv&amp;table=[^"]+)"', page))
        assert tables and len(links) == len(set(tables)), path
        for link in links:
            rows = _csv(client.get(html.unescape(link)))
            assert rows and all(rows), link
    # A paged table exports every row, not its page: 52 people and the header.
    people = _csv(client.get(f"/web/grids/{COUNTY_GRID}?format=csv&table=people&page=2"))
    assert sorted(row[0] for row in people[1:]) == sorted(f"李{i:03d}" for i in range(52))
    assert all("*" in row[1] for row in people[1:])  # identity numbers stay masked
    # The trend's counts come out as shown, with the header of the page's language.
    trend = _csv(client.get("/web/dashboard?format=csv&table=trend"))
    with session_scope(web_world.services.sessions) as session:
        runs = session.scalar(select(func.count()).select_from(Run))
    assert len(trend) == 1 + runs and trend[0][:2] == ["批次", "截至"]
    # A table the page does not have is not found, as a page; an export is audited.
    missing = client.get("/web/dashboard?format=csv&table=nothing")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    with session_scope(web_world.services.sessions) as session:
        exports = session.scalars(
            select(AuditEntry.detail).where(AuditEntry.action == "export.csv")
        ).all()
    assert {"people", "trend"} <= {detail["table"] for detail in exports}
