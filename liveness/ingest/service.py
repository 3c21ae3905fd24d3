"""Ingest one delivery: read it through its connector, link, deduplicate, store, account."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from connectors import Batch, ConnectorError, SourceConfig, get_connector, make_transport, threads
from liveness.errors import DeliveryRefused
from liveness.evidence.parts import day_from_number
from liveness.evidence.records.index import RecordIndex, Verdict
from liveness.evidence.store import EvidenceStore
from liveness.evidence.writer import DeliveryWriter
from liveness.identity import CardIndex, RollIndex
from liveness.ingest.deaths import (
    Loaded,
    load_death_records,
    load_deregistrations,
    load_medical_deaths,
)
from liveness.ingest.relink import relinked_through
from liveness.ingest.roll import load_cards, load_registry
from liveness.ingest.traces import TRACE_SOURCES, link_traces, shape_traces
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


@dataclass
class IngestContext:
    """What every delivery of one ingest needs: configuration, the store, cached indexes."""

    configs: Mapping[str, SourceConfig]
    store: EvidenceStore
    timezone: str
    # The confidence of a death record matched on name, sex and birth date (the policy's).
    demographic_confidence: float
    _roll: RollIndex | None = field(default=None, repr=False)
    _cards: CardIndex | None = field(default=None, repr=False)
    # The newest roll or card delivery the cached indexes are known to hold (read before
    # they load): the last relink's, since card holders catch up with the roll only there.
    _links_version: int | None = field(default=None, repr=False)
    # Per trace source, every record it holds: re-deliveries are found across months.
    _records: dict[str, RecordIndex] = field(default_factory=dict, repr=False)

    def roll(self, session: Session) -> RollIndex:
        """Return the roll index, loading it once."""
        if self._roll is None:
            self._note_links_version(session)
            self._roll = RollIndex.load(session)
        return self._roll

    def cards(self, session: Session) -> CardIndex:
        """Return the card index, loading it once."""
        if self._cards is None:
            self._note_links_version(session)
            self._cards = CardIndex.load(session)
        return self._cards

    @property
    def links_version(self) -> int | None:
        """Return the newest roll or card delivery the loaded indexes hold, None if unknown."""
        return self._links_version

    def _note_links_version(self, session: Session) -> None:
        # Read before the index loads: a change landing meanwhile leaves the stamp older,
        # so a relink retries these traces rather than trusting them.
        if self._links_version is None:
            self._links_version = relinked_through(session)

    def records(self, session: Session, source: str) -> RecordIndex:
        """Return the record index of a trace source, opened once per ingest."""
        index = self._records.get(source)
        if index is None:
            index = self._records[source] = self.store.record_index(session, source=source)
        return index

    def forget_indexes(self) -> None:
        """Drop the roll and card indexes after the roll or the cards changed."""
        self._roll = None
        self._cards = None
        self._links_version = None

    def forget_records(self) -> None:
        """Drop the record indexes after a delivery rolled back: reopened, they drop its runs."""
        self._records.clear()


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
        records = context.records(session, source) if traces is not None else None
        shaped = _shaped(batches(), source=source, delivery_id=delivery.id,
                         timezone=context.timezone, records=records)  # fmt: skip
        batches_read = threads.read_ahead(shaped, name="delivery-batches") if read_ahead else shaped
        for batch, shaped_traces in batches_read:
            report.rows_read += batch.rows_read
            _store_quarantine(session, delivery, batch.quarantined)
            report.quarantined += len(batch.quarantined)
            result = _load_rows(
                session, source=source, rows=batch.rows, delivery=delivery, context=context,
                traces=traces, shaped=shaped_traces,
            )  # fmt: skip
            if result.conflicts:
                conflicts = _conflict_rows(session, batch, delivery, result.conflicts)
                _store_quarantine(session, delivery, conflicts)
            report.loaded += result.loaded
            report.redelivered += result.redelivered
            report.quarantined += len(result.conflicts)
            report.unmatched += result.unmatched
            if on_batch is not None:
                on_batch(batch.rows_read)
        if traces is not None:
            # Parts and volumes enter the transaction only once every batch has loaded.
            parts = traces.writer.finish(session, linked_through=context.links_version)
            _add_volumes(session, source=source, counts=traces.volumes)
            context.records(session, source).publish(
                delivery_id=delivery.id, parts=[part.path for part in parts]
            )
        savepoint.commit()
    except ConnectorError as error:
        savepoint.rollback()
        context.forget_records()
        delivery.status = DeliveryStatus.REFUSED
        delivery.error = str(error)
        session.flush()
        return DeliveryReport(
            source=source, file=delivery.path, status=DeliveryStatus.REFUSED.value,
            error=str(error),
        )  # fmt: skip
    except BaseException:
        # Whatever the delivery left pending or published is not in the store: reopen.
        context.forget_records()
        raise
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
class _Shaped:
    """A batch's rows shaped as traces, and what the record index says of each."""

    traces: pa.Table
    verdict: Verdict


def _shaped(
    batches: Iterator[Batch], *, source: str, delivery_id: int, timezone: str,
    records: RecordIndex | None,
) -> Iterator[tuple[Batch, _Shaped | None]]:  # fmt: skip
    """Pair each batch with its rows shaped as traces and judged by the record index.

    Pure but for the index, which only this iterator touches until it ends: so it runs on
    the reading thread when the delivery reads ahead, beside the linking of the last batch.
    """
    for batch in batches:
        shaped = None
        if records is not None and len(batch.rows):
            traces = shape_traces(source, batch.rows, delivery_id=delivery_id, timezone=timezone)
            verdict = records.check(
                traces["record_hash"].to_numpy(),
                traces["content"].to_numpy(),
                traces["correction"].to_numpy(zero_copy_only=False),
            )
            shaped = _Shaped(traces, verdict)
        yield batch, shaped


