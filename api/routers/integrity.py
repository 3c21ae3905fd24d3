"""Integrity leads and inspection orders: read in scope, package, answer, review, feed back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import Caller, require
from api.routers.common import ERRORS, Id, IdempotencyHeader, Limit, Offset
from api.schemas import (
    AnswerCreate,
    AnswerRead,
    LeadAnswerRead,
    LeadPage,
    LeadRead,
    OrderBatchRead,
    OrderCreate,
    OrderDetailRead,
    OrderPage,
    OrderRead,
    PrecisionRead,
    PrecisionRow,
    ReviewCreate,
)
from liveness.access.idempotency import request_hash
from liveness.integrity import (
    answer_lead,
    create_orders,
    lead_answers,
    lead_page,
    load_integrity_policy,
    narrow_scope,
    order_lead_counts,
    order_leads,
    order_page,
    review_answer,
    rule_precision,
)
from liveness.views.masking import mask_evidence
from models import InspectionOrder, IntegrityLead, LeadAnswer, LeadStatus, OrderStatus

router = APIRouter(tags=["integrity"], responses=ERRORS)
CENT = Decimal("0.01")

RegionQuery = Annotated[
    str | None,
    Query(pattern=r"^\d{1,6}$", description="Region code or prefix (3301: every county of it)."),
]


def _leads_read(session: Session, leads: Sequence[IntegrityLead]) -> list[LeadRead]:
    """Return leads with their answers, as the API shows them."""
    answers = lead_answers(session, [lead.id for lead in leads])
    items = []
    for lead in leads:
        given = answers.get(lead.id)
        answered = None if given is None else LeadAnswerRead.model_validate(given)
        # Identity and card numbers masked: what an inspector checks needs the last digits only.
        shown = {"answer": answered, "evidence": mask_evidence(lead.evidence)}
        items.append(LeadRead.model_validate(lead).model_copy(update=shown))
    return items


def _order_read(order: InspectionOrder, counts: dict[str, int]) -> OrderRead:
    """Return an order with its leads counted by status."""
    return OrderRead(
        id=order.id, region_code=order.region_code, status=str(order.status),
        due_on=order.due_on, issued_by=order.issued_by, created_at=order.created_at,
        closed_at=order.closed_at, lead_counts=counts,
    )  # fmt: skip


def _answer_read(session: Session, answer: LeadAnswer) -> AnswerRead:
    """Return an answer with the status its lead is now in."""
    lead = session.get(IntegrityLead, answer.lead_id)
    assert lead is not None
    return AnswerRead(
        **LeadAnswerRead.model_validate(answer).model_dump(), lead_id=answer.lead_id,
        order_id=answer.order_id, lead_status=str(lead.status),
    )  # fmt: skip


@router.get("/leads", response_model=LeadPage, summary="Integrity leads")
def list_leads(
    caller: Annotated[Caller, Depends(require("leads.read"))],
    rule: Annotated[str | None, Query(max_length=32, description="Only this rule.")] = None,
    status: Annotated[
        LeadStatus | None, Query(description="Only this status (default: open, ordered, answered).")
    ] = None,
    region: RegionQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> LeadPage:
    """List leads with the persons involved and the evidence; inspectors see their regions."""
    with caller.audit_read("leads.read", "integrity_lead", None) as audit:
        scope = narrow_scope(region, caller.principal.region_scope())
        rows, total = lead_page(
            caller.session, rule=rule, status=status, regions=scope, limit=limit, offset=offset
        )
        audit.detail = {
            "rule": rule, "status": status, "region": region, "limit": limit, "offset": offset,
            "leads": [lead.id for lead in rows],
        }  # fmt: skip
        items = _leads_read(caller.session, rows)
    return LeadPage(items=items, total=total, limit=limit, offset=offset)


@router.post(
    "/orders", response_model=OrderBatchRead, status_code=201, summary="Create inspection orders"
)
def create(
    body: OrderCreate, caller: Annotated[Caller, Depends(require("orders.create"))]
) -> OrderBatchRead:
    """Package every open lead (of a rule, in some regions) into one order per region."""
    entry = caller.audit("orders.create", "inspection_order", None, body.model_dump(mode="json"))
    today = caller.today()
    if body.due_on is not None and body.due_on < today:
        raise RequestValidationError(
            [{"loc": ("body", "due_on"), "msg": f"must not be before today ({today})"}]
        )
    due_on = body.due_on
    if due_on is None:
        policy = load_integrity_policy(caller.services.settings.config_dir / "integrity.toml")
        due_on = today + dt.timedelta(days=int(policy.get("orders", "due_days")))
    orders = create_orders(
        caller.session, due_on=due_on, issued_by=caller.name, rule=body.rule,
        regions=body.regions,
    )  # fmt: skip
    entry.detail = {**entry.detail, "orders": [order.id for order in orders]}
    counts = order_lead_counts(caller.session, [order.id for order in orders])
    return OrderBatchRead(orders=[_order_read(order, counts[order.id]) for order in orders])


@router.get("/orders", response_model=OrderPage, summary="Inspection orders")
def list_orders(
    caller: Annotated[Caller, Depends(require("orders.read"))],
    status: OrderStatus | None = None,
    region: RegionQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> OrderPage:
    """List inspection orders, oldest first; inspectors see their regions' orders."""
    with caller.audit_read("orders.read", "inspection_order", None) as audit:
        scope = narrow_scope(region, caller.principal.region_scope())
        rows, total = order_page(
            caller.session, regions=scope, status=status, limit=limit, offset=offset
        )
        audit.detail = {
            "status": status, "region": region, "limit": limit, "offset": offset,
            "orders": [order.id for order, _ in rows],
        }  # fmt: skip
    return OrderPage(
        items=[_order_read(order, counts) for order, counts in rows], total=total, limit=limit,
        offset=offset,
    )  # fmt: skip


