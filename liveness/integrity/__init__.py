"""Integrity screening: rules that find leads (many-to-one, several numbers, after death)."""

from liveness.integrity.policy import RULES, IntegrityPolicy, load_integrity_policy
from liveness.integrity.service import (
    LeadRefused,
    RefreshReport,
    answer_lead,
    create_orders,
    current_leads,
    find_leads,
    list_orders,
    order_leads,
    refresh_leads,
    review_answer,
    rule_precision,
)

__all__ = [
    "RULES",
    "IntegrityPolicy",
    "LeadRefused",
    "RefreshReport",
    "answer_lead",
    "create_orders",
    "current_leads",
    "find_leads",
    "list_orders",
    "load_integrity_policy",
    "order_leads",
    "refresh_leads",
    "review_answer",
    "rule_precision",
]
