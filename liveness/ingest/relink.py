"""Relinking: evidence that matched nobody is linked again when the roll or the cards change.

Traces link when they load, against the roll and the card register of that moment: taps of a
card delivered tomorrow, or medical visits of a person added to the roll next month, match
nobody. Each evidence part counts its unlinked rows and records the newest roll or card
delivery it was linked against (`linked_through`); after such a delivery a relink reads the
unlinked rows of the parts behind it (only those rows: Parquet statistics skip row groups
without any), links them against the current roll and cards, and rewrites a part where some
now link as a new file whose manifest row keeps its id, delivery and days (readers see the new
file, or the old one, never both; the old one is an orphan that compaction's `remove_orphans`
deletes after its grace). Part summaries are kept per part file, so a rewritten part is a miss.
Death records that matched nobody, non-death deregistrations and cards whose holder was not on
the roll are matched again too. Source volumes stay: they counted the traces when they arrived.

A relink only ever links what matched nobody: a trace already linked keeps its person.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from liveness.evidence.parts import SORTED_KEY, SORTED_VALUE, part_schema
from liveness.evidence.records.index import replace_parts
from liveness.evidence.store import EvidenceStore
from liveness.ingest.link_now import LinkIndexes, link_rows
from liveness.ingest.relink_registers import (
    relink_card_holders,
    relink_deregistrations,
    rematch_death_records,
)
from liveness.ingest.traces import LINKS, coded
from models import (
    Delivery,
    DeliveryStatus,
    EvidencePart,
    Relink,
)

__all__ = [
    "LINK_SOURCES",
    "RelinkReport",
    "links_version",
    "relink",
    "relink_pending",
    "relinked_through",
]

# The deliveries that change what evidence links to.
LINK_SOURCES = ("registry", "cards")


@dataclass
class RelinkReport:
    """What one relink did."""

    through_delivery_id: int
    parts_read: int = 0
    parts_rewritten: int = 0
    traces_linked: int = 0
    cards_relinked: int = 0
    death_records_matched: int = 0
    deregistrations_matched: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """Return the report as a JSON-able dict."""
        return asdict(self)


def links_version(session: Session) -> int:
    """Return the newest roll or card delivery that changed something (0 if none)."""
    newest = session.scalar(
        select(func.max(Delivery.id)).where(
            Delivery.source.in_(LINK_SOURCES),
            Delivery.status == DeliveryStatus.LOADED,
            Delivery.rows_loaded > 0,
        )
    )
    return int(newest or 0)


def relinked_through(session: Session) -> int:
    """Return the newest roll or card delivery stored evidence was last relinked against.

    Traces linked now are stamped with it, not with `links_version`: while a relink is due,
    card holders may lag the roll, and the relink must try those traces again.
    """
    return int(session.scalar(select(func.max(Relink.through_delivery_id))) or 0)


def relink_pending(session: Session) -> bool:
    """Say whether the roll or the cards changed since stored evidence was last relinked."""
    return links_version(session) > relinked_through(session)


def relink(
    session: Session,
    *,
    store: EvidenceStore,
    demographic_confidence: float,
    links: Mapping[str, tuple[str, ...]] | None = None,
) -> RelinkReport:
    """Link again what matched nobody, against the current roll and cards; flush only.

    Records the relink, so that `relink_pending` is false until the roll or cards change again.
    `demographic_confidence` is the policy's confidence of a death record matched on name, sex
    and birth date; `links` the link modes of each trace source (the built-in sources' by
    default: `connectors.trace_specs` gives a configuration's).
    """
    started = time.perf_counter()
    report = RelinkReport(through_delivery_id=links_version(session))
    report.cards_relinked = relink_card_holders(session)
    session.flush()
    indexes = LinkIndexes(session, links=links)
    report.death_records_matched = rematch_death_records(
        session, indexes, demographic_confidence=demographic_confidence
    )
    report.deregistrations_matched = relink_deregistrations(session, indexes)
    replaced: list[Path] = []
    for source in indexes.links:
        parts = session.scalars(
            select(EvidencePart)
            .where(
                EvidencePart.source == source,
                or_(EvidencePart.unlinked_rows.is_(None), EvidencePart.unlinked_rows > 0),
                or_(
                    EvidencePart.linked_through.is_(None),
                    EvidencePart.linked_through < report.through_delivery_id,
                ),
            )
            .order_by(EvidencePart.id)
        ).all()
        for part in parts:
            report.parts_read += 1
            old_path = store.path_of(part)
            linked = _relink_part(store, part, indexes, version=report.through_delivery_id)
            if linked:
                report.parts_rewritten += 1
                report.traces_linked += linked
                replaced.append(old_path)
    session.add(Relink(**report.as_dict() | {"seconds": time.perf_counter() - started}))
    session.flush()
    now = time.time()
    for path in replaced:
        # Orphan removal's grace counts from when a file stopped being referenced.
        if path.exists():
            os.utime(path, (now, now))
    report.seconds = time.perf_counter() - started
    return report


def _relink_part(
    store: EvidenceStore, part: EvidencePart, indexes: LinkIndexes, *, version: int
) -> int:
    """Link a part's unlinked rows; rewrite it if some now link. Return how many did."""
    path = store.path_of(part)
    positions, keys, days = _unlinked_rows(path)
    part.linked_through = version
    if positions.size == 0:
        part.unlinked_rows = 0
        return 0
    person_id, link = link_rows(part.source, keys, days, indexes)
    found = person_id >= 0
    linked = int(found.sum())
    part.unlinked_rows = int(positions.size) - linked
    if not linked:
        return 0
    table = pq.read_table(path, schema=part_schema(part.source))
    sorted_by_person = (pq.read_metadata(path).metadata or {}).get(SORTED_KEY) == SORTED_VALUE
    persons = table["person_id"].to_numpy().copy()
    persons[positions[found]] = person_id[found]
    codes = pc.fill_null(pc.index_in(table["link"], value_set=LINKS), 0).to_numpy()
    codes = codes.astype(np.int8)
    codes[positions[found]] = link[found]
    links = coded(codes, LINKS)
    table = table.set_column(
        table.schema.get_field_index("person_id"), "person_id", pa.array(persons, pa.int32())
    ).set_column(table.schema.get_field_index("link"), "link", links)
    if sorted_by_person:
        # The part was clustered by person (compaction's order): keep it so.
        table = table.sort_by(
            [("person_id", "ascending"), ("day", "ascending"), ("event_at", "ascending"),
             ("record_hash", "ascending")]
        )  # fmt: skip
    new_path = store.write_file(
        source=part.source, month=part.month, table=table, delivery_id=part.delivery_id,
        sorted_by_person=sorted_by_person,
    )  # fmt: skip
    old_path, part.path = part.path, str(new_path.relative_to(store.root))
    # Relinking changes no record's content: the record index keeps its runs, renamed.
    replace_parts(store.records_folder(part.source), old=[old_path], new=part.path)
    return linked


def _unlinked_rows(path: Path) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """Return the positions, link keys and days of a part's rows that matched nobody.

    Row groups whose person ids are all linked (by their footer statistics) are not read.
    """
    file = pq.ParquetFile(path)
    metadata = file.metadata
    person_column = file.schema_arrow.get_field_index("person_id")
    positions: list[np.ndarray] = []
    keys: list[pa.Array] = []
    days: list[np.ndarray] = []
    offset = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        stats = group.column(person_column).statistics
        if stats is None or not stats.has_min_max or stats.min < 0:
            table = file.read_row_group(index, columns=["person_id", "link_key", "day"])
            unlinked = pc.less(table["person_id"], 0).to_numpy(zero_copy_only=False)
            rows = np.flatnonzero(unlinked)
            if rows.size:
                taken = table.take(pa.array(rows))
                positions.append(rows + offset)
                keys.append(taken["link_key"].combine_chunks())
                days.append(taken["day"].to_numpy().astype(np.int32, copy=False))
        offset += group.num_rows
    if not positions:
        return np.empty(0, np.int64), pa.array([], pa.string()), np.empty(0, np.int32)
    return (
        np.concatenate(positions).astype(np.int64),
        pa.concat_arrays(keys),
        np.concatenate(days),
    )
