"""The supervisor's pages: the dashboard, the runs and their reports, a region, a grid.

A supervisor drills down from the dashboard to a region's grids and from a grid to its
people and its workers' load. Every page is scoped: what the caller's scope does not cover
answers 404, exactly as what does not exist.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from api.routers.common import Id
from api.web import charts
from api.web.export import csv_href, csv_response, wants_csv
from api.web.formats import local_time_text, money_text
from api.web.i18n import Lang, label, translate
from api.web.pages import LEVELS, Page, page_count, page_number, signed_in
from liveness.access import PERMISSIONS, hide_outside_grids
from liveness.errors import Hidden
from liveness.review.plan import GridPlan, grid_weeks
from liveness.views import dashboard
from liveness.views.grids import (
    grid_people,
    grid_summary,
    grid_workload,
    latest_run_id,
    region_grids,
    region_known,
)
from liveness.views.indicators import indicators
from liveness.views.overdue import grids_behind
from liveness.views.runs import get_run, runs_page
from models import utcnow

router = APIRouter(prefix="/web", include_in_schema=False)

GRIDS_PER_PAGE = 50  # rows of a region's grid table
PEOPLE_PER_PAGE = 50  # rows of a grid's people table
RUNS_SHOWN = 50
RUNS_CSV = ("run", "as_of", "run_status", "started_at", "finished_at", "persons_graded")


def _region_code(raw: str | None) -> str | None:
    """Return a region filter as typed (at most 6 characters), None when empty."""
    return (raw or "").strip()[:6] or None


def no_region(code: str) -> str:
    """Return the message an unknown (or hidden) region gives."""
    return f"no region {code}"


def no_grid(code: str) -> str:
    """Return the message an unknown (or hidden) grid gives."""
    return f"no grid {code}"


# The dashboard.


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard_page(
    page: Page = Depends(signed_in("indicators.read")),  # noqa: B008
    region: str | None = None,
) -> Response:
    """Show the indicators, levels by region and over runs, the backlog and the list."""
    region = _region_code(region)

    def work() -> dict[str, Any] | None:
        page.audit("dashboard.read", "indicators", region)
        # A code nobody lives under is said to be unknown, not drawn as empty charts.
        known = region is None or (region.isdigit() and region_known(page.session, region=region))
        if not known:
            return None
        figures = indicators(page.session, region=region, grid=None, today=page.today())
        by_region = (
            {} if figures.run_id is None
            else dashboard.levels_by_region(page.session, run_id=figures.run_id, region=region)
        )  # fmt: skip
        trend = dashboard.level_trend(page.session, region=region)
        backlog = dashboard.review_backlog(page.session, today=page.today(), region=region)
        behind, behind_total = grids_behind(
            page.session, today=page.today(), regions=None if region is None else [region]
        )
        return {
            "figures": figures, "by_region": by_region, "trend": trend, "backlog": backlog,
            "behind": behind, "behind_total": behind_total,
            "movements": dashboard.list_movements(page.session, region=region),
            "recent": dashboard.recent_list_lines(page.session, region=region),
        }  # fmt: skip

    data = await page.run(work)
    if data is None:
        return page.render("dashboard_unknown.html", region=region)
    level_labels = {level: page.t(f"level_{level}") for level in LEVELS}
    charts_svg = {
        "levels": charts.bars(
            [(level_labels[lv], data["figures"].levels.get(lv, 0)) for lv in LEVELS],
            title=page.t("levels"),
        ),
        "by_region": charts.stacked_bars(
            list(data["by_region"].items()), series=LEVELS, labels=level_labels,
            colours=charts.LEVEL_COLOURS, title=page.t("levels_by_region"),
        ),
        "trend": charts.line_chart(
            [(p.as_of.strftime("%m-%d"), p.levels) for p in data["trend"]], series=LEVELS,
            labels=level_labels, colours=charts.LEVEL_COLOURS, title=page.t("trend"),
        ),
        "backlog": charts.bars(
            [(page.t(f"kind_{k}"), v) for k, v in sorted(data["backlog"].open_by_kind.items())],
            title=page.t("backlog"),
        ),
    }  # fmt: skip
    return page.render(
        "dashboard.html", region=region, levels=LEVELS, level_labels=level_labels,
        charts=charts_svg, **data,
    )  # fmt: skip


# Runs.


@router.get("/runs", response_class=HTMLResponse)
async def runs_list(page: Page = Depends(signed_in("runs.read"))) -> Response:  # noqa: B008
    """List the certification runs, newest first (`?format=csv`: every run)."""
    export = wants_csv(page.request)

    def work() -> tuple[list[Any], int]:
        if export:
            page.audit("runs.read", "run", None, {"format": "csv"})
        return runs_page(page.session, limit=None if export else RUNS_SHOWN, offset=0)

    rows, total = await page.run(work)
    if export:
        zone = page.services.settings.timezone
        return csv_response(
            name="runs", day=page.today(), columns=[page.t(k) for k in RUNS_CSV],
            rows=[[r.id, r.as_of, label(page.lang, "run_status", r.status),
                   local_time_text(r.started_at, zone),
                   local_time_text(r.finished_at, zone),
                   (r.report or {}).get("persons")] for r in rows],
        )  # fmt: skip
    return page.render("runs.html", runs=rows, total=total, csv=csv_href(page.request))


def _count_list(counts: dict[str, Any], lang: Lang, kind: str) -> str:
    """Return counts by domain value in words: 上门核查 3 个、人脸认证 2 个 / 3 home visits..."""
    parts = [
        translate(lang, "report_count_of", what=label(lang, kind, key), count=f"{int(n):,}")
        for key, n in counts.items()
        if isinstance(n, int | float) and n
    ]
    return translate(lang, "report_list_separator").join(parts) or translate(lang, "none")


def report_sentences(report: dict[str, Any], lang: Lang) -> list[str]:
    """Return what a run did as sentences in the page's language (a stopped run says why)."""
    levels = report.get("levels", {})
    said = []
    if "persons" in report:
        said.append(
            translate(
                lang, "report_graded", as_of=report.get("as_of", ""),
                persons=f"{int(report['persons']):,}",
                **{lv: f"{int(levels.get(lv, 0)):,}" for lv in LEVELS},
            )
        )  # fmt: skip
    if "certified_silently" in report:
        said.append(
            translate(lang, "report_certified", count=f"{int(report['certified_silently']):,}")
        )
    if "tasks_opened" in report:
        opened = report["tasks_opened"]
        said.append(
            translate(
                lang, "report_tasks", opened=f"{sum(int(v) for v in opened.values()):,}",
                kinds=_count_list(opened, lang, "kind"),
                closed=f"{int(report.get('tasks_closed_by_data', 0)):,}",
                cancelled=f"{int(report.get('tasks_cancelled', 0)):,}",
            )
        )  # fmt: skip
    if "suspensions" in report:
        said.append(
            translate(
                lang, "report_suspensions", count=f"{int(report['suspensions']):,}",
                amount=money_text(report.get("overpayment_total", 0), lang),
                held=f"{int(report.get('held_for_approval', 0)):,}",
            )
        )  # fmt: skip
    overdue = report.get("overdue_reviews")
    if isinstance(overdue, dict):
        said.append(
            translate(
                lang, "report_overdue", total=f"{int(overdue.get('total', 0)):,}",
                grids=f"{int(overdue.get('grids_behind', 0)):,}",
            )
            if overdue.get("total")
            else translate(lang, "report_no_overdue")
        )  # fmt: skip
    guard = report.get("guard")
    if isinstance(guard, dict) and guard.get("tripped"):
        said.append(
            translate(lang, "report_guard_overridden" if guard.get("overridden") else
                      "report_guard_stopped")
        )  # fmt: skip
    ranges = report.get("ranges")
    if isinstance(ranges, dict):
        said.append(
            translate(lang, "report_ranges", count=f"{int(ranges.get('count', 0)):,}",
                      persons=f"{int(ranges.get('persons', 0)):,}")
        )  # fmt: skip
    return said


