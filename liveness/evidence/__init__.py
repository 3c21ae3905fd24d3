"""The evidence store: traces in Parquet, partitioned by source and month."""

from liveness.evidence.parts import EVIDENCE_SCHEMA
from liveness.evidence.store import EvidenceStore
from liveness.evidence.windows import TraceWindow

__all__ = ["EVIDENCE_SCHEMA", "EvidenceStore", "TraceWindow"]
