"""Loading a delivery's batches: rows to their source's loader, traces judged, linked and stored."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from connectors import Batch, ConnectorError, TraceSpec, threads
from liveness.errors import DeliveryRefused
from liveness.evidence.parts import day_from_number
from liveness.evidence.records.index import RecordIndex, Verdict
from liveness.evidence.writer import DeliveryWriter
from liveness.ingest.context import DeliveryReport, IngestContext
from liveness.ingest.deaths import (
    Loaded,
    load_death_records,
    load_deregistrations,
    load_medical_deaths,
)
from liveness.ingest.notices import NOTICE_SOURCE, death_notices, receive_death_notices
from liveness.ingest.roll import load_cards, load_registry
from liveness.ingest.traces import link_traces, shape_traces
from models import DeathRecord, Delivery, DeliveryStatus, QuarantinedRow, SourceVolume

# In a conflict, the stored record came in a pushed notify message, not in a delivery.
PUSHED = -2


# Long by design: one savepoint around every batch; the delivery's counts set after it.
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
    trace = context.trace_of(source)
    traces = (
        _TraceSink(context.store.delivery_writer(source=source, delivery_id=delivery.id), trace)
        if trace is not None
        else None
    )
    savepoint = session.begin_nested()
    try:
        records = context.records(session, source) if traces is not None else None
        shaped = _shaped(batches(), source=source, delivery_id=delivery.id,
                         timezone=context.timezone, records=records, trace=trace)  # fmt: skip
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
    records: RecordIndex | None, trace: TraceSpec | None = None,
) -> Iterator[tuple[Batch, _Shaped | None]]:  # fmt: skip
    """Pair each batch with its rows shaped as traces and judged by the record index.

    Pure but for the index, which only this iterator touches until it ends: so it runs on
    the reading thread when the delivery reads ahead, beside the linking of the last batch.
    """
    for batch in batches:
        shaped = None
        if records is not None and len(batch.rows):
            traces = shape_traces(
                source, batch.rows, delivery_id=delivery_id, timezone=timezone, trace=trace
            )
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
    trace: TraceSpec
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

    `earlier` holds the delivery of the stored record, -1 for an earlier row of this one, or
    `PUSHED` for a death notice pushed by its registry.
    """
    known = {i for i in earlier if i >= 0}
    names: dict[int, str] = {}
    if known:
        query = select(Delivery.id, Delivery.file_name).where(Delivery.id.in_(known))
        names = {int(i): str(name) for i, name in session.execute(query).all()}
    this = f"delivery {delivery.id} ({delivery.file_name})"
    reasons = []
    for record_id, other in zip(record_ids, earlier, strict=True):
        if other == PUSHED:
            where = "was received in a pushed notify message"
        elif other < 0:
            where = f"came earlier in this {this}"
        else:
            where = f"was delivered in delivery {other} ({names.get(other, 'file unknown')})"
        reasons.append(
            f"conflict: record_id {record_id} {where} with other content; {this} changes it "
            "without correction=true (a correction replaces a record; a re-delivery must not "
            "change it)"
        )
    return reasons


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
                # A NUL shown as \x00: PostgreSQL stores no text holding the character.
                "raw": str(raw).replace("\x00", "\\x00"),
                "reason": str(reason).replace("\x00", "\\x00"),
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
    if source == NOTICE_SOURCE:
        return _load_notices(session, rows=rows, delivery=delivery, context=context)
    if traces is not None:
        if shaped is None:
            return Loaded(0, 0, 0)
        return _load_traces(
            session, source=source, rows=rows, shaped=shaped, delivery=delivery,
            context=context, sink=traces,
        )  # fmt: skip
    raise DeliveryRefused(f"no loader for source {source!r}")


def _load_notices(
    session: Session, *, rows: pd.DataFrame, delivery: Delivery, context: IngestContext
) -> Loaded:
    """Receive a batch of a registry's death notices as if pushed; account for every row.

    A notice acknowledged as a duplicate is a re-delivery; one acknowledged as a conflict
    is quarantined, its reason naming where the stored record came from.
    """
    if rows.empty:
        return Loaded(0, 0, 0)
    acks = receive_death_notices(
        session, notices=death_notices(rows), roll=context.roll(session), delivery_id=delivery.id,
        demographic_confidence=context.demographic_confidence,
    )  # fmt: skip
    status = np.array([ack.status for ack in acks], dtype=object)
    accepted = status == "accepted"
    unknown = np.array([ack.outcome == "unknown" for ack in acks], dtype=bool)
    positions = np.flatnonzero(status == "conflict")
    record_ids = [acks[int(p)].record_id for p in positions]
    held: dict[str, int | None] = {}
    if record_ids:
        held = {
            str(record_id): holder
            for record_id, holder in session.execute(
                select(DeathRecord.record_id, DeathRecord.delivery_id).where(
                    DeathRecord.source == NOTICE_SOURCE,
                    DeathRecord.record_id.in_(sorted(set(record_ids))),
                )
            )
        }
    # The stored record of this very delivery came in an earlier row of it.
    earlier = [
        PUSHED if held.get(r) is None else -1 if held[r] == delivery.id else int(held[r] or 0)
        for r in record_ids
    ]
    labels = rows.index[positions].tolist()
    return Loaded(
        int(accepted.sum()), int((status == "duplicate").sum()), int((accepted & unknown).sum()),
        list(zip(labels, record_ids, earlier, strict=True)),
    )  # fmt: skip


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
        traces, loaded, roll=lambda: context.roll(session), cards=lambda: context.cards(session),
        trace=sink.trace,
    )  # fmt: skip
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
