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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from connectors.identity import normalise_arrow
from liveness.db import query_frame
from liveness.evidence.parts import SORTED_KEY, SORTED_VALUE, part_schema
from liveness.evidence.records.index import replace_parts
from liveness.evidence.store import EvidenceStore
from liveness.identity import CardIndex, RollIndex, link_by_card, link_by_id_number
from liveness.identity.linking import USABLE_ID_STATUSES, match_death_records
from models import (
    Card,
    DeathMatch,
    DeathRecord,
    Delivery,
    DeliveryStatus,
    Deregistration,
    EvidencePart,
    Person,
    Relink,
)

__all__ = [
    "LINK_SOURCES",
    "LinkIndexes",
    "RelinkReport",
    "explain_unlinked",
    "links_version",
    "relink",
    "relink_pending",
    "relinked_through",
]

# The deliveries that change what evidence links to.
LINK_SOURCES = ("registry", "cards")
# Trace sources whose rows carry a card number (the others carry an identity number).
CARD_LINKED = ("transit", "card_txn")
_TRACE_SOURCES = ("transit", "card_txn", "medical", "face")


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


class LinkIndexes:
    """The roll and card indexes as they are now, each loaded only if needed."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._roll: RollIndex | None = None
        self._cards: CardIndex | None = None

    @property
    def roll(self) -> RollIndex:
        """Return the roll index."""
        if self._roll is None:
            self._roll = RollIndex.load(self.session)
        return self._roll

    @property
    def cards(self) -> CardIndex:
        """Return the card index."""
        if self._cards is None:
            self._cards = CardIndex.load(self.session)
        return self._cards


def relink(
    session: Session, *, store: EvidenceStore, demographic_confidence: float
) -> RelinkReport:
    """Link again what matched nobody, against the current roll and cards; flush only.

    Records the relink, so that `relink_pending` is false until the roll or cards change again.
    `demographic_confidence` is the policy's confidence of a death record matched on name, sex
    and birth date.
    """
    started = time.perf_counter()
    report = RelinkReport(through_delivery_id=links_version(session))
    report.cards_relinked = relink_card_holders(session)
    session.flush()
    indexes = LinkIndexes(session)
    report.death_records_matched = rematch_death_records(
        session, indexes, demographic_confidence=demographic_confidence
    )
    report.deregistrations_matched = relink_deregistrations(session, indexes)
    replaced: list[Path] = []
    for source in _TRACE_SOURCES:
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
    person_id, link = _link(part.source, keys, days, indexes)
    found = person_id >= 0
    linked = int(found.sum())
    part.unlinked_rows = int(positions.size) - linked
    if not linked:
        return 0
    table = pq.read_table(path, schema=part_schema(part.source))
    sorted_by_person = (pq.read_metadata(path).metadata or {}).get(SORTED_KEY) == SORTED_VALUE
    persons = table["person_id"].to_numpy().copy()
    persons[positions[found]] = person_id[found]
    now_linked = np.zeros(table.num_rows, dtype=bool)
    now_linked[positions[found]] = True
    links = pc.if_else(pa.array(now_linked), pa.scalar(link, pa.string()), table["link"])
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


def _link(
    source: str, keys: pa.Array, days: np.ndarray, indexes: LinkIndexes
) -> tuple[np.ndarray, str]:
    """Return the person each row links to now (-1: nobody) and the link's name."""
    if source in CARD_LINKED:
        return link_by_card(keys, days, indexes.cards), "card"
    numbers, statuses = _numbers(keys)
    return link_by_id_number(numbers, statuses, indexes.roll), "id_number"


def _numbers(keys: pa.Array) -> tuple[pd.Series, pd.Series]:
    """Return stored identity numbers with their status, judged again from the number alone."""
    _, statuses = normalise_arrow(keys)
    return (
        pd.Series(keys.to_pandas(), dtype=pd.StringDtype("pyarrow")),
        pd.Series(statuses.to_pandas(), dtype=pd.StringDtype("pyarrow")),
    )


def relink_card_holders(session: Session) -> int:
    """Set each card's holder from the roll as it is now; return how many cards changed.

    A card delivered before its holder's roll entry has no holder until this runs; one whose
    holder's number was corrected away no longer belongs to them.
    """
    holder = select(func.max(Person.id)).where(Person.id_number == Card.id_number).scalar_subquery()
    # Two narrow statements rather than looking every card's number up again: cards without
    # a holder are few (an index finds them).
    found = session.execute(
        update(Card)
        .where(Card.person_id.is_(None), holder.is_not(None))
        .values(person_id=holder)
        .execution_options(synchronize_session=False)
    )
    # A holder whose number is no longer the card's (found by primary key, cheap per card).
    moved = (
        select(Person.id)
        .where(Person.id == Card.person_id, Person.id_number != Card.id_number)
        .exists()
    )
    lost = session.execute(
        update(Card)
        .where(moved)
        .values(person_id=holder)
        .execution_options(synchronize_session=False)
    )
    return sum(int(getattr(result, "rowcount", 0) or 0) for result in (found, lost))


