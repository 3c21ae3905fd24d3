"""Certification runs and the assessment each made of each person."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Date, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Level, RunStatus, enum_column, utcnow


class Run(Base):
    """One certification run as of a date."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date, index=True)
    status: Mapped[RunStatus] = mapped_column(enum_column(RunStatus))
    policy_version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class Assessment(Base):
    """The level a run gave one person, with its score, deciding rule and reasons."""

    __tablename__ = "assessments"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    level: Mapped[Level] = mapped_column(enum_column(Level))
    score: Mapped[float] = mapped_column(Float)
    rule: Mapped[str] = mapped_column(String(32))
    reasons: Mapped[dict[str, Any]]
    policy_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("run_id", "person_id"),)


class RunLock(Base):
    """The lock that keeps certification runs one at a time, on any backend.

    A row is taken in a transaction of its own before a run starts and removed when it ends;
    a holder that died leaves a row whose heartbeat goes stale, which the next run may take.
    """

    __tablename__ = "run_locks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
