"""Relinking the registers: card holders, death records and deregistrations that matched nobody."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from liveness.db import query_frame
from liveness.identity import link_by_id_number
from liveness.identity.linking import NOTICE_SOURCE, match_death_notices, match_death_records
from liveness.ingest.link_now import LinkIndexes, judged_numbers
from models import Card, DeathMatch, DeathRecord, Deregistration, Person


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
            DeathRecord.sex, DeathRecord.birth_date, DeathRecord.region_code, DeathRecord.source,
        ).where(DeathRecord.match == DeathMatch.UNMATCHED),
        ["id", "id_number", "id_number_status", "name", "sex", "birth_date", "region_code",
         "source"],
    )  # fmt: skip
    if records.empty:
        return 0
    # A registry's notices match by their own rule (positive identification), the rest as ever.
    notices = (records["source"] == NOTICE_SOURCE).to_numpy()
    records = pd.concat([records[~notices], records[notices]], ignore_index=True)
    files, registry = records.iloc[: int((~notices).sum())], records.iloc[int((~notices).sum()) :]
    parts = []
    if len(files):
        parts.append(
            match_death_records(files, indexes.roll, demographic_confidence=demographic_confidence)
        )
    if len(registry):
        parts.append(
            match_death_notices(
                session, registry, indexes.roll, demographic_confidence=demographic_confidence
            )
        )
    matched = pd.concat(parts, ignore_index=True)
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
    numbers, statuses = judged_numbers(
        pa.array(records["id_number"].to_numpy(dtype=object), pa.string())
    )
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