def rematch_death_records(
    session: Session, indexes: LinkIndexes, *, demographic_confidence: float
) -> int:
    """Match again the death records that matched nobody; return how many now match."""
    records = query_frame(
        session,
        select(
            DeathRecord.id, DeathRecord.id_number, DeathRecord.id_status, DeathRecord.name,
            DeathRecord.sex, DeathRecord.birth_date,
        ).where(DeathRecord.match == DeathMatch.UNMATCHED),
        ["id", "id_number", "id_number_status", "name", "sex", "birth_date"],
    )  # fmt: skip
    if records.empty:
        return 0
    matched = match_death_records(
        records, indexes.roll, demographic_confidence=demographic_confidence
    )
    changed = (matched["match"] != DeathMatch.UNMATCHED.value).to_numpy()
    if not changed.any():
        return 0
    rows = zip(
        records["id"].to_numpy()[changed],
        matched["person_id"].to_numpy()[changed],
        matched["match"].to_numpy()[changed],
        matched["confidence"].to_numpy()[changed],
        strict=True,
    )
    session.execute(
        update(DeathRecord),
        [
            {
                "id": int(record),
                "person_id": int(person) if person >= 0 else None,
                "match": DeathMatch(match),
                "confidence": float(confidence),
            }
            for record, person, match, confidence in rows
        ],
    )
    return int(changed.sum())


def relink_deregistrations(session: Session, indexes: LinkIndexes) -> int:
    """Link again the deregistrations that named nobody on the roll; return how many now do."""
    records = query_frame(
        session,
        select(Deregistration.id, Deregistration.id_number).where(
            Deregistration.person_id.is_(None), Deregistration.id_number.is_not(None)
        ),
        ["id", "id_number"],
    )
    if records.empty:
        return 0
    numbers, statuses = _numbers(pa.array(records["id_number"].to_numpy(dtype=object), pa.string()))
    person_id = link_by_id_number(numbers, statuses, indexes.roll)
    found = person_id >= 0
    if found.any():
        session.execute(
            update(Deregistration),
            [
                {"id": int(record), "person_id": int(person)}
                for record, person in zip(
                    records["id"].to_numpy()[found], person_id[found], strict=True
                )
            ],
        )
    return int(found.sum())


# Why a trace matched nobody, by code (see `explain_unlinked`).
_NO_CARD, _NO_HOLDER, _NOT_YET_ISSUED, _CANCELLED, _INVALID_NUMBER, _SHARED_NUMBER = range(6)
_NOT_ON_ROLL, _WOULD_LINK = 6, 7
_REASONS = {
    _NO_CARD: "no card with this number",
    _NO_HOLDER: "card holder not on the roll",
    _INVALID_NUMBER: "invalid identity number",
    _SHARED_NUMBER: "identity number held by several persons on the roll",
    _NOT_ON_ROLL: "identity number not on the roll",
    _WOULD_LINK: "links now: run `liveness relink`",
}


def explain_unlinked(
    source: str, keys: pa.Array, days: np.ndarray, *, indexes: LinkIndexes
) -> pd.DataFrame:
    """Group unlinked traces by key and the reason they match nobody on today's roll and cards.

    Returns link_key, reason, rows, first_day and last_day (store day numbers).
    """
    code = np.full(len(keys), _WOULD_LINK, dtype=np.int8)
    date = np.full(len(keys), np.iinfo(np.int32).min, dtype=np.int64)
    if source in CARD_LINKED:
        code[:] = _NO_CARD
        cards = indexes.cards
        rows, slots = cards.by_card_no.matches(keys)
        issued, cancelled, holders = cards.validity
        on_day = days[rows]
        early, late = on_day < issued[slots], on_day >= cancelled[slots]
        code[rows] = np.select(
            [holders[slots] < 0, early, late],
            [_NO_HOLDER, _NOT_YET_ISSUED, _CANCELLED],
            _WOULD_LINK,
        )
        date[rows] = np.where(early, issued[slots], np.where(late, cancelled[slots], date[rows]))
    else:
        numbers, statuses = _numbers(keys)
        usable = statuses.isin(USABLE_ID_STATUSES).to_numpy(dtype=bool)
        roll = indexes.roll
        persons = roll.persons
        shared_numbers = persons.loc[
            persons["id_status"].isin(USABLE_ID_STATUSES)
            & persons["id_number"].duplicated(keep=False),
            "id_number",
        ]
        shared = numbers.isin(set(shared_numbers)).to_numpy(dtype=bool)
        on_roll = roll.number_index.positions(numbers) >= 0
        code = np.select(
            [~usable, shared, ~on_roll], [_INVALID_NUMBER, _SHARED_NUMBER, _NOT_ON_ROLL],
            _WOULD_LINK,
        ).astype(np.int8)  # fmt: skip
    frame = pd.DataFrame(
        {
            "link_key": pd.Series(keys.to_pandas(), dtype=object),
            "code": code,
            "date": date,
            "day": days,
        }
    )
    grouped = (
        frame.groupby(["link_key", "code", "date"], dropna=False, sort=False)["day"]
        .agg(rows="size", first_day="min", last_day="max")
        .reset_index()
    )
    reason = grouped["code"].map(_REASONS).astype(object)
    dated = grouped["code"].isin([_NOT_YET_ISSUED, _CANCELLED])
    if dated.any():
        label = grouped.loc[dated, "code"].map({_NOT_YET_ISSUED: "issued", _CANCELLED: "cancelled"})
        when = pd.to_datetime(grouped.loc[dated, "date"], unit="D").dt.strftime("%Y-%m-%d")
        reason[dated] = "card not valid on that day (" + label + " " + when + ")"
    grouped["reason"] = reason
    return grouped[["link_key", "reason", "rows", "first_day", "last_day"]]
