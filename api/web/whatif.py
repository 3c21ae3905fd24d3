"""The what-if pages: the stored comparisons of a candidate policy with the live one, as charts.

`liveness what-if` makes and keeps each report (liveness.whatif); these pages only read them.
They hold figures per run and per grid, no person's data.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from api.web import charts
from api.web.formats import money_text
from api.web.pages import LEVELS, Page, signed_in
from liveness.whatif import stored_report, stored_reports

router = APIRouter(prefix="/web", include_in_schema=False)

# The figures compared side by side, as (message key, where in a side's figures).
COMPARED = (
    ("whatif_face_requests", ("totals", "face_requests")),
    ("whatif_home_visits", ("totals", "home_visits")),
    ("whatif_silent", ("totals", "silent_certifications")),
    ("whatif_unanswered", ("totals", "unanswered")),
    ("whatif_suspensions", ("totals", "suspensions")),
    ("whatif_deaths_caught", ("deaths", "caught")),
    ("whatif_proved_alive", ("suspended_then_proved_alive",)),
)


def _figure(side: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = side
    for key in path:
        value = value[key]
    return value


@router.get("/whatif", response_class=HTMLResponse)
async def whatif_list(page: Page = Depends(signed_in("runs.read"))) -> Response:  # noqa: B008
    """List the stored what-if reports, newest first."""
    reports = await page.run(lambda: stored_reports(page.services))
    return page.render("whatif_list.html", reports=reports)


@router.get("/whatif/{report_id}", response_class=HTMLResponse)
async def whatif_page(
    report_id: str,
    page: Page = Depends(signed_in("runs.read")),  # noqa: B008
) -> Response:
    """Show one what-if report: both policies' figures as charts, each with its table."""
    report = await page.run(lambda: stored_report(page.services, report_id=report_id))
    live, candidate = report["live"], report["candidate"]
    names = (page.t("whatif_live"), page.t("whatif_candidate"))
    compared = [
        (page.t(key), _figure(live, path), _figure(candidate, path)) for key, path in COMPARED
    ]
    level_labels = {level: page.t(f"level_{level}") for level in LEVELS}
    level_rows = [
        (f"{run['as_of']} {name}", {level: run[level] for level in LEVELS})
        for before, after in zip(live["runs"], candidate["runs"], strict=True)
        for name, run in ((names[0], before), (names[1], after))
    ]
    per_run = [
        (run["as_of"], [run["face_requests"], after["face_requests"]])
        for run, after in zip(live["runs"], candidate["runs"], strict=True)
    ]
    empty = {"face_requests": 0, "home_visits": 0}
    grids = [
        (grid, live["grids"].get(grid, empty), candidate["grids"].get(grid, empty))
        for grid in sorted(set(live["grids"]) | set(candidate["grids"]))
    ]
    money = {
        "live": money_text(Decimal(live["paid_after_death"]), page.lang),
        "candidate": money_text(Decimal(candidate["paid_after_death"]), page.lang),
        "avoided": money_text(Decimal(report["overpayment_avoided"]), page.lang),
    }
    return page.render(
        "whatif.html", report=report, names=names, compared=compared, money=money,
        grids=grids, run_pairs=list(zip(live["runs"], candidate["runs"], strict=True)),
        level_labels=level_labels, levels=LEVELS, level_rows=level_rows,
        compared_chart=charts.paired_bars(
            [(label, [a, b]) for label, a, b in compared], names=names,
            title=page.t("whatif_compared"),
        ),
        levels_chart=charts.stacked_bars(
            level_rows, series=LEVELS, labels=level_labels, colours=charts.LEVEL_COLOURS,
            title=page.t("whatif_levels"),
        ),
        face_chart=charts.paired_bars(per_run, names=names, title=page.t("whatif_face_per_run")),
        grids_chart=charts.paired_bars(
            [(grid, [a["face_requests"] + a["home_visits"], b["face_requests"] + b["home_visits"]])
             for grid, a, b in grids],
            names=names, title=page.t("whatif_grids"),
        ),
    )  # fmt: skip
