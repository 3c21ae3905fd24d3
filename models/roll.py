"""The benefit roll: persons, their benefits, and the cards that link traces to them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import (
    Base,
    BenefitStatus,
    BenefitType,
    ListReason,
    Money,
    enum_column,
    utcnow,
)


class Person(Base):
    """Someone on the benefit roll; `id` is also the person's index in the evidence store."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_ref: Mapped[str] = mapped_column(String(32), unique=True)
    id_number: Mapped[str] = mapped_column(String(32), index=True)
    id_status: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    grid_code: Mapped[str] = mapped_column(String(32), index=True)
    bank_account: Mapped[str | None] = mapped_column(String(40))
    phone: Mapped[str | None] = mapped_column(String(20))
    # Where a grid worker finds the person; the roll's order of addresses is the walking order.
    address: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    benefits: Mapped[list[Benefit]] = relationship(back_populates="person")

    __table_args__ = (Index("ix_persons_name_birth", "name", "birth_date"),)


class Benefit(Base):
    """One benefit a person draws, with its monthly amount and payment status.

    The payment status is the state of `liveness.lists.payment`'s state machine: the roll's
    own status seeds it when the benefit first arrives, and afterwards only list entries
    change it (the roll's later word is kept in `roll_status`). The `suspension_*` columns
    describe the current suspension: why, from when, from which run's payments on it withheld
    payment, the reason a death amended (restored if the death is withdrawn), the run after
    which payments withheld are not paid back (prison), and a reinstatement held for approval.
    """

    __tablename__ = "benefits"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    benefit_type: Mapped[BenefitType] = mapped_column(enum_column(BenefitType))
    monthly_amount: Mapped[Decimal] = mapped_column(Money)
    benefit_start: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[BenefitStatus] = mapped_column(enum_column(BenefitStatus))
    roll_status: Mapped[BenefitStatus | None] = mapped_column(enum_column(BenefitStatus))
    suspension_reason: Mapped[ListReason | None] = mapped_column(enum_column(ListReason))
    suspended_from: Mapped[dt.date | None] = mapped_column(Date)
    suspended_as_of: Mapped[dt.date | None] = mapped_column(Date)
    prior_reason: Mapped[ListReason | None] = mapped_column(enum_column(ListReason))
    unpaid_after: Mapped[dt.date | None] = mapped_column(Date)
    held_entry_id: Mapped[int | None] = mapped_column(Integer)
    last_certified_on: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    person: Mapped[Person] = relationship(back_populates="benefits")

    __table_args__ = (UniqueConstraint("person_id", "benefit_type"),)


class Card(Base):
    """A card number and the holder it links to, valid from issue to cancellation."""

    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_no: Mapped[str] = mapped_column(String(32), unique=True)
    card_kind: Mapped[str] = mapped_column(String(20))
    id_number: Mapped[str] = mapped_column(String(32), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    issued_on: Mapped[dt.date] = mapped_column(Date)
    cancelled_on: Mapped[dt.date | None] = mapped_column(Date)


class RollChange(Base):
    """A person whose roll row (reference, grid, region, benefits) changed, logged by triggers.

    The database's own triggers write it (migration 0007), so no write can bypass it; the
    snapshot re-reads only these persons on top of the roll it kept. `xact_id` is the writing
    transaction's id on PostgreSQL, where ids do not follow commit order.
    """

    __tablename__ = "roll_changes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(Integer)
    xact_id: Mapped[int | None] = mapped_column(BigInteger, index=True)

    __table_args__ = ({"sqlite_autoincrement": True},)


class RollCache(Base):
    """The roll as of a mark of the change log, kept as Parquet for the next snapshot."""

    __tablename__ = "roll_cache"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    format: Mapped[int] = mapped_column(Integer)
    mark: Mapped[int] = mapped_column(BigInteger)
    persons: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    written_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
