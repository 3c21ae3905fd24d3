"""Ingest one delivery: read it through its connector, link, deduplicate, store, account."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from connectors import Batch, ConnectorError, SourceConfig, get_connector, make_transport, threads
from liveness.errors import DeliveryRefused
from liveness.evidence.store import DeliveryWriter, EvidenceStore, day_from_number
from liveness.identity import CardIndex, RollIndex
from liveness.ingest.deaths import load_death_records, load_deregistrations
from liveness.ingest.roll import load_cards, load_registry
from liveness.ingest.traces import (
    TRACE_SOURCES,
    drop_redeliveries,
    evidence_rows,
)
from models import Delivery, DeliveryStatus, QuarantinedRow, SourceCursor, SourceVolume, utcnow

# The roll and the cards first: traces and death records link against them.
INGEST_ORDER = (
    "registry", "cards", "transit", "card_txn", "medical", "face", "cremation", "deregistration",
)  # fmt: skip
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


class _SortedRuns:
    """A growing set of 64-bit hashes kept as a few sorted runs, for batch membership tests.

    A new batch becomes a run of its own; runs merge when the newer is as large as the older
    (as in a binary counter), so a set of n hashes has at most log2(n / batch) runs and each
    hash is merged log2 times: adding costs little, and a test costs one binary search per run.
    """

    def __init__(self, hashes: np.ndarray) -> None:
        self.runs: list[np.ndarray] = []
        self.add(hashes)

    def add(self, hashes: np.ndarray) -> None:
        """Add hashes (repeats of stored ones are harmless)."""
        self.add_sorted(np.sort(hashes))

    def add_sorted(self, hashes: np.ndarray) -> None:
        """Add hashes already in ascending order."""
        if not hashes.size:
            return
        self.runs.append(hashes)
        while len(self.runs) > 1 and self.runs[-2].size <= 2 * self.runs[-1].size:
            newer = self.runs.pop()
            merged = np.concatenate([self.runs[-1], newer])
            # Two sorted runs side by side: the stable sort (a timsort) finds them and merges
            # them in linear time, where the default quicksort sorts all over again; in place,
            # it needs no second copy of the merged run.
            merged.sort(kind="stable")
            self.runs[-1] = merged

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Return whether each hash is in the set."""
        order = np.argsort(hashes)
        found = np.empty(hashes.size, dtype=bool)
        found[order] = self.contains_sorted(hashes[order])
        return found

    def contains_sorted(self, hashes: np.ndarray) -> np.ndarray:
        """Return whether each of hashes in ascending order is in the set."""
        found = np.zeros(hashes.size, dtype=bool)
        if not hashes.size:
            return found
        # Searched in sorted order, the binary searches walk each run front to back (several
        # times faster on runs of millions than searching in the batch's random order).
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, hashes), run.size - 1)
            found |= run[at] == hashes
        return found


@dataclass
class IngestContext:
    """What every delivery of one ingest needs: configuration, the store, cached indexes."""

    configs: Mapping[str, SourceConfig]
    store: EvidenceStore
    timezone: str
    _roll: RollIndex | None = field(default=None, repr=False)
    _cards: CardIndex | None = field(default=None, repr=False)
    # Per source and month, the record hashes already stored, for re-delivery checks.
    _hashes: dict[tuple[str, str], _SortedRuns] = field(default_factory=dict, repr=False)

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

    def redelivered(
        self, session: Session, *, source: str, hashes: np.ndarray, days: np.ndarray
    ) -> np.ndarray:
        """Return, per trace, whether its record is stored for `source` or came earlier.

        Earlier means in this batch or in an earlier batch of the ingest: records first seen
        here are remembered as stored (each such trace is kept, so it will be).
        """
        months = days.astype("datetime64[D]").astype("datetime64[M]")
        seen = np.zeros(len(hashes), dtype=bool)
        if not months.size:
            return seen
        first, last = months.min(), months.max()
        for month in [first] if first == last else np.unique(months):
            key = (source, str(month))
            if key not in self._hashes:
                self._hashes[key] = _SortedRuns(
                    self.store.existing_hashes(session, source=source, months=[str(month)])
                )
            if first == last:
                seen = _seen(self._hashes[key], hashes)
            else:
                rows = np.flatnonzero(months == month)
                seen[rows] = _seen(self._hashes[key], hashes[rows])
        return seen

    def forget_indexes(self) -> None:
        """Drop cached indexes after the roll or the cards changed, or a delivery rolled back."""
        self._roll = None
        self._cards = None
        self._hashes.clear()

    def forget_hashes(self) -> None:
        """Drop the cached record hashes after a delivery rolled back (the indexes still hold)."""
        self._hashes.clear()