@dataclass
class _TraceSink:
    """Where a delivery's traces go until it has loaded whole: its parts and day counts."""

    writer: DeliveryWriter
    volumes: Counter[int] = field(default_factory=Counter)


def _conflict_rows(
    session: Session, batch: Batch, delivery: Delivery, conflicts: list[tuple[int, str, int]]
) -> pd.DataFrame:
    """Return quarantine rows (line, raw text, reason) for the conflicting rows of a batch."""
    positions = np.array([position for position, _, _ in conflicts], dtype=np.int64)
    reasons = conflict_reasons(
        session, delivery=delivery, record_ids=[record_id for _, record_id, _ in conflicts],
        earlier=[earlier for _, _, earlier in conflicts],
    )  # fmt: skip
    return pd.DataFrame(
        {
            "line": batch.rows["_line"].to_numpy()[positions],
            "raw": batch.raw_of(positions),
            "reason": reasons,
        }
    )


def conflict_reasons(
    session: Session, *, delivery: Delivery, record_ids: list[str], earlier: list[int]
) -> list[str]:
    """Say, per conflicting row, which delivery holds its record and that this one changes it.

    `earlier` holds the delivery of the stored record, or -1 for an earlier row of this one.
    """
    known = {i for i in earlier if i >= 0}
    names: dict[int, str] = {}
    if known:
        query = select(Delivery.id, Delivery.file_name).where(Delivery.id.in_(known))
        names = {int(i): str(name) for i, name in session.execute(query).all()}
    this = f"delivery {delivery.id} ({delivery.file_name})"
    reasons = []
    for record_id, other in zip(record_ids, earlier, strict=True):
        if other < 0:
            where = f"came earlier in this {this}"
        else:
            where = f"was delivered in delivery {other} ({names.get(other, 'file unknown')})"
        reasons.append(
            f"conflict: record_id {record_id} {where} with other content; {this} changes it "
            "without correction=true (a correction replaces a record; a re-delivery must not "
            "change it)"
        )
    return reasons


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
    delivery: Delivery,
    context: IngestContext,
    traces: _TraceSink | None = None,
    shaped: _Shaped | None = None,
) -> Loaded:
    """Dispatch a batch of good rows to the loader of its source."""
    if source == "registry":
        loaded, redelivered = load_registry(session, rows)
        context.forget_indexes()
        return Loaded(loaded, redelivered, 0)
    if source == "cards":
        result = load_cards(session, rows)
        context.forget_indexes()
        return Loaded(*result)
    if source == "cremation":
        return load_death_records(
            session, source=source, rows=rows, roll=context.roll(session),
            delivery_id=delivery.id, timezone=context.timezone,
            demographic_confidence=context.demographic_confidence,
        )  # fmt: skip
    if source == "deregistration":
        return load_deregistrations(
            session, rows=rows, roll=context.roll(session), delivery_id=delivery.id,
            timezone=context.timezone, demographic_confidence=context.demographic_confidence,
        )  # fmt: skip
    if source in TRACE_SOURCES and traces is not None:
        if shaped is None:
            return Loaded(0, 0, 0)
        return _load_traces(
            session, source=source, rows=rows, shaped=shaped, delivery=delivery,
            context=context, sink=traces,
        )  # fmt: skip
    raise DeliveryRefused(f"no loader for source {source!r}")


def _load_traces(
    session: Session,
    *,
    source: str,
    rows: pd.DataFrame,
    shaped: _Shaped,
    delivery: Delivery,
    context: IngestContext,
    sink: _TraceSink,
) -> Loaded:
    """Link judged traces and hand the new to the delivery's parts; quarantine the conflicts.

    A record stored before (in any month) with the same content is a re-delivery; with other
    content, and no correction, a conflict to quarantine. Deaths of loaded rows go on.
    """
    verdict = shaped.verdict
    traces, loaded, conflicts = shaped.traces, rows, []
    if verdict.redelivered.any() or verdict.conflict.any():
        keep = ~(verdict.redelivered | verdict.conflict)
        traces, loaded = traces.filter(pa.array(keep)), rows.loc[keep]
        positions = np.flatnonzero(verdict.conflict)
        record_ids = shaped.traces["record_id"].take(pa.array(positions)).to_pylist()
        conflicts = list(
            zip(positions.tolist(), record_ids, verdict.earlier[positions].tolist(), strict=True)
        )
    # Only what loads is linked: a re-delivery links nobody again.
    fresh = link_traces(
        traces, loaded, roll=lambda: context.roll(session), cards=lambda: context.cards(session)
    )
    sink.writer.add(fresh)
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
        deaths = loaded["discharge_outcome"].eq("deceased").fillna(False).to_numpy(dtype=bool)
        if "correction" in loaded:
            deaths |= loaded["correction"].fillna(False).to_numpy(dtype=bool)
        if deaths.any():
            load_medical_deaths(
                session, rows=loaded.loc[deaths], roll=context.roll(session),
                delivery_id=delivery.id, timezone=context.timezone,
                demographic_confidence=context.demographic_confidence,
            )  # fmt: skip
    unmatched = int((fresh["person_id"].to_numpy() < 0).sum())
    return Loaded(fresh.num_rows, int(verdict.redelivered.sum()), unmatched, conflicts)


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
