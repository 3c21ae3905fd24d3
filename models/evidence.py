"""Death evidence and civil-registration events: small in volume, decisive in effect."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Date, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, DatePrecision, DeathMatch, RecordStatus, enum_column, utcnow


class DeathRecord(Base):
    """A record saying someone died, and how (or whether) it matched the roll."""

    __tablename__ = "death_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    id_number: Mapped[str | None] = mapped_column(String(32), index=True)
    id_status: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(64))
    sex: Mapped[str | None] = mapped_column(String(1))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    # Where the person lived, as the source says (a death notice's address region).
    region_code: Mapped[str | None] = mapped_column(String(12))
    # A date known to the month or year only is stored as the last day of it (or the day it
    # was registered, if earlier): the latest day the person may have been alive.
    died_on: Mapped[dt.date] = mapped_column(Date)
    died_on_precision: Mapped[DatePrecision] = mapped_column(
        enum_column(DatePrecision), default=DatePrecision.DAY, server_default="day"
    )
    recorded_on: Mapped[dt.date] = mapped_column(Date)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    match: Mapped[DeathMatch] = mapped_column(enum_column(DeathMatch))
    confidence: Mapped[float] = mapped_column(Float)
    status: Mapped[RecordStatus] = mapped_column(enum_column(RecordStatus))
    # A death review (or a supervisor) settled this record for good: who, when, and how.
    settled_by: Mapped[str | None] = mapped_column(String(64))
    settled_on: Mapped[dt.date | None] = mapped_column(Date)
    settlement: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("source", "record_id"),)


class Deregistration(Base):
    """A household-registration cancellation for a reason other than death."""

    __tablename__ = "deregistrations"

    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[str] = mapped_column(String(64), unique=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    id_number: Mapped[str | None] = mapped_column(String(32), index=True)
    name: Mapped[str | None] = mapped_column(String(64))
    deregistered_on: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(16))
    new_id_number: Mapped[str | None] = mapped_column(String(32))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    # Voided by its source (a later delivery's `voided=true`): it no longer acts.
    status: Mapped[RecordStatus] = mapped_column(
        enum_column(RecordStatus), default=RecordStatus.ACTIVE, server_default="active"
    )


class DeathNotification(Base):
    """A registry's signed notify message, received once: what it said and what was answered.

    The same message id again with the same content answers the stored acknowledgements; with
    other content it is refused as a replay.
    """

    __tablename__ = "death_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    sender: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(128))
    # SHA-256 of the signed bytes (the canonical header and message).
    digest: Mapped[str] = mapped_column(String(64))
    events: Mapped[int]
    acknowledgements: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("sender", "message_id"),)