def _seen(runs: _SortedRuns, hashes: np.ndarray) -> np.ndarray:
    """Return whether each hash is in `runs` or repeats one before it; add the new ones.

    One sort serves the membership test, shows the repeats (neighbours) and is the run added.
    """
    ordered = np.sort(hashes)
    hit = runs.contains_sorted(ordered)
    repeats = ordered.size > 1 and bool((ordered[1:] == ordered[:-1]).any())
    if not repeats and not hit.any():
        runs.add_sorted(ordered)  # the usual case: every record is new
        return np.zeros(hashes.size, dtype=bool)
    seen = np.isin(hashes, ordered[hit])
    if repeats:
        # Which of equal hashes comes first is the batch's order, not the sort's.
        seen |= pd.Series(hashes).duplicated().to_numpy()
    runs.add(hashes[~seen])
    return seen


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
    # The moment of arrival bounds every date of the delivery (beyond a configured allowance).
    received_at = utcnow()
    try:
        connector = get_connector(source, context.configs, arrived_at=received_at)
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


def _load_batches(
    session: Session,
    *,
    delivery: Delivery,
    batches: Callable[[], Iterator[Batch]],
    context: IngestContext,
    on_batch: Callable[[int], None] | None,
    read_ahead: bool = False,
) -> DeliveryReport:
    """Load every batch of a delivery; on a connector error keep only the refusal.

    With `read_ahead` the connector reads the next batch on a thread of its own while this
    one is linked and stored (only for files: a pull's connection belongs to this thread).
    """
    source = delivery.source
    report = DeliveryReport(source=source, file=delivery.path, status=DeliveryStatus.LOADED.value)
    traces = (
        _TraceSink(context.store.delivery_writer(source=source, delivery_id=delivery.id))
        if source in TRACE_SOURCES
        else None
    )
    savepoint = session.begin_nested()
    try:
        batches_read = (
            threads.read_ahead(batches(), name="delivery-batches") if read_ahead else batches()
        )
        for batch in batches_read:
            report.rows_read += batch.rows_read
            _store_quarantine(session, delivery, batch.quarantined)
            report.quarantined += len(batch.quarantined)
            loaded, redelivered, unmatched = _load_rows(
                session, source=source, rows=batch.rows, delivery_id=delivery.id,
                context=context, traces=traces,
            )  # fmt: skip
            report.loaded += loaded
            report.redelivered += redelivered
            report.unmatched += unmatched
            if on_batch is not None:
                on_batch(batch.rows_read)
        if traces is not None:
            # Parts and volumes enter the transaction only once every batch has loaded.
            traces.writer.finish(session)
            _add_volumes(session, source=source, counts=traces.volumes)
        savepoint.commit()
    except ConnectorError as error:
        savepoint.rollback()
        context.forget_hashes()
        delivery.status = DeliveryStatus.REFUSED
        delivery.error = str(error)
        session.flush()
        return DeliveryReport(
            source=source, file=delivery.path, status=DeliveryStatus.REFUSED.value,
            error=str(error),
        )  # fmt: skip
    finally:
        if traces is not None:
            traces.writer.abort()  # nothing left to drop once finished
    if report.rows_read == 0:
        report.status = DeliveryStatus.EMPTY.value
        delivery.status = DeliveryStatus.EMPTY
    delivery.rows_read = report.rows_read
    delivery.rows_loaded = report.loaded
    delivery.rows_redelivered = report.redelivered
    delivery.rows_quarantined = report.quarantined
    delivery.rows_unmatched = report.unmatched
    session.flush()
    return report


