"""Ingest one delivery: read it through its connector, link, deduplicate, store, account."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors import ConnectorError, get_connector, make_transport
from liveness.errors import DeliveryRefused
from liveness.ingest.batches import _load_batches
from liveness.ingest.context import DeliveryReport, IngestContext
from models import Delivery, DeliveryStatus, SourceCursor, utcnow

# The roll and the cards first: traces and death records link against them.
INGEST_ORDER = (
    "registry", "cards", "transit", "card_txn", "medical", "face", "cremation", "deregistration",
    "registry_notice",
)  # fmt: skip
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".ndjson")


def ingest_order(sources: Iterable[str]) -> list[str]:
    """Return sources in the order they load: the built-in ones first, then the declared ones."""
    names = list(sources)
    return [s for s in INGEST_ORDER if s in names] + [s for s in names if s not in INGEST_ORDER]


def delivery_files(paths: list[Path]) -> list[Path]:
    """Expand folders into their delivery files, in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
            )
        else:
            files.append(path)
    return files


def _checksum(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# Long by design: the delivery's checks in order (missing, empty, same bytes), then the load.
def ingest_delivery(
    session: Session,
    *,
    source: str,
    path: Path,
    context: IngestContext,
    format: str | None = None,
    encoding: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> DeliveryReport:
    """Load one delivered file; a refused file leaves only its refusal in the delivery log.

    `on_batch`, if given, is called with the rows read after each batch (for progress bars).
    """
    # The moment of arrival bounds every date of the delivery (beyond a configured allowance).
    received_at = utcnow()
    try:
        connector = get_connector(
            source, context.configs, arrived_at=received_at, timezone=context.timezone
        )
    except ConnectorError as error:
        raise DeliveryRefused(str(error)) from None
    if not path.is_file():
        raise DeliveryRefused(f"{path}: no such file")
    checksum, size = _checksum(path)
    config = context.configs[source]
    delivery = Delivery(
        source=source,
        file_name=path.name,
        path=str(path),
        checksum=checksum,
        size_bytes=size,
        format=format or config.format or "auto",
        encoding=encoding or config.encoding,
        status=DeliveryStatus.LOADED,
        received_at=received_at,
    )
    if size == 0:
        # Nothing at all, not even a header: nothing to load, nothing to refuse.
        delivery.status = DeliveryStatus.EMPTY
        session.add(delivery)
        session.flush()
        return DeliveryReport(source=source, file=str(path), status=DeliveryStatus.EMPTY.value)
    earlier = session.scalars(
        select(Delivery).where(
            Delivery.source == source,
            Delivery.checksum == checksum,
            Delivery.status == DeliveryStatus.LOADED,
            # Every header-only file of a source has the same bytes: none duplicates another.
            Delivery.rows_read > 0,
        )
    ).first()
    if earlier is not None:
        # The same bytes again: every row is a re-delivery of the earlier file.
        delivery.status = DeliveryStatus.DUPLICATE
        delivery.rows_read = delivery.rows_redelivered = earlier.rows_read
        session.add(delivery)
        session.flush()
        return DeliveryReport(
            source=source, file=str(path), status=DeliveryStatus.DUPLICATE.value,
            rows_read=earlier.rows_read, redelivered=earlier.rows_read,
        )  # fmt: skip

    session.add(delivery)
    session.flush()
    return _load_batches(
        session,
        delivery=delivery,
        batches=lambda: connector.read(path, format=format, encoding=encoding),
        context=context,
        on_batch=on_batch,
        read_ahead=True,
    )


def ingest_pull(
    session: Session,
    *,
    source: str,
    context: IngestContext,
    secrets: Mapping[str, str],
    on_batch: Callable[[int], None] | None = None,
) -> DeliveryReport:
    """Pull a SQL or HTTP source since its stored watermark, as one delivery.

    The new watermark is stored in the same transaction as the rows it covers, so a crash
    before the commit pulls the same rows again next time (and they load once).
    """
    config = context.configs[source]
    received_at = utcnow()
    try:
        connector = get_connector(
            source, context.configs, arrived_at=received_at, timezone=context.timezone
        )
        transport = make_transport(config, secrets=secrets)
    except ConnectorError as error:
        raise DeliveryRefused(str(error)) from None
    if transport is None:
        raise DeliveryRefused(f"source {source!r} is delivered as files, not pulled")
    cursor = session.get(SourceCursor, source)
    since = cursor.watermark if cursor is not None else None
    pull = transport.pull(connector, watermark=since)
    delivery = Delivery(
        source=source,
        file_name=f"{config.transport} pull",
        path=pull.origin,
        # A pull has no bytes to hash: where it started identifies it in the log.
        checksum=hashlib.sha256(f"{pull.origin}|{since}".encode()).hexdigest(),
        size_bytes=0,
        format=config.transport,
        encoding="-",
        status=DeliveryStatus.LOADED,
        received_at=received_at,
    )
    session.add(delivery)
    session.flush()
    with pull:
        report = _load_batches(
            session, delivery=delivery, batches=lambda: pull.batches, context=context,
            on_batch=on_batch,
        )  # fmt: skip
    if report.error is None and pull.watermark is not None and pull.watermark != since:
        if cursor is None:
            session.add(SourceCursor(source=source, watermark=pull.watermark))
        else:
            cursor.watermark = pull.watermark
        session.flush()
    return report