def report_list_rows(report: dict[str, Any], lang: Lang) -> list[dict[str, str]]:
    """Return the run's list entries by action and reason, labelled, amounts formatted."""
    rows = []
    for key, value in (report.get("list") or {}).items():
        action, _, reason = str(key).partition(":")
        rows.append(
            {
                "action": label(lang, "action", action),
                "reason": label(lang, "list_reason", reason),
                "entries": f"{int(value.get('entries', 0)):,}",
                "amount": money_text(value.get("amount", 0), lang),
            }
        )  # fmt: skip
    return rows


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(
    run_id: Id,
    page: Page = Depends(signed_in("runs.read")),  # noqa: B008
) -> Response:
    """Show one run's report in words: levels, certifications, tasks, the list and the guard."""
    run = await page.run(lambda: get_run(page.session, run_id=run_id))
    report = run.report or {}
    level_labels = {level: page.t(f"level_{level}") for level in LEVELS}
    chart = charts.bars(
        [(level_labels[lv], int(report.get("levels", {}).get(lv, 0))) for lv in LEVELS],
        title=page.t("levels"),
    )
    return page.render(
        "run.html", run=run, report=report, chart=chart, level_labels=level_labels,
        levels=LEVELS, sentences=report_sentences(report, page.lang),
        list_rows=report_list_rows(report, page.lang),
        timezone=page.services.settings.timezone,
    )  # fmt: skip


