"""Oversight pages: who the next run will suspend and why, the audit log, the visit sheet.

Each page's table also comes as CSV (`?format=csv`, api.web.export), with the page's
filters and scope, every row, audited as an export.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from api.web.export import csv_href, csv_response, wants_csv
from api.web.formats import money_text
from api.web.i18n import label
from api.web.pages import Page, page_count, page_number, signed_in
from api.web.payments import evidence_text
from api.web.reasons import plain_reasons
from liveness.access import authorize_grid
from liveness.views.audit_log import AuditFilter, audit_lines
from liveness.views.suspensions import SuspensionForecast, forecast_page, forecast_suspensions
from liveness.views.worker_queue import age_on, worker_queue
from models import Role, TaskKind, utcnow

router = APIRouter(prefix="/web", include_in_schema=False)

FORECAST_PAGE_SIZE = 50  # suspensions listed per page
AUDIT_PAGE_SIZE = 100  # audit entries per page


# Who the next run will suspend, and why.


def _forecast_row(page: Page, line: Any) -> dict[str, Any]:
    """Return a forecast line with its reason and amount in words."""
    cited = {**line.detail, **({"died_on": line.died_on} if line.died_on else {})}
    why = label(page.lang, "payment_event", line.event)
    evidence = evidence_text(cited, page.lang)
    return {
        **vars(line), "reason_text": label(page.lang, "list_reason", line.reason),
        "action_text": label(page.lang, "action", line.action),
        "benefit_text": label(page.lang, "benefit", line.benefit_type),
        "why_text": f"{why}：{evidence}" if page.lang == "zh" else f"{why}: {evidence}",
        "amount_text": money_text(line.amount, page.lang),
    }  # fmt: skip


@dataclass(frozen=True)
class _KeptForecast:
    """A whole forecast (every region, every line) and when it was made."""

    as_of: dt.date
    forecast: SuspensionForecast
    computed_at: dt.datetime


# One forecast at a time per server process: each tries the whole nightly run.
_FORECASTING = threading.Lock()


def _whole_forecast(page: Page, as_of: dt.date) -> tuple[SuspensionForecast, dt.datetime]:
    """Return the whole forecast as of `as_of`, reused for `web_forecast_minutes`."""
    state = page.request.app.state
    fresh_for = dt.timedelta(minutes=page.services.settings.web_forecast_minutes)
    with _FORECASTING:
        kept: _KeptForecast | None = getattr(state, "kept_forecast", None)
        if kept is not None and kept.as_of == as_of and utcnow() - kept.computed_at < fresh_for:
            return kept.forecast, kept.computed_at
        computed_at = utcnow()
        forecast = forecast_suspensions(
            page.session, as_of=as_of, store=page.services.store,
            policies=page.services.policies, timezone=page.services.settings.timezone,
            range_persons=page.services.settings.run_partition_persons,
        )  # fmt: skip
        # Beside a run there is no forecast to keep: the next view tries again.
        if not forecast.run_in_progress:
            state.kept_forecast = _KeptForecast(as_of, forecast, computed_at)
        return forecast, computed_at


@router.get("/suspensions/next", response_class=HTMLResponse)
async def next_suspensions(
    page: Page = Depends(signed_in("indicators.read")),  # noqa: B008
    number: int = Depends(page_number),
) -> Response:
    """Show who the next run would suspend and why, computed by the run itself, not kept."""
    export = wants_csv(page.request)
    as_of = page.today()
    regions = page.principal.region_scope()

    def work() -> Any:
        whole, computed_at = _whole_forecast(page, as_of)
        forecast = forecast_page(
            whole, regions=regions, limit=None if export else FORECAST_PAGE_SIZE,
            offset=0 if export else (number - 1) * FORECAST_PAGE_SIZE,
        )  # fmt: skip
        # Audited after the rollback of the forecast's savepoint, so that the entry stays.
        page.audit("suspensions.forecast.read", "list", as_of.isoformat(), {
            "regions": list(regions) if regions is not None else None,
            "page": None if export else number, "format": "csv" if export else "html",
            "persons": forecast.total,
        })  # fmt: skip
        return forecast, computed_at

    forecast, computed_at = await page.run(work)
    rows = [_forecast_row(page, line) for line in forecast.lines]
    if export:
        return csv_response(
            name="next-suspensions", day=as_of,
            columns=[page.t(k) for k in ("person_ref", "name", "id_number", "region",
                                         "grid_code", "benefit_type", "action", "reason",
                                         "forecast_why", "effective_on", "amount")],
            rows=[(r["person_ref"], r["name"], r["id_number_masked"], r["region_code"],
                   r["grid_code"], r["benefit_text"], r["action_text"], r["reason_text"],
                   r["why_text"], r["effective_on"], r["amount"]) for r in rows],
        )  # fmt: skip
    pages = page_count(forecast.total, FORECAST_PAGE_SIZE)
    return page.render(
        "suspensions_next.html", forecast=forecast, rows=rows, page_no=min(number, pages),
        pages=pages, amount_text=money_text(forecast.amount, page.lang), csv=csv_href(page.request),
        computed_at=computed_at, timezone=page.services.settings.timezone,
        keep_minutes=page.services.settings.web_forecast_minutes,
    )  # fmt: skip


# The audit log, for auditors.


def _day(raw: str | None) -> dt.date | None:
    """Read a date from the query leniently: an invalid one filters nothing."""
    try:
        return dt.date.fromisoformat((raw or "").strip()[:10]) if raw else None
    except ValueError:
        return None


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    page: Page = Depends(signed_in("audit.read")),  # noqa: B008
    actor: str | None = None,
    action: str | None = None,
    refused: str | None = None,
    target_type: str | None = None,
    target_ref: str | None = None,
    first_day: str | None = Query(None, alias="from"),
    last_day: str | None = Query(None, alias="to"),
    number: int = Depends(page_number),
) -> Response:
    """Show the audit log to auditors: newest first, filtered, refusals marked; read audited."""
    export = wants_csv(page.request)
    chosen = AuditFilter(
        actor=(actor or "").strip()[:64], action=(action or "").strip()[:64],
        refused=refused in ("1", "on", "true"), target_type=(target_type or "").strip()[:32],
        target_ref=(target_ref or "").strip()[:64], first_day=_day(first_day),
        last_day=_day(last_day),
    )  # fmt: skip
    timezone = page.services.settings.timezone

    def work() -> Any:
        page.audit("audit.read", "audit_log", None, {
            **{k: (v.isoformat() if isinstance(v, dt.date) else v)
               for k, v in vars(chosen).items() if v},
            "page": None if export else number, "format": "csv" if export else "html",
        })  # fmt: skip
        return audit_lines(
            page.session, chosen=chosen, timezone=timezone,
            limit=None if export else AUDIT_PAGE_SIZE,
            offset=0 if export else (number - 1) * AUDIT_PAGE_SIZE,
        )  # fmt: skip

    lines, total = await page.run(work)
    if export:
        return csv_response(
            name="audit-log", day=page.today(),
            columns=[page.t(k) for k in ("audit_at", "audit_actor", "action", "audit_refused",
                                         "audit_object", "audit_ref", "audit_detail",
                                         "audit_addr")],
            rows=[(line.at.strftime("%Y-%m-%d %H:%M:%S"), line.actor, line.action,
                   page.t("yes") if line.refused else "", line.target_type,
                   line.target_ref, _detail_text(line.detail), line.remote_addr)
                  for line in lines],
        )  # fmt: skip
    pages = page_count(total, AUDIT_PAGE_SIZE)
    query = {k: v for k, v in page.request.query_params.items() if k not in ("page", "format")}
    return page.render(
        "audit.html", lines=lines, total=total, chosen=chosen, page_no=min(number, pages),
        pages=pages, query=query, timezone=timezone, csv=csv_href(page.request),
        detail_text=_detail_text,
    )  # fmt: skip


def _detail_text(detail: dict[str, Any]) -> str:
    """Return an entry's detail as `key: value` pairs (the audit log's own words)."""
    return "; ".join(f"{k}: {v}" for k, v in detail.items() if v not in (None, "", [], {}))


# The printable visit sheet of one grid.


@router.get("/queue/sheet", response_class=HTMLResponse)
async def visit_sheet(
    page: Page = Depends(signed_in("tasks.read")),  # noqa: B008
    grid: str | None = None,
) -> Response:
    """Show one grid's open home visits as a sheet to print (A4) and take on the round."""
    code = (grid or "").strip()[:32]
    principal = page.principal
    today = page.today()

    def work() -> list[dict[str, Any]]:
        if not code:
            return []
        authorize_grid(principal, code)
        page.audit("tasks.read", "grid", code, {"status": "open", "kind": "home_visit",
                                                "sheet": True})  # fmt: skip
        rows, _ = worker_queue(
            page.session, grids=[code], now=utcnow(), today=today,
            kind=str(TaskKind.HOME_VISIT), sort="address", limit=None, offset=0,
        )  # fmt: skip
        return [
            {**vars(row), "age": age_on(row.birth_date, today),
             "kind_label": page.t(f"kind_{row.kind}"), "overdue": row.due_on < today,
             "reasons_text": plain_reasons(row.reasons, page.lang)}
            for row in rows
        ]  # fmt: skip

    visits = await page.run(work)
    grids = list(principal.grids) if principal.role == Role.GRID_WORKER else None
    return page.render(
        "visit_sheet.html", grid=code, visits=visits, today=today, my_grids=grids,
    )  # fmt: skip
