"""Loading the benefit roll and the card register."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from liveness.db import plain_records, query_frame
from models import Base, Benefit, Card, Person

PERSON_COLUMNS = (
    "id_number", "id_status", "name", "sex", "birth_date", "region_code", "grid_code",
    "bank_account", "phone", "address",
)  # fmt: skip
# The roll's status is kept as `roll_status`; it seeds the payment status of a new benefit
# only: afterwards the list's state machine alone changes that.
BENEFIT_COLUMNS = ("monthly_amount", "benefit_start", "roll_status", "last_certified_on")
CARD_COLUMNS = ("card_kind", "id_number", "person_id", "issued_on", "cancelled_on")


def _as_dates(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Return `frame` with datetime columns turned into dates, as the tables store them."""
    return frame.assign(**{c: frame[c].dt.date for c in columns if c in frame})


def _upsert(
    session: Session,
    table: type[Base],
    incoming: pd.DataFrame,
    *,
    keys: tuple[str, ...],
    values: tuple[str, ...],
    on_insert: tuple[str, ...] = (),
) -> np.ndarray:
    """Insert new rows and update changed ones by `keys`; return, per row, whether it changed.

    `on_insert` columns are written for new rows only.
    """
    columns: list[InstrumentedAttribute[Any]] = [
        getattr(table, name) for name in ("id", *keys, *values)
    ]
    stored = query_frame(session, select(*columns), ["id", *keys, *values])
    incoming = incoming.reset_index(drop=True)
    merged = incoming.merge(stored, on=list(keys), how="left", suffixes=("", "_stored"))
    new = merged["id"].isna().to_numpy()
    before = merged[[f"{name}_stored" for name in values]].astype(object)
    after = merged[list(values)].astype(object)
    differs = ~new & (
        after.where(after.notna(), None).to_numpy() != before.where(before.notna(), None).to_numpy()
    ).any(axis=1)
    if new.any():
        # A Core insert: the ORM's per-row bookkeeping costs more than the insert itself.
        core_table: Any = table.__table__
        statement = insert(core_table)
        if session.get_bind().dialect.name == "sqlite":
            # SQLite sets the roll change log's triggers (migration 0007) up once per executed
            # statement: row by row that tripled the load. RETURNING makes SQLAlchemy send a
            # thousand rows per statement ("insertmanyvalues"). PostgreSQL's pipelined
            # executemany is faster as it is (and its insert triggers run per statement).
            statement = statement.returning(core_table.c.id)
        session.execute(statement, plain_records(incoming.loc[new, [*keys, *values, *on_insert]]))
    if differs.any():
        changed = merged.loc[differs, ["id", *values]].astype({"id": np.int64})
        session.execute(update(table), plain_records(changed))
    return np.asarray(new | differs)


def load_registry(session: Session, rows: pd.DataFrame) -> tuple[int, int]:
    """Insert or update persons and benefits; return (rows loaded, rows re-delivered)."""
    if rows.empty:
        return 0, 0
    rows = _as_dates(
        rows.rename(columns={"id_number_status": "id_status", "status": "roll_status"}),
        ("birth_date", "benefit_start", "last_certified_on"),
    )
    # Exact decimals from the connector (never floats): the amounts of overpayments and back pay.
    rows["monthly_amount"] = rows["monthly_amount"].astype(object)
    persons = rows.drop_duplicates("person_ref", keep="last")
    person_changed = _upsert(
        session, Person, persons[["person_ref", *PERSON_COLUMNS]],
        keys=("person_ref",), values=PERSON_COLUMNS,
    )  # fmt: skip
    changed_refs = set(persons["person_ref"].to_numpy()[person_changed])
    ids = dict(session.execute(select(Person.person_ref, Person.id)).all())
    rows["person_id"] = rows["person_ref"].map(ids).astype(np.int64)
    benefits = rows[["person_id", "benefit_type", *BENEFIT_COLUMNS]].assign(
        status=rows["roll_status"]
    )
    benefit_changed = _upsert(
        session, Benefit, benefits, keys=("person_id", "benefit_type"), values=BENEFIT_COLUMNS,
        on_insert=("status",),
    )  # fmt: skip
    changed = benefit_changed | rows["person_ref"].isin(changed_refs).to_numpy()
    return int(changed.sum()), int((~changed).sum())


def load_cards(session: Session, rows: pd.DataFrame) -> tuple[int, int, int]:
    """Insert or update cards; return (rows loaded, re-delivered, holder not on the roll)."""
    if rows.empty:
        return 0, 0, 0
    holders = dict(session.execute(select(Person.id_number, Person.id)).all())
    cards = _as_dates(
        rows.drop_duplicates("card_no", keep="last")[
            ["card_no", "card_kind", "id_number", "issued_on", "cancelled_on"]
        ],
        ("issued_on", "cancelled_on"),
    )
    cards["person_id"] = cards["id_number"].map(holders).astype("Int64")
    changed = _upsert(session, Card, cards, keys=("card_no",), values=CARD_COLUMNS)
    loaded = int(changed.sum())
    unmatched = int(cards["person_id"].isna().sum())
    return loaded, len(rows) - loaded, unmatched
