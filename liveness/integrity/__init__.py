"""Integrity screening: rules that find leads (many-to-one, several numbers, after death)."""

from liveness.integrity.policy import RULES, IntegrityPolicy, load_integrity_policy
from liveness.integrity.queries import (
    IntegrityInvalid,
    LeadEvent,
    current_leads,
    lead_answers,
    lead_history,
    lead_page,
    list_orders,
    narrow_scope,
    order_lead_counts,
    order_leads,
    order_page,
    rule_precision,
)
from liveness.integrity.service import (
    LeadRefused,
    LeadsDateInvalid,
    RefreshReport,
    answer_lead,
    create_orders,
    find_leads,
    refresh_leads,
    review_answer,
)

__all__ = [
    "RULES",
    "IntegrityInvalid",
    "IntegrityPolicy",
    "LeadEvent",
    "LeadRefused",
    "LeadsDateInvalid",
    "RefreshReport",
    "answer_lead",
    "create_orders",
    "current_leads",
    "find_leads",
    "lead_answers",
    "lead_history",
    "lead_page",
    "list_orders",
    "load_integrity_policy",
    "narrow_scope",
    "order_lead_counts",
    "order_leads",
    "order_page",
    "refresh_leads",
    "review_answer",
    "rule_precision",
]
