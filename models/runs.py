"""Certification runs and the assessment each made of each person."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    func,
    select,
    true,
)
from sqlalchemy.orm import Mapped, QueryableAttribute, aliased, mapped_column
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.selectable import ScalarSelect

from models.base import Base, Level, RunStatus, enum_column, utcnow
from models.reasons import CompactReasons


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
    """The level a run gave one person, with its score, deciding rule and reasons.

    A run stores a person's assessment only when it differs from the one that stood (level,
    rule or the gist of the reasons), when the person is new to grading, when the one that
    stood is older than the policy's refresh period, or when the person left the graded roll
    (``graded`` false); the rest it confirms by being published. So "the assessments of run R"
    are each person's latest row at or before R (`assessments_as_of`), not the rows of R.
    """

    __tablename__ = "assessments"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    level: Mapped[Level] = mapped_column(enum_column(Level))
    score: Mapped[float] = mapped_column(Float)
    rule: Mapped[str] = mapped_column(String(32))
    reasons: Mapped[dict[str, Any]] = mapped_column(CompactReasons)
    policy_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # What the run compares to decide whether a person's assessment changed: a hash of the
    # level, rule and the facts the reasons cite, but not the numbers that drift every night.
    gist: Mapped[int | None] = mapped_column(BigInteger)
    # False on the row that records a person's leaving the graded roll (no benefit in force).
    graded: Mapped[bool] = mapped_column(default=True, server_default=true())

    __table_args__ = (
        UniqueConstraint("run_id", "person_id"),
        Index("ix_assessments_person_run", "person_id", "run_id"),
    )


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


def assessments_as_of(run_id: int, *where: ColumnElement[bool]) -> type[Assessment]:
    """Return the assessments that stood at run `run_id`: each graded person's latest row.

    The result is an alias of `Assessment` over a subquery; select from it as from the table.
    `where` narrows the persons looked at (say, a page's ids) before the latest rows are found.
    """
    latest = (
        select(Assessment.person_id, func.max(Assessment.run_id).label("run_id"))
        .where(Assessment.run_id <= run_id, *where)
        .group_by(Assessment.person_id)
        .subquery()
    )
    standing = (
        select(Assessment)
        .join(
            latest,
            and_(Assessment.person_id == latest.c.person_id, Assessment.run_id == latest.c.run_id),
        )
        .where(Assessment.graded)
    )
    return aliased(Assessment, standing.subquery("standing"))


def level_as_of(
    run_id: int, person_id: ColumnElement[int] | QueryableAttribute[int]
) -> ScalarSelect[Any]:
    """Return the level that stood for `person_id` at run `run_id` (None: not graded then).

    A subquery correlated with the enclosing query's person, for a page of people.
    """
    return (
        select(case((Assessment.graded, Assessment.level), else_=None))
        .where(Assessment.person_id == person_id, Assessment.run_id <= run_id)
        .order_by(Assessment.run_id.desc())
        .limit(1)
        .scalar_subquery()
    )
