"""What arrived: deliveries, quarantined rows, cursors, daily volumes and evidence parts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, DeliveryStatus, enum_column, utcnow


class Delivery(Base):
    """One delivered file (or batch), with its checksum and the fate of every row."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    file_name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    encoding: Mapped[str] = mapped_column(String(16))
    status: Mapped[DeliveryStatus] = mapped_column(enum_column(DeliveryStatus))
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_loaded: Mapped[int] = mapped_column(Integer, default=0)
    rows_redelivered: Mapped[int] = mapped_column(Integer, default=0)
    rows_quarantined: Mapped[int] = mapped_column(Integer, default=0)
    rows_unmatched: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_deliveries_source_checksum", "source", "checksum"),)


class QuarantinedRow(Base):
    """A row that could not be understood, kept with its file, line, raw text and reason."""

    __tablename__ = "quarantined_rows"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    source: Mapped[str] = mapped_column(String(32), index=True)
    file_name: Mapped[str] = mapped_column(String(255))
    line: Mapped[int] = mapped_column(Integer)
    raw: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)


class SourceCursor(Base):
    """How far a source has been read (its watermark)."""

    __tablename__ = "source_cursors"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    watermark: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SourceVolume(Base):
    """Traces a source delivered for one local day: the basis of source health."""

    __tablename__ = "source_volumes"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    traces: Mapped[int] = mapped_column(Integer)


class EvidencePart(Base):
    """One Parquet file of the evidence store; a file without its row here does not exist."""

    __tablename__ = "evidence_parts"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    month: Mapped[str] = mapped_column(String(7))
    path: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(Integer)
    min_day: Mapped[dt.date] = mapped_column(Date)
    max_day: Mapped[dt.date] = mapped_column(Date)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Rows that matched nobody (None: written before this was counted), and the newest roll or
    # card delivery they were last linked against: a relink retries only parts behind it.
    unlinked_rows: Mapped[int | None] = mapped_column(Integer)
    linked_through: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_evidence_parts_source_month", "source", "month"),)


class Relink(Base):
    """One relinking of stored evidence after the roll or the card register changed."""

    __tablename__ = "relinks"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The newest roll or card delivery the evidence is now linked against.
    through_delivery_id: Mapped[int] = mapped_column(Integer)
    parts_read: Mapped[int] = mapped_column(Integer, default=0)
    parts_rewritten: Mapped[int] = mapped_column(Integer, default=0)
    traces_linked: Mapped[int] = mapped_column(Integer, default=0)
    cards_relinked: Mapped[int] = mapped_column(Integer, default=0)
    death_records_matched: Mapped[int] = mapped_column(Integer, default=0)
    deregistrations_matched: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
