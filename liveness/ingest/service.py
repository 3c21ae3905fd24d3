"""Ingest one delivery: read it through its connector, link, deduplicate, store, account."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors import Batch, ConnectorError, SourceConfig, get_connector, make_transport
from liveness.errors import DeliveryRefused
from liveness.evidence.store import EvidenceStore, day_from_number
from liveness.identity import CardIndex, RollIndex
from liveness.ingest.deaths import load_death_records, load_deregistrations
from liveness.ingest.roll import load_cards, load_registry
from liveness.ingest.traces import (
    TRACE_SOURCES,
    drop_redeliveries,
    evidence_rows,
)
from models import Delivery, DeliveryStatus, QuarantinedRow, SourceCursor, SourceVolume

# The roll and the cards first: traces and death records link against them.
INGEST_ORDER = (
    "registry", "cards", "transit", "card_txn", "medical", "face", "cremation", "deregistration",
)  # fmt: skip
MAX_HASH_PARTS = 8
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".ndjson")


@dataclass
class DeliveryReport:
    """What became of one delivery's rows."""

    source: str
    file: str
    status: str
    rows_read: int = 0
    loaded: int = 0
    redelivered: int = 0
    quarantined: int = 0
    unmatched: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Return the report as a JSON-able dict."""
        return asdict(self)


@dataclass
class IngestContext:
    """What every delivery of one ingest needs: configuration, the store, cached indexes."""

    configs: Mapping[str, SourceConfig]
    store: EvidenceStore
    timezone: str
    _roll: RollIndex | None = field(default=None, repr=False)
    _cards: CardIndex | None = field(default=None, repr=False)
    # Per source and month, the sorted record hashes of each stored part: checking a delivery
    # against them costs a binary search per part, and adding a delivery costs nothing.
    _hashes: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict, repr=False)

    def roll(self, session: Session) -> RollIndex:
        """Return the roll index, loading it once."""
        if self._roll is None:
            self._roll = RollIndex.load(session)
        return self._roll

    def cards(self, session: Session) -> CardIndex:
        """Return the card index, loading it once."""
        if self._cards is None:
            self._cards = CardIndex.load(session)
        return self._cards

    def stored(
        self, session: Session, *, source: str, hashes: np.ndarray, days: np.ndarray
    ) -> np.ndarray:
        """Return, per trace, whether its record hash is already stored for `source`."""
        months = days.astype("datetime64[D]").astype("datetime64[M]")
        found = np.zeros(len(hashes), dtype=bool)
        for month in np.unique(months):
            key = (source, str(month))
            if key not in self._hashes:
                self._hashes[key] = [
                    self.store.existing_hashes(session, source=source, months=[str(month)])
                ]
            rows = np.flatnonzero(months == month)
            for part in self._hashes[key]:
                if part.size:
                    at = np.minimum(np.searchsorted(part, hashes[rows]), part.size - 1)
                    found[rows] |= part[at] == hashes[rows]
        return found

    def remember_hashes(self, *, source: str, traces: pd.DataFrame) -> None:
        """Add newly stored traces to the cached hashes of their months."""
        months = traces["day"].to_numpy().astype("datetime64[D]").astype("datetime64[M]")
        hashes = traces["record_hash"].to_numpy()
        for month in np.unique(months):
            key = (source, str(month))
            if key in self._hashes:
                parts = self._hashes[key]
                parts.append(np.sort(hashes[months == month]))
                # Many small daily parts make every check slow: fold them into one now and then.
                if len(parts) > MAX_HASH_PARTS:
                    self._hashes[key] = [np.sort(np.concatenate(parts))]

    def forget_indexes(self) -> None:
        """Drop cached indexes after the roll or the cards changed, or a delivery rolled back."""
        self._roll = None
        self._cards = None
        self._hashes.clear()


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
    try:
        connector = get_connector(source, context.configs)
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
    )
    earlier = session.scalars(
        select(Delivery).where(
            Delivery.source == source,
            Delivery.checksum == checksum,
            Delivery.status == DeliveryStatus.LOADED,
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
    )


def _load_batches(
    session: Session,
    *,
    delivery: Delivery,
    batches: Callable[[], Iterator[Batch]],
    context: IngestContext,
    on_batch: Callable[[int], None] | None,
) -> DeliveryReport:
    """Load every batch of a delivery; on a connector error keep only the refusal."""
    source = delivery.source
    report = DeliveryReport(source=source, file=delivery.path, status=DeliveryStatus.LOADED.value)
    savepoint = session.begin_nested()
    try:
        for batch in batches():
            report.rows_read += batch.rows_read
            _store_quarantine(session, delivery, batch.quarantined)
            report.quarantined += len(batch.quarantined)
            loaded, redelivered, unmatched = _load_rows(
                session, source=source, rows=batch.rows, delivery_id=delivery.id, context=context
            )
            report.loaded += loaded
            report.redelivered += redelivered
            report.unmatched += unmatched
            if on_batch is not None:
                on_batch(batch.rows_read)
        savepoint.commit()
    except ConnectorError as error:
        savepoint.rollback()
        context.forget_indexes()
        delivery.status = DeliveryStatus.REFUSED
        delivery.error = str(error)
        session.flush()
        return DeliveryReport(
            source=source, file=delivery.path, status=DeliveryStatus.REFUSED.value,
            error=str(error),
        )  # fmt: skip
    delivery.rows_read = report.rows_read
    delivery.rows_loaded = report.loaded
    delivery.rows_redelivered = report.redelivered
    delivery.rows_quarantined = report.quarantined
    delivery.rows_unmatched = report.unmatched
    session.flush()
    return report


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
    try:
        connector = get_connector(source, context.configs)
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


def _store_quarantine(session: Session, delivery: Delivery, quarantined: pd.DataFrame) -> None:
    if quarantined.empty:
        return
    session.add_all(
        QuarantinedRow(
            delivery_id=delivery.id,
            source=delivery.source,
            file_name=delivery.file_name,
            line=int(line),
            raw=str(raw),
            reason=str(reason),
        )
        for line, raw, reason in zip(
            quarantined["line"], quarantined["raw"], quarantined["reason"], strict=True
        )
    )
    session.flush()


def _load_rows(
    session: Session, *, source: str, rows: pd.DataFrame, delivery_id: int, context: IngestContext
) -> tuple[int, int, int]:
    """Dispatch a batch of good rows to the loader of its source."""
    if source == "registry":
        loaded, redelivered = load_registry(session, rows)
        context.forget_indexes()
        return loaded, redelivered, 0
    if source == "cards":
        result = load_cards(session, rows)
        context.forget_indexes()
        return result
    if source == "cremation":
        return load_death_records(
            session, source=source, rows=rows, roll=context.roll(session),
            delivery_id=delivery_id, timezone=context.timezone,
        )  # fmt: skip
    if source == "deregistration":
        return load_deregistrations(
            session, rows=rows, roll=context.roll(session), delivery_id=delivery_id,
            timezone=context.timezone,
        )  # fmt: skip
    if source in TRACE_SOURCES:
        return _load_traces(
            session, source=source, rows=rows, delivery_id=delivery_id, context=context
        )
    raise DeliveryRefused(f"no loader for source {source!r}")


def _load_traces(
    session: Session, *, source: str, rows: pd.DataFrame, delivery_id: int, context: IngestContext
) -> tuple[int, int, int]:
    """Link, deduplicate and append traces; keep daily volumes; pass deaths at discharge on."""
    traces = evidence_rows(
        source, rows, roll=context.roll(session), cards=context.cards(session),
        delivery_id=delivery_id, timezone=context.timezone,
    )  # fmt: skip
    stored = context.stored(
        session, source=source, hashes=traces["record_hash"].to_numpy(),
        days=traces["day"].to_numpy(),
    )  # fmt: skip
    fresh, redelivered = drop_redeliveries(traces, stored)
    context.store.append(session, source=source, traces=fresh, delivery_id=delivery_id)
    context.remember_hashes(source=source, traces=fresh)
    _add_volumes(session, source=source, days=fresh["day"].to_numpy())
    if source == "medical" and "discharge_outcome" in rows:
        died = rows["discharge_outcome"].eq("deceased").fillna(False).to_numpy(dtype=bool)
        if died.any():
            load_death_records(
                session, source="medical", rows=rows.loc[died],
                roll=context.roll(session), delivery_id=delivery_id, timezone=context.timezone,
            )  # fmt: skip
    unmatched = int((fresh["person_id"].to_numpy() < 0).sum())
    return len(fresh), redelivered, unmatched


def _add_volumes(session: Session, *, source: str, days: np.ndarray) -> None:
    """Add the day counts of newly stored traces to the source's daily volumes."""
    if days.size == 0:
        return
    values, counts = np.unique(days, return_counts=True)
    stored = {
        volume.day: volume
        for volume in session.scalars(
            select(SourceVolume).where(
                SourceVolume.source == source,
                SourceVolume.day.in_([day_from_number(int(v)) for v in values]),
            )
        )
    }
    for value, count in zip(values, counts, strict=True):
        day = day_from_number(int(value))
        if day in stored:
            stored[day].traces += int(count)
        else:
            session.add(SourceVolume(source=source, day=day, traces=int(count)))
    session.flush()
