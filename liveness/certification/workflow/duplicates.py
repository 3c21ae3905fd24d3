"""Duplicate identities that deregistrations show, and the integrity leads they open."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from liveness.certification.workflow.context import Context
from liveness.certification.workflow.frames import of_persons
from liveness.db import query_frame
from models import Deregistration, IntegrityLead, LeadStatus, PaymentEvent, Person, RecordStatus


def duplicate_benefits(session: Session) -> pd.DataFrame:
    """Return the benefits a deregistration shows to be drawn by a duplicate identity.

    A deregistration replacing a number by a `new_id_number` that also draws links two persons
    on the roll: where both draw the same benefit type, the later-started benefit is the
    duplicate (on a tie, the cancelled number's). A deregistration cancelling a number as a
    `duplicate` without naming another number on the roll makes every benefit that number draws a
    duplicate. Indexed by benefit id, with the person and the evidence to cite.
    """
    columns = ["benefit_id", "person_id", "evidence"]
    links = _deregistration_links(session)
    if links.empty:
        return pd.DataFrame(columns=columns).astype({"benefit_id": int}).set_index("benefit_id")
    persons = set(links["person_id"].astype(int)) | set(links["other_id"].dropna().astype(int))
    benefits = of_persons(session, persons)[
        ["benefit_id", "person_id", "benefit_type", "benefit_start"]
    ]
    mine = links.merge(benefits, on="person_id")
    pairs = mine.dropna(subset=["other_id"]).merge(
        benefits, left_on=["other_id", "benefit_type"], right_on=["person_id", "benefit_type"],
        suffixes=("", "_other"),
    )  # fmt: skip
    chosen = pd.concat(
        [_paired_duplicates(pairs), _cancelled_duplicates(mine, pairs)], ignore_index=True
    )[columns]
    return chosen.drop_duplicates("benefit_id").set_index("benefit_id")


def _deregistration_links(session: Session) -> pd.DataFrame:
    """Return the standing deregistrations of roll persons that may show a duplicate.

    Each with `other_id`, the roll person holding its `new_id_number` (if another one does).
    """
    links = query_frame(
        session,
        select(Deregistration.record_id, Deregistration.reason, Deregistration.new_id_number,
               Deregistration.person_id)
        .where(Deregistration.status == RecordStatus.ACTIVE,
               Deregistration.person_id.is_not(None),
               or_(Deregistration.reason == "duplicate",
                   Deregistration.new_id_number.is_not(None))),
        ["record_id", "reason", "new_id_number", "person_id"],
    )  # fmt: skip
    if links.empty:
        return links
    numbers = links["new_id_number"].dropna().tolist()
    holders = dict(
        session.execute(select(Person.id_number, Person.id).where(Person.id_number.in_(numbers)))
        .all()
    ) if numbers else {}  # fmt: skip
    links["other_id"] = links["new_id_number"].map(holders)
    links.loc[links["other_id"] == links["person_id"], "other_id"] = np.nan
    return links


def _paired_duplicates(pairs: pd.DataFrame) -> pd.DataFrame:
    """Return, of each pair of same-type benefits two linked numbers draw, the later-started."""
    later = pairs["benefit_start"] >= pairs["benefit_start_other"]
    return pd.DataFrame(
        {
            "benefit_id": np.where(later, pairs["benefit_id"], pairs["benefit_id_other"]),
            "person_id": np.where(later, pairs["person_id"], pairs["person_id_other"]),
            "evidence": [
                {"deregistration": str(r), "reason": str(why),
                 "other_benefit": int(o if is_later else b)}
                for r, why, is_later, b, o in zip(
                    pairs["record_id"], pairs["reason"], later, pairs["benefit_id"],
                    pairs["benefit_id_other"], strict=True)
            ],
        }
    )  # fmt: skip


def _cancelled_duplicates(mine: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Return all that numbers cancelled as a duplicate of nobody on the roll draw: twice drawn."""
    # Where the other number is on the roll, only the pairs are duplicates: a benefit the other
    # number does not draw is the person's only one, and stopping it would stop a living
    # person's pay.
    alone = mine[
        (mine["reason"] == "duplicate")
        & mine["other_id"].isna()
        & ~mine["benefit_id"].isin(pairs["benefit_id"])
        & ~mine["benefit_id"].isin(pairs["benefit_id_other"])
    ]
    return pd.DataFrame(
        {
            "benefit_id": alone["benefit_id"].to_numpy(),
            "person_id": alone["person_id"].to_numpy(),
            "evidence": [
                {"deregistration": str(r), "reason": "duplicate"} for r in alone["record_id"]
            ],
        }
    )


def open_duplicate_leads(
    session: Session, context: Context, *, entries: list[dict[str, Any]]
) -> int:
    """Open an integrity lead for each duplicate identity the run suspended, if none is known."""
    made = [e for e in entries if e["event"] == PaymentEvent.DUPLICATE_IDENTITY]
    keys = {str(e["detail"]["deregistration"]) for e in made}
    if not keys:
        return 0
    known = set(
        session.scalars(
            select(IntegrityLead.key).where(
                IntegrityLead.rule == "deregistered_number", IntegrityLead.key.in_(keys)
            )
        )
    )
    refs = dict(
        session.execute(
            select(Person.id, Person.person_ref).where(
                Person.id.in_({int(e["person_id"]) for e in made})
            )
        ).all()
    )
    regions = dict(
        session.execute(
            select(Person.id, Person.region_code).where(Person.id.in_(list(refs)))
        ).all()
    )
    opened = 0
    for entry in made:
        key = str(entry["detail"]["deregistration"])
        if key in known:
            continue
        known.add(key)
        session.add(
            IntegrityLead(
                rule="deregistered_number", key=key,
                region_code=str(regions[int(entry["person_id"])]),
                person_refs=[refs[int(entry["person_id"])]],
                evidence={"deregistration": key, "suspended_benefit": int(entry["benefit_id"]),
                          **entry["detail"]},
                amount_at_risk=entry["amount"], status=LeadStatus.OPEN,
                policy_version=context.policy.version, found_on=context.as_of,
            )
        )  # fmt: skip
        opened += 1
    session.flush()
    return opened