@dataclass
class _TraceSink:
    """Where a delivery's traces go until it has loaded whole: its parts and day counts."""

    writer: DeliveryWriter
    volumes: Counter[int] = field(default_factory=Counter)


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
        connector = get_connector(source, context.configs, arrived_at=received_at)
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


def _store_quarantine(session: Session, delivery: Delivery, quarantined: pd.DataFrame) -> None:
    if quarantined.empty:
        return
    # One executemany: an ORM object per row would cost more than reading the row did.
    session.execute(
        insert(QuarantinedRow),
        [
            {
                "delivery_id": delivery.id,
                "source": delivery.source,
                "file_name": delivery.file_name,
                "line": int(line),
                "raw": str(raw),
                "reason": str(reason),
            }
            for line, raw, reason in zip(
                quarantined["line"], quarantined["raw"], quarantined["reason"], strict=True
            )
        ],
    )


def _load_rows(
    session: Session,
    *,
    source: str,
    rows: pd.DataFrame,
    delivery_id: int,
    context: IngestContext,
    traces: _TraceSink | None = None,
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
    if source in TRACE_SOURCES and traces is not None:
        return _load_traces(
            session, source=source, rows=rows, delivery_id=delivery_id, context=context,
            sink=traces,
        )  # fmt: skip
    raise DeliveryRefused(f"no loader for source {source!r}")


def _load_traces(
    session: Session,
    *,
    source: str,
    rows: pd.DataFrame,
    delivery_id: int,
    context: IngestContext,
    sink: _TraceSink,
) -> tuple[int, int, int]:
    """Link and deduplicate traces, hand them to the delivery's parts; pass deaths on."""
    traces = evidence_rows(
        source, rows, roll=lambda: context.roll(session), cards=lambda: context.cards(session),
        delivery_id=delivery_id, timezone=context.timezone,
    )  # fmt: skip
    hashes = traces["record_hash"].to_numpy()
    days = traces["day"].to_numpy()
    seen = context.redelivered(session, source=source, hashes=hashes, days=days)
    fresh, redelivered = drop_redeliveries(traces, seen)
    sink.writer.add(fresh)
    if redelivered:
        days = fresh["day"].to_numpy()
    if days.size:
        # Counted by day number in linear time: a batch spans a few days, sorting it would
        # cost more.
        first = int(days.min())
        counts = np.bincount(days - first)
        values = np.flatnonzero(counts)
        sink.volumes.update(
            dict(zip((values + first).tolist(), counts[values].tolist(), strict=True))
        )
    if source == "medical" and "discharge_outcome" in rows:
        died = rows["discharge_outcome"].eq("deceased").fillna(False).to_numpy(dtype=bool)
        if died.any():
            load_death_records(
                session, source="medical", rows=rows.loc[died],
                roll=context.roll(session), delivery_id=delivery_id, timezone=context.timezone,
            )  # fmt: skip
    unmatched = int((fresh["person_id"].to_numpy() < 0).sum())
    return fresh.num_rows, redelivered, unmatched


def _add_volumes(session: Session, *, source: str, counts: Counter[int]) -> None:
    """Add the day counts of newly stored traces to the source's daily volumes."""
    if not counts:
        return
    days = {day_from_number(value): count for value, count in counts.items() if count}
    stored = {
        volume.day: volume
        for volume in session.scalars(
            select(SourceVolume).where(
                SourceVolume.source == source, SourceVolume.day.in_(list(days))
            )
        )
    }
    for day, count in days.items():
        if day in stored:
            stored[day].traces += int(count)
        else:
            session.add(SourceVolume(source=source, day=day, traces=int(count)))
    session.flush()
