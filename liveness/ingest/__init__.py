"""Loading deliveries: the roll, cards, traces and death evidence, with nothing lost."""

from liveness.ingest.context import DeliveryReport, IngestContext
from liveness.ingest.service import (
    INGEST_ORDER,
    delivery_files,
    ingest_delivery,
    ingest_order,
    ingest_pull,
)

__all__ = [
    "INGEST_ORDER",
    "DeliveryReport",
    "IngestContext",
    "delivery_files",
    "ingest_delivery",
    "ingest_order",
    "ingest_pull",
]
