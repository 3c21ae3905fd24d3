"""Reads of leads, orders and answers in a caller's scope of regions, and the rules' precision."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import ColumnElement, Float, false, func, or_, select, type_coerce
from sqlalchemy.orm import QueryableAttribute, Session

from liveness.access.service import Forbidden
from liveness.errors import InputInvalid, NotFound
from liveness.integrity.policy import RULES
from models import (
    AnswerReview,
    AuditEntry,
    InspectionOrder,
    IntegrityLead,
    LeadAnswer,
    LeadStatus,
    LeadVerdict,
    OrderStatus,
)

CURRENT = (LeadStatus.OPEN, LeadStatus.ORDERED, LeadStatus.ANSWERED)
ANSWER_ACTION = "integrity.lead.answer"
REVIEW_ACTION = "integrity.lead.review"


class IntegrityInvalid(InputInvalid):
    """A query or an order asked for with a value the engine does not know."""


def _in_scope(region: str, regions: Sequence[str] | None) -> bool:
    """Return whether a region is inside a caller's scope of codes or prefixes (None: all)."""
    return regions is None or any(region.startswith(prefix) for prefix in regions)


def _region_clause(column: QueryableAttribute[str], regions: Sequence[str]) -> ColumnElement[bool]:
    """Return the SQL condition that a region column lies within codes or prefixes."""
    if not regions:
        return false()
    return or_(*(column.startswith(prefix, autoescape=True) for prefix in regions))


def _check_rule(rule: str | None) -> None:
    """Refuse a rule name that is not one of the integrity rules."""
    if rule is not None and rule not in RULES:
        raise IntegrityInvalid(f"rule: {rule!r} is not a rule; expected one of {', '.join(RULES)}")


def narrow_scope(region: str | None, regions: Sequence[str] | None) -> Sequence[str] | None:
    """Return the scope of a query for `region` (a code or prefix) by a caller scoped to `regions`.

    A region inside the caller's scope narrows it; one wider than it keeps the caller's
    prefixes under it; one disjoint from it is refused rather than answered empty.
    """
    if region is None:
        return regions
    if _in_scope(region, regions):
        return [region]
    assert regions is not None
    inside = [prefix for prefix in regions if prefix.startswith(region)]
    if not inside:
        raise Forbidden(f"region {region} is not one of this caller's regions")
    return inside


def current_leads(
    session: Session, *, rule: str | None = None, regions: Sequence[str] | None = None
) -> list[IntegrityLead]:
    """Return the leads not yet closed or withdrawn, by rule then id."""
    _check_rule(rule)
    query = select(IntegrityLead).where(IntegrityLead.status.in_(CURRENT))
    if rule is not None:
        query = query.where(IntegrityLead.rule == rule)
    if regions is not None:
        query = query.where(_region_clause(IntegrityLead.region_code, regions))
    return list(session.scalars(query.order_by(IntegrityLead.rule, IntegrityLead.id)))


def lead_page(
    session: Session,
    *,
    rule: str | None = None,
    status: LeadStatus | None = None,
    regions: Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[IntegrityLead], int]:
    """Return a page of leads in scope (by default the current ones) by id, and the total."""
    _check_rule(rule)
    query = select(IntegrityLead)
    if status is None:
        query = query.where(IntegrityLead.status.in_(CURRENT))
    else:
        query = query.where(IntegrityLead.status == status)
    if rule is not None:
        query = query.where(IntegrityLead.rule == rule)
    if regions is not None:
        query = query.where(_region_clause(IntegrityLead.region_code, regions))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(IntegrityLead.id).limit(limit).offset(offset))
    return list(rows), int(total)


def lead_answers(session: Session, lead_ids: Sequence[int]) -> dict[int, LeadAnswer]:
    """Return the answers given to some leads, by lead id."""
    if not lead_ids:
        return {}
    answers = session.scalars(select(LeadAnswer).where(LeadAnswer.lead_id.in_(list(lead_ids))))
    return {answer.lead_id: answer for answer in answers}


def list_orders(
    session: Session,
    *,
    regions: Sequence[str] | None = None,
    status: OrderStatus | None = None,
) -> list[InspectionOrder]:
    """Return inspection orders in scope, oldest first."""
    query = select(InspectionOrder)
    if regions is not None:
        query = query.where(_region_clause(InspectionOrder.region_code, regions))
    if status is not None:
        query = query.where(InspectionOrder.status == status)
    return list(session.scalars(query.order_by(InspectionOrder.id)))


