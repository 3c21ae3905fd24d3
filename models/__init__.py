"""The persistent data model: SQLAlchemy tables (migrations live in `models/migrations`)."""

from models.access import ApiClient, AuditEntry
from models.base import (
    Base,
    BenefitStatus,
    BenefitType,
    CertificationSource,
    DeathMatch,
    DeliveryStatus,
    Level,
    ListAction,
    ListEntryStatus,
    ListReason,
    RecordStatus,
    Role,
    RunStatus,
    TaskKind,
    TaskStatus,
    utcnow,
)
from models.deliveries import Delivery, EvidencePart, QuarantinedRow, SourceCursor, SourceVolume
from models.evidence import DeathRecord, Deregistration
from models.roll import Benefit, Card, Person
from models.runs import Assessment, Run
from models.workflow import Certification, ListEntry, ReviewTask

__all__ = [
    "ApiClient",
    "Assessment",
    "AuditEntry",
    "Base",
    "Benefit",
    "BenefitStatus",
    "BenefitType",
    "Card",
    "Certification",
    "CertificationSource",
    "DeathMatch",
    "DeathRecord",
    "Delivery",
    "DeliveryStatus",
    "Deregistration",
    "EvidencePart",
    "Level",
    "ListAction",
    "ListEntry",
    "ListEntryStatus",
    "ListReason",
    "Person",
    "QuarantinedRow",
    "RecordStatus",
    "ReviewTask",
    "Role",
    "Run",
    "RunStatus",
    "SourceCursor",
    "SourceVolume",
    "TaskKind",
    "TaskStatus",
    "utcnow",
]
