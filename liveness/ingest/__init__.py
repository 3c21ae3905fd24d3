"""Loading deliveries: the roll, cards, traces and death evidence, with nothing lost."""

from liveness.ingest.service import DeliveryReport, IngestContext, delivery_files, ingest_delivery

__all__ = ["DeliveryReport", "IngestContext", "delivery_files", "ingest_delivery"]