@router.get("/orders/{order_id}", response_model=OrderDetailRead, summary="An inspection order")
def read_order(
    order_id: Id, caller: Annotated[Caller, Depends(require("orders.read"))]
) -> OrderDetailRead:
    """Return an order with its leads, their evidence and answers; 403 outside one's regions."""
    with caller.audit_read("orders.read", "inspection_order", order_id) as audit:
        order, leads = order_leads(
            caller.session, order_id=order_id, regions=caller.principal.region_scope()
        )
        audit.detail = {"leads": [lead.id for lead in leads]}
        items = _leads_read(caller.session, leads)
    counts = order_lead_counts(caller.session, [order.id])[order.id]
    return OrderDetailRead(**_order_read(order, counts).model_dump(), leads=items)


@router.post("/leads/{lead_id}/answer", response_model=AnswerRead, summary="Answer a lead")
def answer(
    lead_id: Id,
    body: AnswerCreate,
    caller: Annotated[Caller, Depends(require("leads.answer"))],
    idempotency_key: IdempotencyHeader = None,
) -> AnswerRead | JSONResponse:
    """Answer a lead of an order (confirmed, explained, data_error); again if it was returned."""
    entry = caller.audit("leads.answer", "integrity_lead", lead_id, body.model_dump(mode="json"))

    def change() -> AnswerRead:
        given = answer_lead(
            caller.session, lead_id=lead_id, verdict=body.verdict,
            amount_to_recover=body.amount_to_recover, answered_by=caller.name, note=body.note,
            regions=caller.principal.region_scope(),
        )  # fmt: skip
        return _answer_read(caller.session, given)

    return caller.idempotent(
        entry, key=idempotency_key,
        digest=request_hash("leads.answer", lead_id, body.model_dump(mode="json")),
        change=change,
    )  # fmt: skip


@router.post("/leads/{lead_id}/review", response_model=AnswerRead, summary="Review an answer")
def review(
    lead_id: Id, body: ReviewCreate, caller: Annotated[Caller, Depends(require("leads.review"))]
) -> AnswerRead:
    """Accept a lead's answer (the lead closes) or return it to the region to answer again."""
    caller.audit("leads.review", "integrity_lead", lead_id, body.model_dump(mode="json"))
    reviewed = review_answer(
        caller.session, lead_id=lead_id, accept=body.decision == "accept", reviewed_by=caller.name,
        reason=body.reason,
    )  # fmt: skip
    return _answer_read(caller.session, reviewed)


@router.get("/integrity/precision", response_model=PrecisionRead, summary="Rule precision")
def precision(
    caller: Annotated[Caller, Depends(require("integrity.precision"))],
    by_month: Annotated[bool, Query(description="One row per rule and month of review.")] = False,
) -> PrecisionRead:
    """Return each rule's share of reviewed leads confirmed and the amounts to recover."""
    frame = rule_precision(caller.session, by_month=by_month)
    rows = []
    for row in frame.to_dict("records"):
        row_read = PrecisionRow(
            rule=str(row["rule"]), month=str(row["month"]) if by_month else None,
            reviewed=int(row["reviewed"]), confirmed=int(row["confirmed"]),
            explained=int(row["explained"]), data_error=int(row["data_error"]),
            precision=float(row["precision"]),
            recovered=Decimal(str(float(row["recovered"]))).quantize(CENT),
        )  # fmt: skip
        rows.append(row_read)
    return PrecisionRead(by_month=by_month, rules=rows)
