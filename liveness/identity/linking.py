"""Vectorised linking of evidence rows to persons on the roll."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import (
    Select,
    String,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from liveness.db import IN_CHUNK, TextColumn, read_joined
from liveness.identity.keys import KeyIndex
from models import Card, DeathMatch, Person

# Where a registry's death notices are kept: they match by positive identification.
NOTICE_SOURCE = "registry_notice"

USABLE_ID_STATUSES = ("valid", "upgraded")
UNLINKED = -1


def _clean_names(names: pd.Series) -> pd.Series:
    """Return names compared as people write them: NFKC, no spaces (or middle dots)."""
    return (
        names.astype("string")
        .fillna("")
        .str.normalize("NFKC")
        .str.replace(r"[\s·・.]", "", regex=True)
    )


def names_agree(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Return, per row, whether two name columns name the same person (blank never agrees)."""
    cleaned_left = _clean_names(left.reset_index(drop=True))
    cleaned_right = _clean_names(right.reset_index(drop=True))
    return ((cleaned_left == cleaned_right) & (cleaned_left != "")).to_numpy(dtype=bool)


@dataclass(frozen=True, eq=False)
class RollIndex:
    """The roll's persons, indexed for linking."""

    persons: pd.DataFrame  # person_id, id_number, id_status, name, sex, birth_date

    @classmethod
    def load(cls, session: Session) -> RollIndex:
        """Load every person on the roll, in one query."""
        columns = _columns(
            session,
            select(
                Person.id,
                Person.id_number,
                Person.id_status,
                Person.name,
                Person.sex,
                # Read as delivered (text on SQLite): parsed below at once, not row by row.
                type_coerce(Person.birth_date, String),
            ),
        )
        frame = pd.DataFrame(
            {
                "person_id": np.asarray(columns[0], dtype=np.int64),
                "id_number": columns[1],
                "id_status": columns[2],
                "name": columns[3],
                "sex": columns[4],
                "birth_date": pd.to_datetime(
                    pd.Series(columns[5], dtype=object), format="ISO8601"
                ).astype("datetime64[s]"),
            }
        )
        return cls(persons=frame)

    @classmethod
    def candidates(cls, session: Session, *, id_numbers: list[str], names: list[str]) -> RollIndex:
        """Load only the persons a few records may name: by identity number or by name.

        For a handful of records (a registry's notices) instead of the whole roll: every
        holder of those numbers and everyone of those names is there, so that a match found
        here is unique as it is on the whole roll (but for a roll name written with spaces
        the record's lacks: that person is missed, and nobody is suspended by mistake).
        """
        keys = sorted({*names, *_clean_names(pd.Series(names, dtype=object)).tolist()} - {""})
        numbers = sorted(set(id_numbers))
        rows: list[Any] = []
        for start in range(0, max(len(numbers), len(keys)), IN_CHUNK):
            rows.extend(
                session.execute(
                    select(Person.id, Person.id_number, Person.id_status, Person.name,
                           Person.sex, Person.birth_date)
                    .where(Person.id_number.in_(numbers[start : start + IN_CHUNK])
                           | Person.name.in_(keys[start : start + IN_CHUNK]))
                ).all()
            )  # fmt: skip
        unique = {row[0]: row for row in rows}.values()
        frame = pd.DataFrame(
            [tuple(row) for row in unique],
            columns=["person_id", "id_number", "id_status", "name", "sex", "birth_date"],
        )
        frame["person_id"] = frame["person_id"].astype(np.int64)
        frame["birth_date"] = pd.to_datetime(frame["birth_date"]).astype("datetime64[s]")
        return cls(persons=frame)

    @cached_property
    def by_number(self) -> pd.Series:
        """Return person ids by usable identity number; a number held twice links no one."""
        usable = self.persons[self.persons["id_status"].isin(USABLE_ID_STATUSES)]
        usable = usable.drop_duplicates("id_number", keep=False)
        return pd.Series(
            usable["person_id"].to_numpy(), index=pd.Index(usable["id_number"].to_numpy())
        )

    @cached_property
    def number_index(self) -> KeyIndex:
        """Return the usable identity numbers of `by_number`, indexed for vectorised lookups."""
        return KeyIndex.build(pa.array(self.by_number.index.to_numpy(dtype=object), pa.string()))

    @cached_property
    def by_demographics(self) -> pd.DataFrame:
        """Return person ids with the name key, sex and birth date they are matched on."""
        return pd.DataFrame(
            {
                "person_id": self.persons["person_id"].to_numpy(),
                "name_key": _clean_names(self.persons["name"]).to_numpy(),
                "sex": self.persons["sex"].to_numpy(),
                "birth_date": pd.to_datetime(self.persons["birth_date"]).to_numpy(),
            }
        )

    @cached_property
    def by_name_and_day(self) -> pd.DataFrame:
        """Return person ids with the name key and birth day (a day number) they match on."""
        return pd.DataFrame(
            {
                "person_id": self.persons["person_id"].to_numpy(),
                "name_key": _clean_names(self.persons["name"]).to_numpy(),
                "day": _day_of(pd.to_datetime(self.persons["birth_date"])),
            }
        )