# The drill-down: a region's grids, a grid's people and workers.


@router.get("/regions/{code}", response_class=HTMLResponse)
async def region_page(
    code: str,
    page: Page = Depends(signed_in("indicators.read")),  # noqa: B008
    number: int = Depends(page_number),
) -> Response:
    """List a region's grids (a code or a prefix): people by level, open and overdue reviews."""
    code = code[:6]

    def work() -> tuple[list[Any], int]:
        page.audit("regions.read", "region", code, {"page": number})
        known = code.isdigit() and region_known(page.session, region=code)
        if not known or not page.principal.may_see_region(code):
            raise Hidden(no_region(code))
        return region_grids(
            page.session, region=code, run_id=latest_run_id(page.session), today=page.today(),
            # A CSV export (`?format=csv&table=grids`) holds every grid, not one page.
            limit=None if wants_csv(page.request) else GRIDS_PER_PAGE,
            offset=0 if wants_csv(page.request) else (number - 1) * GRIDS_PER_PAGE,
        )  # fmt: skip

    rows, total = await page.run(work)
    pages = page_count(total, GRIDS_PER_PAGE)
    return page.render(
        "region.html", code=code, grids=rows, total=total, page_no=min(number, pages),
        pages=pages, levels=LEVELS,
        level_labels={level: page.t(f"level_{level}") for level in LEVELS},
        totals={
            "persons": sum(g.persons for g in rows), "open": sum(g.open_reviews for g in rows),
            "overdue": sum(g.overdue_reviews for g in rows),
        },
    )  # fmt: skip


@router.get("/grids/{grid_code}", response_class=HTMLResponse)
async def grid_page(
    grid_code: str,
    page: Page = Depends(signed_in("persons.read")),  # noqa: B008
    number: int = Depends(page_number),
) -> Response:
    """List a grid's people, paged, with its reviews and (for supervisors) its workers' load.

    A grid worker sees only their own grids; another grid answers as an absent one.
    """
    grid_code = grid_code[:32]
    supervising = page.principal.role in PERMISSIONS["indicators.read"]
    days = page.services.settings.web_visits_days

    def work() -> dict[str, Any]:
        page.audit("grids.read", "grid", grid_code, {"page": number})
        hide_outside_grids(page.principal, grid_code, absent=no_grid(grid_code))
        run_id = latest_run_id(page.session)
        summary = grid_summary(page.session, grid=grid_code, run_id=run_id, today=page.today())
        if summary is None or not page.principal.may_see_region(summary.region_code):
            raise Hidden(no_grid(grid_code))
        people, total = grid_people(
            page.session, grid=grid_code, run_id=run_id, today=page.today(),
            limit=None if wants_csv(page.request) else PEOPLE_PER_PAGE,
            offset=0 if wants_csv(page.request) else (number - 1) * PEOPLE_PER_PAGE,
        )  # fmt: skip
        workload = (
            grid_workload(
                page.session, grid=grid_code, today=page.today(), now=utcnow(),
                since=page.today() - dt.timedelta(days=days),
            )
            if supervising
            else []
        )  # fmt: skip
        weeks = _visit_weeks(page, grid_code) if supervising else None
        return {"summary": summary, "people": people, "total": total, "workload": workload,
                "visit_weeks": weeks}  # fmt: skip

    data = await page.run(work)
    pages = page_count(data["total"], PEOPLE_PER_PAGE)
    return page.render(
        "grid.html", grid_code=grid_code, page_no=min(number, pages), pages=pages,
        levels=LEVELS, level_labels={level: page.t(f"level_{level}") for level in LEVELS},
        supervising=supervising, days=days, **data,
    )  # fmt: skip


def _visit_weeks(page: Page, grid_code: str) -> GridPlan:
    """Return a grid's home visits planned for the weeks ahead, against its capacity."""
    policy = page.services.certification_policy
    return grid_weeks(page.session, grid=grid_code, today=page.today(), capacity=policy.capacity)