def order_page(
    session: Session,
    *,
    regions: Sequence[str] | None = None,
    status: OrderStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[tuple[InspectionOrder, dict[str, int]]], int]:
    """Return a page of orders in scope, oldest first, with their leads counted by status."""
    query = select(InspectionOrder)
    if regions is not None:
        query = query.where(_region_clause(InspectionOrder.region_code, regions))
    if status is not None:
        query = query.where(InspectionOrder.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    orders = list(session.scalars(query.order_by(InspectionOrder.id).limit(limit).offset(offset)))
    counts = order_lead_counts(session, [order.id for order in orders])
    return [(order, counts[order.id]) for order in orders], int(total)


def order_lead_counts(session: Session, order_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Return, per order, how many of its leads are in each status."""
    counts: dict[int, dict[str, int]] = {order_id: {} for order_id in order_ids}
    if not counts:
        return counts
    rows = session.execute(
        select(IntegrityLead.order_id, IntegrityLead.status, func.count())
        .where(IntegrityLead.order_id.in_(list(counts)))
        .group_by(IntegrityLead.order_id, IntegrityLead.status)
    ).all()
    for order_id, lead_status, count in rows:
        if order_id is not None:
            counts[order_id][str(lead_status)] = int(count)
    return counts


def order_leads(
    session: Session, *, order_id: int, regions: Sequence[str] | None = None
) -> tuple[InspectionOrder, list[IntegrityLead]]:
    """Return an order in scope and its leads."""
    order = session.get(InspectionOrder, order_id)
    if order is None:
        raise NotFound(f"no inspection order {order_id}")
    if not _in_scope(order.region_code, regions):
        raise Forbidden(f"region {order.region_code} is not one of this caller's regions")
    leads = session.scalars(
        select(IntegrityLead).where(IntegrityLead.order_id == order_id).order_by(IntegrityLead.id)
    )
    return order, list(leads)


@dataclass(frozen=True)
class LeadEvent:
    """One step of a lead's history: an answer given, accepted or returned (with its reason)."""

    lead_id: int
    at: dt.datetime
    actor: str
    step: str  # answered, accepted, returned
    verdict: str | None = None
    amount_to_recover: str | None = None
    reason: str | None = None


def lead_history(session: Session, lead_ids: Sequence[int]) -> dict[int, list[LeadEvent]]:
    """Return, per lead, its answers and reviews in order, from the audit log that records them."""
    history: dict[int, list[LeadEvent]] = {lead_id: [] for lead_id in lead_ids}
    if not history:
        return history
    rows = session.execute(
        select(AuditEntry.target_ref, AuditEntry.at, AuditEntry.actor, AuditEntry.action,
               AuditEntry.detail)
        .where(
            AuditEntry.target_type == "integrity_lead",
            AuditEntry.target_ref.in_([str(lead_id) for lead_id in history]),
            AuditEntry.action.in_([ANSWER_ACTION, REVIEW_ACTION]),
        )
        .order_by(AuditEntry.at, AuditEntry.id)
    ).all()  # fmt: skip
    for ref, at, actor, action, detail in rows:
        if action == ANSWER_ACTION:
            event = LeadEvent(
                lead_id=int(ref), at=at, actor=actor, step="answered",
                verdict=detail.get("verdict"), amount_to_recover=detail.get("amount_to_recover"),
            )  # fmt: skip
        else:
            event = LeadEvent(
                lead_id=int(ref), at=at, actor=actor, step=str(detail.get("review")),
                reason=detail.get("reason"),
            )  # fmt: skip
        history[int(ref)].append(event)
    return history


def rule_precision(session: Session, *, by_month: bool = False) -> pd.DataFrame:
    """Return, per rule (and month of review), accepted answers, confirmed share, amounts."""
    rows = session.execute(
        select(
            IntegrityLead.rule, LeadAnswer.verdict,
            type_coerce(LeadAnswer.amount_to_recover, Float), LeadAnswer.reviewed_at,
        )
        .join(LeadAnswer, LeadAnswer.lead_id == IntegrityLead.id)
        .where(LeadAnswer.review == AnswerReview.ACCEPTED)
    ).all()  # fmt: skip
    frame = pd.DataFrame(rows, columns=["rule", "verdict", "amount", "reviewed_at"])
    keys = ["rule", "month"] if by_month else ["rule"]
    frame["month"] = pd.to_datetime(frame["reviewed_at"], utc=True).dt.strftime("%Y-%m")
    for verdict in LeadVerdict:
        frame[verdict.value] = frame["verdict"].eq(verdict.value)
    frame["recovered"] = frame["amount"].where(frame["confirmed"], 0.0)
    totals = frame.groupby(keys, sort=True).agg(
        reviewed=("verdict", "size"),
        confirmed=("confirmed", "sum"),
        explained=("explained", "sum"),
        data_error=("data_error", "sum"),
        recovered=("recovered", "sum"),
    )
    totals["precision"] = totals["confirmed"] / totals["reviewed"]
    return totals.reset_index()
