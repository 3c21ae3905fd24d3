"""Inspection order pages: inspectors answer their region's leads, operators issue and review."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.routers.common import Id
from api.web.formats import local_time_text, money_text
from api.web.lead_evidence import evidence_view
from api.web.pages import Page, form_of, signed_in
from liveness.access import PERMISSIONS
from liveness.access.policy import authorize_region
from liveness.errors import NotFound
from liveness.integrity.policy import RULES, load_integrity_policy
from liveness.integrity.queries import (
    lead_answers,
    lead_history,
    narrow_scope,
    order_leads,
    order_page,
    rule_precision,
)
from liveness.integrity.service import (
    MOST_YUAN,
    RETURN_REASON_MAX,
    answer_lead,
    create_orders,
    review_answer,
)
from models import IntegrityLead, LeadStatus, LeadVerdict

router = APIRouter(prefix="/web", include_in_schema=False)
NOTE_MAX = 500  # lead_answers.note is free text; a page keeps it to a paragraph


def _formats(page: Page) -> dict[str, Any]:
    """Return the order pages' formatters: yuan amounts, and times in the agency's zone."""
    zone = page.services.settings.timezone

    def yuan(amount: Decimal | float | None) -> str:
        return page.t("none") if amount is None else money_text(amount, page.lang)

    def local_time(at: dt.datetime) -> str:
        return local_time_text(at, zone)

    return {"yuan": yuan, "local_time": local_time}


@router.get("/orders", response_class=HTMLResponse)
async def orders_page(
    page: Page = Depends(signed_in("orders.read")),  # noqa: B008
    created: int | None = None,
) -> Response:
    """List the inspection orders in the caller's scope, with rule feedback for operators."""
    scope = page.principal.region_scope()

    def work() -> dict[str, Any]:
        page.audit("orders.read", "inspection_order", None)
        orders, total = order_page(page.session, regions=scope, limit=200)
        precision = None
        if page.principal.role in PERMISSIONS["integrity.precision"]:
            precision = rule_precision(page.session).to_dict("records")
        return {"orders": orders, "total": total, "precision": precision}

    data = await page.run(work)
    policy = load_integrity_policy(page.services.settings.config_dir / "integrity.toml")
    due = page.today() + dt.timedelta(days=int(policy.get("orders", "due_days")))
    return page.render(
        "orders.html", **data, rules=RULES, default_due=due, created=created,
        may_create=page.principal.role in PERMISSIONS["orders.create"], values={}, errors={},
        **_formats(page),
    )  # fmt: skip


@router.post("/orders", response_class=HTMLResponse)
async def issue_orders(
    request: Request,
    page: Page = Depends(signed_in("orders.create")),  # noqa: B008
) -> Response:
    """Package the open leads (optionally of one rule and region) into one order per region."""
    values = await form_of(request, page.web)
    errors: dict[str, str] = {}
    rule = values.get("rule") or None
    if rule is not None and rule not in RULES:
        errors["rule"] = page.t("outcome_choose")
    region = values.get("region", "").strip() or None
    if region is not None and not region.isdigit():
        errors["region"] = page.t("bad_region")
    try:
        due_on = dt.date.fromisoformat(values.get("due_on", ""))
        if due_on <= page.today():
            errors["due_on"] = page.t("due_in_past")
    except ValueError:
        errors["due_on"] = page.t("bad_date")
    if errors:

        def again() -> dict[str, Any]:
            orders, total = order_page(page.session, regions=None, limit=200)
            return {"orders": orders, "total": total, "precision": None}

        data = await page.run(again)
        return page.render(
            "orders.html", status=422, **data, rules=RULES, default_due=values.get("due_on"),
            created=None, may_create=True, values=values, errors=errors, **_formats(page),
        )  # fmt: skip

    def work() -> int:
        issued = create_orders(
            page.session, due_on=due_on, issued_by=page.principal.name, rule=rule,
            regions=narrow_scope(region, None),
        )  # fmt: skip
        return len(issued)

    created = await page.run(work)
    return RedirectResponse(f"/web/orders?created={created}", 303)


def _order_context(page: Page, order_id: int) -> dict[str, Any]:
    """Gather an order page: the order, its leads with masked evidence in words, their answers."""
    page.audit("orders.read", "inspection_order", order_id)
    order, leads = order_leads(
        page.session, order_id=order_id, regions=page.principal.region_scope()
    )
    ids = [lead.id for lead in leads]
    answers = lead_answers(page.session, ids)
    history = lead_history(page.session, ids)
    return {
        "order": order,
        "leads": [
            {"lead": lead, "evidence": evidence_view(lead.evidence, page.lang),
             "answer": answers.get(lead.id), "history": history[lead.id],
             "may_answer": lead.status == LeadStatus.ORDERED
             and page.principal.role in PERMISSIONS["leads.answer"],
             "may_review": lead.status == LeadStatus.ANSWERED
             and page.principal.role in PERMISSIONS["leads.review"]}
            for lead in leads
        ],
        "verdicts": [str(v) for v in LeadVerdict],
        "reason_max": RETURN_REASON_MAX,
        **_formats(page),
    }  # fmt: skip


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page_view(
    order_id: Id,
    page: Page = Depends(signed_in("orders.read")),  # noqa: B008
) -> Response:
    """Show one order: each lead's rule, persons and evidence, with its answer or its form."""
    context = await page.run(lambda: _order_context(page, order_id))
    return page.render("order.html", **context, values={}, errors={}, error_lead=None)


