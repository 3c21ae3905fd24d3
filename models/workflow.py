"""Certifications, review tasks and the suspension / reinstatement list."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import (
    Base,
    CertificationSource,
    ListAction,
    ListEntryStatus,
    ListReason,
    Money,
    NoticeChannel,
    NoticeStatus,
    PaymentEvent,
    TaskKind,
    TaskStatus,
    enum_column,
    utcnow,
)
from models.reasons import CompactReasons


class Certification(Base):
    """A confirmation that a person may keep drawing a benefit until `valid_until`."""

    __tablename__ = "certifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    source: Mapped[CertificationSource] = mapped_column(enum_column(CertificationSource))
    mark: Mapped[str] = mapped_column(String(32))
    certified_on: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), index=True)
    policy_version: Mapped[str | None] = mapped_column(String(64))
    evidence: Mapped[dict[str, Any]] = mapped_column(CompactReasons, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReviewTask(Base):
    """A face verification or home visit opened for a person whose evidence is not strong."""

    __tablename__ = "review_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    kind: Mapped[TaskKind] = mapped_column(enum_column(TaskKind))
    status: Mapped[TaskStatus] = mapped_column(enum_column(TaskStatus))
    grid_code: Mapped[str] = mapped_column(String(32))
    priority: Mapped[float] = mapped_column(Float)
    opened_on: Mapped[dt.date] = mapped_column(Date)
    due_on: Mapped[dt.date] = mapped_column(Date)
    # A home visit's planned week (its Monday), within its grid's weekly capacity
    # (liveness.review.capacity); None for other kinds and for visits opened before planning.
    planned_week: Mapped[dt.date | None] = mapped_column(Date)
    opened_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    closed_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    closed_on: Mapped[dt.date | None] = mapped_column(Date)
    reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Why the task was opened: `renewal` (certification due), `face_failed` (a visit after a
    # failed or ignored face verification), `after_visit` (a face verification offered after a
    # visit found nobody or a move), `death_record`.
    cause: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(32))
    outcome_detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claim_expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_review_tasks_grid_status", "grid_code", "status", "priority"),)


class ListEntry(Base):
    """An immutable line for the payment system; a correction is a new entry."""

    __tablename__ = "list_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    benefit_id: Mapped[int] = mapped_column(ForeignKey("benefits.id"), index=True)
    action: Mapped[ListAction] = mapped_column(enum_column(ListAction))
    reason: Mapped[ListReason] = mapped_column(enum_column(ListReason))
    effective_on: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[ListEntryStatus] = mapped_column(enum_column(ListEntryStatus))
    # The event of the payment state machine that made the entry; `detail` cites its evidence.
    event: Mapped[PaymentEvent | None] = mapped_column(enum_column(PaymentEvent))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Who caused the entry (a grid worker's outcome, an operator) and who approved it if it
    # was held for a second operator: never the same person.
    caused_by: Mapped[str] = mapped_column(String(64), default="system", server_default="system")
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[dt.datetime | None]
    # Or who rejected it, and why: a rejected entry is never published, its suspension stands.
    rejected_by: Mapped[str | None] = mapped_column(String(64))
    rejected_at: Mapped[dt.datetime | None]
    rejection_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Notice(Base):
    """A message to a person (SMS or app), waiting for the messaging gateway to send it."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("review_tasks.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    channel: Mapped[NoticeChannel] = mapped_column(enum_column(NoticeChannel))
    template: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(String(500))
    status: Mapped[NoticeStatus] = mapped_column(enum_column(NoticeStatus), index=True)
    created_on: Mapped[dt.date] = mapped_column(Date)
    sent_at: Mapped[dt.datetime | None]
