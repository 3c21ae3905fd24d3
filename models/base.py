"""Declarative base with a constraint naming convention, shared column types and enums."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, MetaData, Numeric, String
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(12, 2)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        """Store aware datetimes as UTC; naive ones are refused, they are a bug."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    """Return the current time in UTC."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        dt.datetime: UtcDateTime,
    }


def enum_column(enum: type[StrEnum]) -> String:
    """Return a string column wide enough for `enum`'s values (stored as text, not a DB enum)."""
    return String(max(len(member.value) for member in enum))


class BenefitType(StrEnum):
    """Long-term benefits whose entitlement is certified."""

    ENTERPRISE_PENSION = "enterprise_pension"
    INSTITUTION_PENSION = "institution_pension"
    RESIDENT_PENSION = "resident_pension"
    WORK_INJURY_LONG_TERM = "work_injury_long_term"
    SURVIVOR_PENSION = "survivor_pension"
    UNEMPLOYMENT = "unemployment"


class BenefitStatus(StrEnum):
    """Payment status of a benefit."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class DeliveryStatus(StrEnum):
    """What became of a delivered file."""

    LOADED = "loaded"
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    # A file with no data rows (a header alone, or nothing): nothing to load, nothing lost.
    EMPTY = "empty"


class DeathMatch(StrEnum):
    """How a death record was linked to the roll."""

    ID_NUMBER = "id_number"
    DEMOGRAPHIC = "demographic"
    AMBIGUOUS = "ambiguous"
    NAME_MISMATCH = "name_mismatch"
    # A death notice naming someone without positive identification (a number and name with
    # no other agreeing attribute, or no number at all): a death review, never a suspension.
    UNCONFIRMED = "unconfirmed"
    UNMATCHED = "unmatched"


class DatePrecision(StrEnum):
    """How much of a date of death its source knew: the day, only the month, only the year."""

    DAY = "day"
    MONTH = "month"
    YEAR = "year"


class RecordStatus(StrEnum):
    """Lifecycle of a source record that others may correct or void."""

    ACTIVE = "active"
    VOIDED = "voided"
    # Contradicted by later proof of life (a face pass, a visit) or settled by a death review
    # as not this person's death: it no longer acts.
    REFUTED = "refuted"


class RunStatus(StrEnum):
    """States of a certification run."""

    RUNNING = "running"
    PUBLISHED = "published"
    FAILED = "failed"
    STOPPED_BY_GUARD = "stopped_by_guard"


class Level(StrEnum):
    """Survival-evidence levels."""

    STRONG = "strong"
    MEDIUM = "medium"
    WEAK = "weak"
    DECEASED = "deceased"


class CertificationSource(StrEnum):
    """How an entitlement was certified."""

    DATA_COMPARISON = "data_comparison"
    FACE = "face"
    VISIT = "visit"
    COUNTER = "counter"
    PROXY = "proxy"
    CARRIED_OVER = "carried_over"


class TaskKind(StrEnum):
    """Kinds of review task."""

    FACE_VERIFICATION = "face_verification"
    HOME_VISIT = "home_visit"
    DEATH_REVIEW = "death_review"


class TaskStatus(StrEnum):
    """Lifecycle of a review task."""

    OPEN = "open"
    CLAIMED = "claimed"
    DONE = "done"
    CLOSED_BY_DATA = "closed_by_data"
    CANCELLED = "cancelled"


# A task still waiting for its review: open, or claimed by someone on their way.
LIVE_TASK_STATUSES = (TaskStatus.OPEN, TaskStatus.CLAIMED)


class ListAction(StrEnum):
    """What a list entry asks the payment system to do."""

    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    TERMINATE = "terminate"
    # A suspended benefit's reason changes (a death found while suspended for a lapse, say):
    # payment stays stopped; the entry carries the new start and any overpayment to recover.
    AMEND = "amend"


class ListReason(StrEnum):
    """Why a list entry was made: the reason of a suspension, or what ended one."""

    DECEASED = "deceased"
    LAPSED = "lapsed"
    IMPRISONED = "imprisoned"
    DUPLICATE_IDENTITY = "duplicate_identity"
    PROOF_OF_LIFE = "proof_of_life"
    DEATH_WITHDRAWN = "death_withdrawn"
    DUPLICATE_WITHDRAWN = "duplicate_withdrawn"


class PaymentEvent(StrEnum):
    """What happened to a benefit's payment status: every list entry names its event."""

    # Death evidence from any source: a death record, a visit or a death review.
    DEATH = "death"
    # Every death that held the person was withdrawn by its source (voided, corrected away).
    DEATH_WITHDRAWN = "death_withdrawn"
    # The person was seen alive after the suspension: a face pass, a visit.
    PROOF_OF_LIFE = "proof_of_life"
    # A lapsed certification renewed by data (a strong grade): ends a lapse, nothing else.
    RECERTIFIED = "recertified"
    # Certification lapsed after a sent notice, its period, and a review that failed.
    LAPSE = "lapse"
    IMPRISONMENT = "imprisonment"
    # A deregistration says this number duplicates another: one person drawing twice.
    DUPLICATE_IDENTITY = "duplicate_identity"
    DUPLICATE_WITHDRAWN = "duplicate_withdrawn"
    # A death suspension that nobody contested for the policy's period: the benefit ends.
    DEATH_STOOD = "death_stood"
    # A second operator approved a held reinstatement.
    APPROVAL = "approval"
    # A second operator rejected a held reinstatement: the suspension stands.
    REJECTION = "rejection"


class ListEntryStatus(StrEnum):
    """Whether the payment system may apply an entry yet."""

    PUBLISHED = "published"
    HELD = "held"


class Role(StrEnum):
    """Roles of API clients."""

    ADMIN = "admin"
    OPERATOR = "operator"
    GRID_WORKER = "grid_worker"
    PAYMENT = "payment"
    VERIFIER = "verifier"
    NOTIFIER = "notifier"
    AUDITOR = "auditor"
    # Inspects integrity leads of their regions (检查订单) and answers them.
    INSPECTOR = "inspector"
    # A civil registry (a hospital, a funeral home) pushing signed death notices.
    REGISTRAR = "registrar"


class NoticeChannel(StrEnum):
    """How a person is told that something is asked of them."""

    SMS = "sms"
    APP = "app"
    # A letter posted or handed over by staff, recorded by hand.
    LETTER = "letter"


class NoticeStatus(StrEnum):
    """Whether the messaging gateway has sent a notice."""

    PENDING = "pending"
    SENT = "sent"


class VisitOutcome(StrEnum):
    """What a grid worker found on a home visit (or a verifier on a face verification)."""

    ALIVE_CONFIRMED = "alive_confirmed"
    DECEASED = "deceased"
    MOVED_AWAY = "moved_away"
    NOT_FOUND = "not_found"
    REFUSED = "refused"
    IN_HOSPITAL = "in_hospital"
    IMPRISONED = "imprisoned"
    FACE_PASSED = "face_passed"
    FACE_FAILED = "face_failed"
    LAPSED = "lapsed"
    NOT_A_DEATH = "not_a_death"
    # A face verification a grid worker turns into a home visit (it cannot be done remotely).
    VISIT_NEEDED = "visit_needed"
