"""The persistent data model: SQLAlchemy tables (migrations live in `models/migrations`)."""

from models.access import ApiClient, AuditEntry
from models.api_state import ClientSecret, FaceCallback, IdempotencyKey, ListAck
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
    NoticeChannel,
    NoticeStatus,
    RecordStatus,
    Role,
    RunStatus,
    TaskKind,
    TaskStatus,
    VisitOutcome,
    utcnow,
)
from models.deliveries import Delivery, EvidencePart, QuarantinedRow, SourceCursor, SourceVolume
from models.estimators import EstimatorArtifact
from models.evidence import DeathRecord, Deregistration
from models.roll import Benefit, Card, Person
from models.runs import Assessment, Run, RunLock
from models.workflow import Certification, ListEntry, Notice, ReviewTask

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
    "ClientSecret",
    "DeathMatch",
    "DeathRecord",
    "Delivery",
    "DeliveryStatus",
    "Deregistration",
    "EstimatorArtifact",
    "EvidencePart",
    "FaceCallback",
    "IdempotencyKey",
    "Level",
    "ListAck",
    "ListAction",
    "ListEntry",
    "ListEntryStatus",
    "ListReason",
    "Notice",
    "NoticeChannel",
    "NoticeStatus",
    "Person",
    "QuarantinedRow",
    "RecordStatus",
    "ReviewTask",
    "Role",
    "Run",
    "RunLock",
    "RunStatus",
    "SourceCursor",
    "SourceVolume",
    "TaskKind",
    "TaskStatus",
    "VisitOutcome",
    "utcnow",
]
