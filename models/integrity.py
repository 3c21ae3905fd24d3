"""Integrity screening: leads found by rules, inspection orders, and the answers to them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Date, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Money, enum_column, utcnow


class LeadStatus(StrEnum):
    """Lifecycle of an integrity lead."""

    OPEN = "open"
    ORDERED = "ordered"
    ANSWERED = "answered"
    CLOSED = "closed"
    # The rule no longer fires (the data changed) before anyone was asked to inspect it.
    WITHDRAWN = "withdrawn"


class OrderStatus(StrEnum):
    """Lifecycle of an inspection order."""

    OPEN = "open"
    ANSWERED = "answered"
    CLOSED = "closed"


class LeadVerdict(StrEnum):
    """What an inspector found about a lead."""

    CONFIRMED = "confirmed"
    EXPLAINED = "explained"
    DATA_ERROR = "data_error"


class AnswerReview(StrEnum):
    """What the issuing level decided about an answer."""

    ACCEPTED = "accepted"
    RETURNED = "returned"


class InspectionOrder(Base):
    """Leads of one region packaged for the region's inspectors, with a due date."""

    __tablename__ = "inspection_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    status: Mapped[OrderStatus] = mapped_column(enum_column(OrderStatus))
    due_on: Mapped[dt.date] = mapped_column(Date)
    issued_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None]


class IntegrityLead(Base):
    """One finding of one rule: the persons involved and the evidence that makes it a lead."""

    __tablename__ = "integrity_leads"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(32), index=True)
    # Stable per finding (the shared account, the pair of numbers): re-detection updates it.
    key: Mapped[str] = mapped_column(String(128))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    person_refs: Mapped[list[Any]] = mapped_column(default=list)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    amount_at_risk: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[LeadStatus] = mapped_column(enum_column(LeadStatus))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("inspection_orders.id"), index=True)
    policy_version: Mapped[str] = mapped_column(String(12))
    found_on: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("rule", "key"),)


class LeadAnswer(Base):
    """An inspector's answer to one lead, and the issuing level's review of it."""

    __tablename__ = "lead_answers"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("integrity_leads.id"), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("inspection_orders.id"), index=True)
    verdict: Mapped[LeadVerdict] = mapped_column(enum_column(LeadVerdict))
    amount_to_recover: Mapped[Decimal] = mapped_column(Money)
    note: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str] = mapped_column(String(64))
    answered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    review: Mapped[AnswerReview | None] = mapped_column(enum_column(AnswerReview))
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[dt.datetime | None]
    # Why the last review returned the answer; cleared when the region answers again.
    return_reason: Mapped[str | None] = mapped_column(String(500))