def link_by_number_and_name(
    numbers: pd.Series, statuses: pd.Series, names: pd.Series, roll: RollIndex
) -> np.ndarray:
    """Link rows whose number fails its check character by name, sex and birth date.

    A number with a wrong check character (a typing error) still carries the holder's birth
    date and sex; with the name they identify one person on the roll, or nobody: a match
    that is not unique links no one. Returns the person id per row, else -1.
    """
    person_id = np.full(len(numbers), UNLINKED, dtype=np.int32)
    usable = (statuses.to_numpy() == "bad_check") & names.notna().to_numpy()
    if not usable.any():
        return person_id
    text = numbers[usable].astype(str)
    candidates = pd.DataFrame(
        {
            "row": np.flatnonzero(usable),
            "name_key": _clean_names(names[usable]).to_numpy(),
            "birth_date": pd.to_datetime(
                text.str.slice(6, 14), format="%Y%m%d", errors="coerce"
            ).to_numpy(),
            "sex": np.where(
                pd.to_numeric(text.str.slice(16, 17), errors="coerce").to_numpy() % 2 == 1,
                "M",
                "F",
            ),
        }
    ).dropna(subset=["birth_date"])
    candidates = candidates[candidates["name_key"] != ""]
    joined = candidates.merge(roll.by_demographics, on=["name_key", "sex", "birth_date"])
    hits = joined.groupby("row")["person_id"].agg(["first", "size"])
    unique = hits[hits["size"] == 1]
    person_id[unique.index.to_numpy()] = unique["first"].to_numpy()
    return person_id


def link_by_name_and_birth_date(
    names: pd.Series, birth_dates: pd.Series, roll: RollIndex
) -> np.ndarray:
    """Link rows by name and birth date on the roll: the one person who has both, else -1.

    For sources that know people by name and birth date only (a community canteen's sign-in
    sheet): a match that is not unique (namesakes born the same day) links no one.
    """
    person_id = np.full(len(names), UNLINKED, dtype=np.int32)
    born = pd.to_datetime(pd.Series(birth_dates).reset_index(drop=True), errors="coerce")
    keys = _clean_names(pd.Series(names).reset_index(drop=True))
    usable = (keys != "").to_numpy() & born.notna().to_numpy()
    if not usable.any():
        return person_id
    candidates = pd.DataFrame(
        {
            "row": np.flatnonzero(usable),
            "name_key": keys[usable].to_numpy(),
            "day": _day_of(born[usable]),
        }
    )
    joined = candidates.merge(roll.by_name_and_day, on=["name_key", "day"])
    hits = joined.groupby("row")["person_id"].agg(["first", "size"])
    unique = hits[hits["size"] == 1]
    person_id[unique.index.to_numpy()] = unique["first"].to_numpy()
    return person_id


