"""What the integrity rules read: the roll, acting deaths, deregistrations, traces, outcomes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Float, func, select, type_coerce
from sqlalchemy.orm import Session

from liveness.evidence.snapshot import ACTING_MATCHES
from liveness.evidence.store import EvidenceStore
from liveness.integrity import rules
from models import (
    Benefit,
    BenefitStatus,
    DeathRecord,
    Deregistration,
    Person,
    RecordStatus,
    ReviewTask,
    TaskStatus,
)


def roll_persons(session: Session) -> pd.DataFrame:
    """Return the roll with contacts, demographics and the monthly amount of active benefits."""
    amounts = (
        select(
            Benefit.person_id,
            func.sum(type_coerce(Benefit.monthly_amount, Float)).label("amount"),
        )
        .where(Benefit.status == BenefitStatus.ACTIVE)
        .group_by(Benefit.person_id)
        .subquery()
    )
    statement = select(
        Person.id, Person.person_ref, Person.id_number, Person.name, Person.sex,
        Person.birth_date, Person.region_code, Person.bank_account, Person.phone, amounts.c.amount,
    ).outerjoin(amounts, amounts.c.person_id == Person.id)  # fmt: skip
    rows = session.execute(statement).all()
    frame = pd.DataFrame(rows, columns=rules.ROLL_COLUMNS[:-1])
    frame["active"] = frame["monthly_amount"].notna()
    frame["monthly_amount"] = frame["monthly_amount"].fillna(0.0).astype(float)
    return frame


def acting_deaths(
    session: Session, *, statuses: tuple[RecordStatus, ...] = (RecordStatus.ACTIVE,)
) -> pd.DataFrame:
    """Return, per person with matched death evidence, the earliest death day and its sources.

    By default only records that act; a record that later proof of life refuted still
    conflicts with that proof, which is what the face-pass rule looks for.
    """
    rows = session.execute(
        select(DeathRecord.person_id, DeathRecord.died_on, DeathRecord.source).where(
            DeathRecord.person_id.is_not(None),
            DeathRecord.status.in_(statuses),
            DeathRecord.match.in_([m.value for m in ACTING_MATCHES]),
        )
    ).all()
    frame = pd.DataFrame(rows, columns=["person_id", "died_on", "source"])
    if frame.empty:
        return pd.DataFrame({"person_id": [], "death_day": [], "sources": []})
    frame["death_day"] = (pd.to_datetime(frame["died_on"]) - pd.Timestamp("1970-01-01")).dt.days
    return (
        frame.groupby("person_id")
        .agg(death_day=("death_day", "min"), sources=("source", lambda s: ",".join(sorted(set(s)))))
        .reset_index()
    )


def deregistrations(session: Session) -> pd.DataFrame:
    """Return every deregistration for a reason other than death."""
    columns = ["record_id", "id_number", "new_id_number", "reason", "deregistered_on", "person_id"]
    rows = session.execute(select(*(getattr(Deregistration, c) for c in columns))).all()
    return pd.DataFrame(rows, columns=columns)


def traces_of(
    session: Session, *, store: EvidenceStore, sources: Sequence[str], persons: np.ndarray,
    first_day: dt.date, last_day: dt.date,
) -> pd.DataFrame:  # fmt: skip
    """Read the traces of `persons` from `sources` within the window, as one frame."""
    frames = []
    wanted = pa.array(persons.astype(np.int32), type=pa.int32())
    columns = ["record_id", "person_id", "day", "kind", "link_key"]
    for source in sources:
        # Filter batch by batch: only the few dead persons' traces are ever held whole.
        for batch in store.scan(
            session, source=source, columns=columns, first_day=first_day, last_day=last_day
        ):
            kept = batch.filter(pc.is_in(batch["person_id"], value_set=wanted))
            if kept.num_rows:
                frame = kept.to_pandas()
                frame["kind"] = frame["kind"].astype(str)
                frame.insert(0, "source", source)
                frames.append(frame)
    if not frames:
        return pd.DataFrame({column: [] for column in rules.TRACE_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def face_passes(
    session: Session, *, store: EvidenceStore, pass_kinds: Sequence[str], first_day: dt.date,
    last_day: dt.date,
) -> pd.DataFrame:  # fmt: skip
    """Read the passing face results within the window that name a face template and a person."""
    frames = []
    kinds = pa.array(list(pass_kinds), type=pa.string())
    for batch in store.scan(
        session, source="face", columns=rules.FACE_PASS_COLUMNS, first_day=first_day,
        last_day=last_day,
    ):  # fmt: skip
        # Filtered in Arrow: only passes naming a template become pandas rows.
        wanted = pc.and_(
            pc.and_(pc.is_valid(batch["face_id"]), pc.greater_equal(batch["person_id"], 0)),
            pc.is_in(batch["kind"].cast(pa.string()), value_set=kinds),
        )
        kept = batch.filter(wanted)
        if kept.num_rows:
            frame = kept.to_pandas()
            frame["kind"] = frame["kind"].astype(str)
            frames.append(frame)
    if not frames:
        return pd.DataFrame({column: [] for column in rules.FACE_PASS_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def placing_outcomes(
    session: Session, *, outcomes: Sequence[str], first_day: dt.date, last_day: dt.date
) -> pd.DataFrame:
    """Return the review outcomes recorded within the window that say where a person is."""
    rows = session.execute(
        select(
            ReviewTask.id, ReviewTask.person_id, ReviewTask.kind, ReviewTask.outcome,
            ReviewTask.closed_on, ReviewTask.outcome_detail,
        ).where(
            ReviewTask.status == TaskStatus.DONE,
            ReviewTask.outcome.in_(list(outcomes)),
            ReviewTask.closed_on.between(first_day, last_day),
        )
    ).all()  # fmt: skip
    frame = pd.DataFrame(
        rows, columns=["task_id", "person_id", "kind", "outcome", "closed_on", "detail"]
    )
    if frame.empty:
        return pd.DataFrame({column: [] for column in rules.OUTCOME_COLUMNS})
    frame["kind"] = frame["kind"].astype(object).map(str)
    frame["day"] = (pd.to_datetime(frame["closed_on"]) - pd.Timestamp("1970-01-01")).dt.days
    frame["actor"] = frame["detail"].str.get("by")
    frame["region"] = frame["detail"].str.get("region")
    return frame[rules.OUTCOME_COLUMNS]
