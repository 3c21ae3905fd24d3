"""The evidence store: traces in Parquet, partitioned by source and month."""

from liveness.evidence.store import EVIDENCE_SCHEMA, EvidenceStore, TraceWindow

__all__ = ["EVIDENCE_SCHEMA", "EvidenceStore", "TraceWindow"]