def _day_of(dates: pd.Series) -> np.ndarray:
    """Return dates (or timestamps, taken as local days) as day numbers since 1970-01-01."""
    values = dates.to_numpy(dtype="datetime64[ns]")
    return values.astype("datetime64[D]").astype(np.int64)


def link_by_id_number(numbers: pd.Series, statuses: pd.Series, roll: RollIndex) -> np.ndarray:
    """Return the person id of each row whose normalised number is on the roll, else -1."""
    positions = roll.number_index.positions(numbers)
    holders = np.append(roll.by_number.to_numpy(), UNLINKED)  # position -1 reads the sentinel
    person_id = holders[positions]
    usable = statuses.isin(USABLE_ID_STATUSES).to_numpy(dtype=bool)
    return np.where(usable, person_id, UNLINKED).astype(np.int32)


@dataclass(frozen=True, eq=False)
class CardIndex:
    """Cards with their holder and validity, indexed by card number."""

    cards: pd.DataFrame  # card_no, person_id (-1 unknown holder), issued_day, cancelled_day

    @classmethod
    def load(cls, session: Session) -> CardIndex:
        """Load every card, in one query."""
        table = _card_table(session)
        if table is not None:
            frame = pd.DataFrame(
                {
                    "card_no": table["card_no"]
                    .to_pandas(types_mapper=pd.ArrowDtype)
                    .astype(pd.StringDtype("pyarrow")),
                    "person_id": table["person_id"].fill_null(UNLINKED).to_numpy().astype(np.int32),
                    "issued_day": _day_numbers(table["issued_on"]).fillna(np.iinfo(np.int32).min),
                    "cancelled_day": _day_numbers(table["cancelled_on"]).fillna(
                        np.iinfo(np.int32).max
                    ),
                }
            )
            return cls(cards=frame)
        card_no, person_id, issued_on, cancelled_on = _columns(
            session,
            select(
                Card.card_no,
                Card.person_id,
                # Read as delivered (text on SQLite): parsed below at once, not row by row.
                type_coerce(Card.issued_on, String),
                type_coerce(Card.cancelled_on, String),
            ),
        )
        holders = pd.Series(person_id, dtype="Int64").fillna(UNLINKED)
        frame = pd.DataFrame(
            {
                "card_no": card_no,
                "person_id": holders.to_numpy(dtype=np.int32),
                "issued_day": _days(issued_on).fillna(np.iinfo(np.int32).min),
                "cancelled_day": _days(cancelled_on).fillna(np.iinfo(np.int32).max),
            }
        )
        return cls(cards=frame)

    @cached_property
    def validity(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return issued day, cancelled day and holder per card, in `by_card_no`'s key order.

        Built once, and read in the order the index finds the cards in (a region at a time).
        """
        index = self.by_card_no
        return (
            index.in_key_order(self.cards["issued_day"].to_numpy()),
            index.in_key_order(self.cards["cancelled_day"].to_numpy()),
            index.in_key_order(self.cards["person_id"].to_numpy()),
        )

    @cached_property
    def by_card_no(self) -> KeyIndex:
        """Return the card numbers indexed for vectorised lookups, built once."""
        card_no = self.cards["card_no"]
        if card_no.dtype == object:
            return KeyIndex.build(pa.array(card_no.to_numpy(), pa.string()))
        return KeyIndex.build(card_no)  # Arrow-backed text: no Python string per card


def _columns(session: Session, statement: Select[*tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Run a parameterless select on the session's connection; return it column by column.

    The driver's plain tuples are read directly: building a SQLAlchemy row (or an ORM object)
    per row costs more than the query itself on a roll of a million persons.
    """
    connection = session.connection()
    sql = str(statement.compile(dialect=connection.dialect))
    cursor = connection.connection.cursor()
    # A million fresh tuples would set off the cyclic garbage collector again and again (it
    # then costs several times the query); tuples of plain values hold no cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        cursor.execute(sql)
        rows = cursor.fetchall()
        return list(zip(*rows, strict=True)) if rows else [() for _ in statement.selected_columns]
    finally:
        if collecting:
            gc.enable()
        cursor.close()


_CARD_COLUMNS: dict[str, tuple[TextColumn, pa.DataType]] = {
    "card_no": (Card.card_no, pa.string()),
    "person_id": (Card.person_id, pa.int64()),
    "issued_on": (Card.issued_on, pa.date32()),
    "cancelled_on": (Card.cancelled_on, pa.date32()),
}


def _card_table(session: Session) -> pa.Table | None:
    """Read every card as one text the database joins, parsed by Arrow; None if it cannot.

    Fetched row by row, a million cards are four million Python objects (about a second,
    holding the GIL while the delivery's reader wants it). None where the text would not
    split back exactly (see `read_joined`): the caller then reads the cards row by row.
    """
    table = read_joined(session, _CARD_COLUMNS, nullable=True)
    return None if table is None else table.combine_chunks()


def _days(dates: tuple[Any, ...]) -> pd.Series:
    """Return dates (ISO text or dates, as the driver gives them) as float day numbers."""
    try:
        parsed = pa.array(dates).cast(pa.date32())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        parsed = pa.array(pd.to_datetime(pd.Series(dates, dtype=object), errors="coerce"))
        parsed = parsed.cast(pa.date32())
    return _day_numbers(parsed)


def _day_numbers(dates: pa.Array | pa.ChunkedArray) -> pd.Series:
    """Return Arrow dates as float day numbers since 1970-01-01 (NaN where null)."""
    days = dates.cast(pa.int32()).to_numpy(zero_copy_only=False)
    return pd.Series(days, dtype="float64")


def link_by_card(
    card_nos: pd.Series | pa.Array | pa.ChunkedArray, days: np.ndarray, cards: CardIndex
) -> np.ndarray:
    """Return the holder of each row's card if the card was valid that day, else -1."""
    rows, slots = cards.by_card_no.matches(card_nos)
    issued, cancelled, holders = cards.validity
    on_day = days[rows]
    # A card stops being valid on its cancellation day; rows of no known card link no one.
    valid = (on_day >= issued[slots]) & (on_day < cancelled[slots])
    person_id = np.full(len(days), UNLINKED, dtype=np.int32)
    person_id[rows[valid]] = holders[slots[valid]]
    return person_id


def match_death_records(
    records: pd.DataFrame, roll: RollIndex, *, demographic_confidence: float
) -> pd.DataFrame:
    """Link death records to persons; return person_id, match and confidence per record.

    `records` has id_number, id_number_status, name, and optionally sex and birth_date. A
    record acts only when its match is unambiguous and the name agrees: a usable number whose
    holder has another name is a `name_mismatch` (a review case, never a suspension). A match
    on name, sex and birth date alone, less certain, has `demographic_confidence` (policy).
    """
    count = len(records)
    person_id = link_by_id_number(records["id_number"], records["id_number_status"], roll)
    match = np.full(count, DeathMatch.UNMATCHED.value, dtype=object)
    confidence = np.zeros(count, dtype=np.float64)

    by_number = person_id >= 0
    if by_number.any():
        roll_names = roll.persons.set_index("person_id")["name"]
        holder_names = roll_names.reindex(person_id[by_number])
        agree = names_agree(records["name"][by_number], holder_names)
        match[np.flatnonzero(by_number)[agree]] = DeathMatch.ID_NUMBER.value
        confidence[np.flatnonzero(by_number)[agree]] = 1.0
        match[np.flatnonzero(by_number)[~agree]] = DeathMatch.NAME_MISMATCH.value

    rest = ~by_number
    if rest.any() and {"sex", "birth_date"} <= set(records.columns):
        person_id, match, confidence = _match_on_demographics(
            records, roll, rest, person_id, match, confidence, demographic_confidence
        )
    return pd.DataFrame(
        {"person_id": person_id.astype(np.int32), "match": match, "confidence": confidence}
    )


def _match_on_demographics(
    records: pd.DataFrame,
    roll: RollIndex,
    rest: np.ndarray,
    person_id: np.ndarray,
    match: np.ndarray,
    confidence: np.ndarray,
    demographic_confidence: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match records without a usable number on name, sex and birth date."""
    candidates = records.loc[rest, ["name", "sex", "birth_date"]].copy()
    candidates["row"] = np.flatnonzero(rest)
    candidates["name_key"] = _clean_names(candidates["name"]).to_numpy()
    candidates = candidates[
        (candidates["name_key"] != "")
        & candidates["sex"].notna()
        & candidates["birth_date"].notna()
    ]
    if candidates.empty:
        return person_id, match, confidence
    candidates["birth_date"] = pd.to_datetime(candidates["birth_date"])
    joined = candidates.merge(
        roll.by_demographics, on=["name_key", "sex", "birth_date"], how="inner"
    )
    hits = joined.groupby("row")["person_id"].agg(["first", "size"])
    unique_rows = hits.index[hits["size"] == 1].to_numpy()
    ambiguous_rows = hits.index[hits["size"] > 1].to_numpy()
    person_id[unique_rows] = hits.loc[hits["size"] == 1, "first"].to_numpy()
    match[unique_rows] = DeathMatch.DEMOGRAPHIC.value
    confidence[unique_rows] = demographic_confidence
    match[ambiguous_rows] = DeathMatch.AMBIGUOUS.value
    return person_id, match, confidence


def match_death_notices(
    session: Session, records: pd.DataFrame, roll: RollIndex, *, demographic_confidence: float
) -> pd.DataFrame:
    """Link a registry's death notices by positive identification; as `match_death_records`.

    Positive identification (Australia's rule): the identity number matched, the name agrees,
    and at least one more attribute agrees (birth date, sex, region_code). Anything less
    that still names one person (a number and name alone, or a unique match on name, sex and
    birth date without a number) is `unconfirmed`: a death review, never a suspension.
    """
    matched = match_death_records(records, roll, demographic_confidence=demographic_confidence)
    match = matched["match"].to_numpy(dtype=object).copy()
    by_number = match == DeathMatch.ID_NUMBER.value
    if by_number.any():
        person_id = matched["person_id"].to_numpy()[by_number]
        holders = roll.persons.set_index("person_id").reindex(person_id)
        notices = records.reset_index(drop=True).loc[by_number]
        sex = notices["sex"].astype(object).to_numpy()
        agree = (sex == holders["sex"].astype(object).to_numpy()) & pd.notna(sex)
        born = pd.to_datetime(notices["birth_date"], errors="coerce").to_numpy()
        agree |= born == pd.to_datetime(holders["birth_date"]).to_numpy()
        if "region_code" in notices:
            regions = _regions(session, person_id)
            region = notices["region_code"].astype(object).to_numpy()
            agree |= (region == regions.reindex(person_id).to_numpy()) & pd.notna(region)
        rows = np.flatnonzero(by_number)[~agree]
        match[rows] = DeathMatch.UNCONFIRMED.value
    match[match == DeathMatch.DEMOGRAPHIC.value] = DeathMatch.UNCONFIRMED.value
    return matched.assign(match=match)


def _regions(session: Session, person_ids: np.ndarray) -> pd.Series:
    """Return the region code of a few persons (those a notice's number found), by person id."""
    ids = sorted({int(p) for p in person_ids})
    found: list[tuple[int, str]] = []
    for start in range(0, len(ids), IN_CHUNK):
        found.extend(
            (int(row[0]), str(row[1]))
            for row in session.execute(
                select(Person.id, Person.region_code).where(
                    Person.id.in_(ids[start : start + IN_CHUNK])
                )
            )
        )
    return pd.Series(dict(found), dtype=object)
