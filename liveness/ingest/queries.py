"""What the delivery log holds: deliveries, quarantined rows, and evidence that matched nobody."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.db import query_frame
from liveness.evidence.parts import day_from_number
from liveness.evidence.store import EvidenceStore
from liveness.ingest.link_now import LinkIndexes
from liveness.ingest.unlinked import explain_unlinked
from models import DeathMatch, DeathRecord, Delivery, QuarantinedRow

UNMATCHED_COLUMNS = ["source", "link_key", "reason", "rows", "first_day", "last_day"]


def delivery_log(session: Session, *, source: str | None = None, limit: int = 50) -> pd.DataFrame:
    """Return the latest deliveries with the fate of their rows, newest first."""
    query = select(
        Delivery.id, Delivery.source, Delivery.file_name, Delivery.status, Delivery.rows_read,
        Delivery.rows_loaded, Delivery.rows_redelivered, Delivery.rows_quarantined,
        Delivery.rows_unmatched, Delivery.received_at, Delivery.checksum, Delivery.error,
    )  # fmt: skip
    if source is not None:
        query = query.where(Delivery.source == source)
    return query_frame(
        session,
        query.order_by(Delivery.id.desc()).limit(limit),
        ["id", "source", "file", "status", "read", "loaded", "redelivered", "quarantined",
         "unmatched", "received_at", "checksum", "error"],
    )  # fmt: skip


def quarantined_rows(
    session: Session, *, source: str | None = None, limit: int | None = None
) -> pd.DataFrame:
    """Return quarantined rows with their delivery, file, line, reason and raw text."""
    query = select(
        QuarantinedRow.delivery_id, QuarantinedRow.source, QuarantinedRow.file_name,
        QuarantinedRow.line, QuarantinedRow.reason, QuarantinedRow.raw,
    )  # fmt: skip
    if source is not None:
        query = query.where(QuarantinedRow.source == source)
    query = query.order_by(QuarantinedRow.id)
    if limit is not None:
        query = query.limit(limit)
    return query_frame(session, query, ["delivery_id", "source", "file", "line", "reason", "raw"])


def unmatched_evidence(
    session: Session,
    *,
    store: EvidenceStore,
    sources: tuple[str, ...],
    links: Mapping[str, tuple[str, ...]] | None = None,
) -> pd.DataFrame:
    """Return traces that matched nobody, per source, key and reason: how many, first and last day.

    The reason is judged against today's roll and cards: "links now" means a relink is due.
    `links` gives each source's link modes (the built-in sources' by default).
    """
    frames = []
    indexes = LinkIndexes(session, links=links)
    for source in sources:
        table = store.read_table(
            session, source=source, columns=["link_key", "day"], unlinked_only=True
        )
        if table.num_rows == 0:
            continue
        frame = explain_unlinked(
            source, table["link_key"].combine_chunks(), table["day"].to_numpy(), indexes=indexes
        )
        frame["source"] = source
        frames.append(frame)
    if not frames:
        return pd.DataFrame({name: [] for name in UNMATCHED_COLUMNS})
    result = pd.concat(frames, ignore_index=True)
    for column in ("first_day", "last_day"):
        result[column] = [day_from_number(day) for day in result[column]]
    return result[UNMATCHED_COLUMNS].sort_values(
        ["source", "rows", "link_key"], ascending=[True, False, True], ignore_index=True
    )


def unmatched_death_records(session: Session) -> pd.DataFrame:
    """Return death records that act on nobody: unmatched, ambiguous or naming someone else."""
    return query_frame(
        session,
        select(
            DeathRecord.source, DeathRecord.record_id, DeathRecord.match, DeathRecord.id_number,
            DeathRecord.name, DeathRecord.died_on, DeathRecord.recorded_on,
        )
        .where(
            DeathRecord.match.in_(
                [DeathMatch.UNMATCHED, DeathMatch.AMBIGUOUS, DeathMatch.NAME_MISMATCH]
            )
        )
        .order_by(DeathRecord.source, DeathRecord.record_id),
        ["source", "record_id", "match", "id_number", "name", "died_on", "recorded_on"],
    )  # fmt: skip