def _amount(raw: str) -> Decimal | None:
    """Parse an amount in yuan with at most two decimals, or None if it is not one."""
    try:
        amount = Decimal(raw.strip() or "0")
    except InvalidOperation:
        return None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or amount < 0 or (isinstance(exponent, int) and exponent < -2):
        return None
    if amount > MOST_YUAN:  # more than the database keeps
        return None
    return amount


async def _back_to_order(
    page: Page,
    work: Callable[[], tuple[int, dict[str, Any] | None]],
    *,
    lead_id: Id,
    values: dict[str, str],
    errors: dict[str, str],
) -> Response:
    """Run a lead's form `work`; go back to its order, or show the order with the form's errors.

    `work` returns the lead's order and, when the form was refused, the order page's context.
    """
    order_id, context = await page.run(work)
    if context is None:
        return RedirectResponse(f"/web/orders/{order_id}#lead-{lead_id}", 303)
    return page.render(
        "order.html", status=422, **context, values=values, errors=errors, error_lead=lead_id
    )


@router.post("/leads/{lead_id}/answer", response_class=HTMLResponse)
async def answer(
    lead_id: Id,
    request: Request,
    page: Page = Depends(signed_in("leads.answer")),  # noqa: B008
) -> Response:
    """Record an inspector's answer to a lead: verdict, amount to recover, note."""
    values = await form_of(request, page.web)
    errors: dict[str, str] = {}
    verdict = values.get("verdict", "")
    if verdict not in {str(v) for v in LeadVerdict}:
        errors["verdict"] = page.t("required")
    amount = _amount(values.get("amount", ""))
    if amount is None:
        errors["amount"] = page.t("bad_amount")
    elif amount > 0 and verdict != LeadVerdict.CONFIRMED:
        errors["amount"] = page.t("amount_only_confirmed")
    note = values.get("note", "").strip()
    if len(note) > NOTE_MAX:
        errors["note"] = page.t("note_too_long")

    def work() -> tuple[int, dict[str, Any] | None]:
        lead = page.session.get(IntegrityLead, lead_id)
        if lead is None:
            raise NotFound(f"no integrity lead {lead_id}")
        authorize_region(page.principal, lead.region_code)
        order_id = lead.order_id
        if order_id is None or errors:
            context = None if order_id is None else _order_context(page, order_id)
            return order_id or 0, context
        answer_lead(
            page.session, lead_id=lead_id, verdict=verdict, amount_to_recover=amount or Decimal(0),
            answered_by=page.principal.name, note=note or None,
            regions=page.principal.region_scope(),
        )  # fmt: skip
        return order_id, None

    return await _back_to_order(page, work, lead_id=lead_id, values=values, errors=errors)


@router.post("/leads/{lead_id}/review", response_class=HTMLResponse)
async def review(
    lead_id: Id,
    request: Request,
    page: Page = Depends(signed_in("leads.review")),  # noqa: B008
) -> Response:
    """Accept an inspector's answer (the lead closes) or return it to the region, saying why."""
    values = await form_of(request, page.web)
    decision = values.get("decision", "")
    reason = values.get("reason", "").strip()
    errors: dict[str, str] = {}
    if decision not in ("accept", "return"):
        errors["decision"] = page.t("outcome_choose")
    elif decision == "return" and not reason:
        errors["reason"] = page.t("return_reason_required")
    elif len(reason) > RETURN_REASON_MAX:
        errors["reason"] = page.t("return_reason_too_long", max=RETURN_REASON_MAX)

    def work() -> tuple[int, dict[str, Any] | None]:
        lead = page.session.get(IntegrityLead, lead_id)
        if lead is None or lead.order_id is None:
            raise NotFound(f"no integrity lead {lead_id} in an order")
        if errors:
            return lead.order_id, _order_context(page, lead.order_id)
        answer = review_answer(
            page.session, lead_id=lead_id, accept=decision == "accept",
            reviewed_by=page.principal.name, reason=reason or None,
        )  # fmt: skip
        return answer.order_id, None

    return await _back_to_order(page, work, lead_id=lead_id, values=values, errors=errors)
