"""The ingest's fast paths give exactly what the plain ways they replace give."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

import liveness.identity.linking as linking
from liveness.evidence.parts import record_hashes
from liveness.identity.keys import pandas_string_hashes
from liveness.ingest.traces import whole_seconds
from models import Card, Person

# Record ids of every length around the 8-byte blocks and the padded width, non-ASCII, NULs.
RECORD_ID = st.one_of(
    st.text(alphabet="T0123456789", max_size=20),
    st.text(max_size=12),
    st.text(alphabet="ab\x00é", min_size=60, max_size=90),
)


def _pandas_hashes(values: list[str]) -> np.ndarray:
    """Hash record ids as the store always did: pandas' hash_array of Python strings."""
    return pd.util.hash_array(np.array(values, dtype=object), categorize=False)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(RECORD_ID, max_size=50), start=st.integers(min_value=0, max_value=3))
def test_record_hashes_are_pandas_hash_array(values: list[str], start: int) -> None:
    ids = pd.Series(pa.array(values, pa.string()), dtype=pd.StringDtype("pyarrow"))
    assert record_hashes(ids).tolist() == _pandas_hashes(values).tolist()
    # An array that starts inside its buffers (a slice) hashes alike.
    sliced = pa.array(values, pa.large_string()).slice(min(start, len(values)))
    expected = _pandas_hashes(values[min(start, len(values)) :])
    assert pandas_string_hashes(sliced).tolist() == expected.tolist()


def test_record_hashes_of_a_full_batch_and_of_odd_columns() -> None:
    ids = [f"T{k:010d}" for k in range(70_000)] + ["中文记录号", "", "x" * 65, "a\x00b"]
    arrow_ids = pd.Series(pa.array(ids), dtype=pd.StringDtype("pyarrow"))
    assert (record_hashes(arrow_ids) == _pandas_hashes(ids)).all()
    # Python objects and missing ids keep the plain way.
    assert (record_hashes(pd.Series(ids, dtype=object)) == _pandas_hashes(ids)).all()
    with_missing = pd.Series(["T1", None, "T2"], dtype=pd.StringDtype("pyarrow"))
    plain = pd.util.hash_array(with_missing.astype(object).to_numpy(), categorize=False)
    assert (record_hashes(with_missing) == plain).all()


@settings(max_examples=200, deadline=None)
@given(
    micros=st.lists(
        st.one_of(st.none(), st.integers(min_value=-(2**52), max_value=2**52)), max_size=40
    ),
    unit=st.sampled_from(["us", "ns", "ms"]),
)
def test_whole_seconds_floor_like_the_time_zone_kernel(micros: list[int | None], unit: str) -> None:
    stamps = pa.array(micros, pa.timestamp("us", tz="UTC")).cast(
        pa.timestamp(unit, tz="UTC"), safe=False
    )
    expected = pc.floor_temporal(stamps, unit="second").cast(pa.timestamp("s", tz="UTC"))
    assert whole_seconds(stamps).equals(expected)


def test_whole_seconds_of_other_zones_keep_the_kernel() -> None:
    stamps = pa.array([0, -1, 1_500_000, None], pa.timestamp("us", tz="Asia/Shanghai"))
    expected = pc.floor_temporal(stamps, unit="second").cast(pa.timestamp("s", tz="UTC"))
    assert whole_seconds(stamps).equals(expected)


def _person(session: Session, ref: str) -> int:
    person = Person(
        person_ref=ref, id_number=f"33070219500101{ref[-3:]}X", id_status="valid", name="王伟",
        sex="M", birth_date=dt.date(1950, 1, 1), region_code="330702", grid_code="G1",
    )  # fmt: skip
    session.add(person)
    session.flush()
    return person.id


@pytest.mark.parametrize(
    "odd_card", [None, "CARD\x1fSPLIT", "CARD\nBROKEN", "CARD\rCR", "\ufeff0000BOM"]
)
def test_cards_read_as_one_text_equal_the_row_by_row_read(
    session: Session, odd_card: str | None
) -> None:
    holder = _person(session, "P00000001")
    cards = [
        Card(card_no="8860100000012345", card_kind="transit", id_number="x", person_id=holder,
             issued_on=dt.date(2020, 6, 5), cancelled_on=None),
        Card(card_no="8860100000020264", card_kind="transit", id_number="y", person_id=None,
             issued_on=dt.date(1969, 12, 31), cancelled_on=dt.date(2025, 3, 1)),
        Card(card_no="卡 001", card_kind="citizen", id_number="z", person_id=holder,
             issued_on=dt.date(2024, 2, 29), cancelled_on=dt.date(2024, 3, 1)),
    ]  # fmt: skip
    if odd_card is not None:
        # First: a BOM only misleads a parser at the start of the text.
        cards.insert(
            0, Card(card_no=odd_card, card_kind="x", id_number="w", issued_on=dt.date(2021, 1, 1))
        )
    session.add_all(cards)
    session.flush()
    if odd_card is None:
        assert linking._card_table(session) is not None
    else:
        # A card number that would split the text wrongly is never misread: the rows are read.
        assert linking._card_table(session) is None
    fast = linking.CardIndex.load(session)
    original = linking._card_table
    try:
        linking._card_table = lambda session: None  # type: ignore[assignment]
        rows = linking.CardIndex.load(session)
    finally:
        linking._card_table = original  # type: ignore[assignment]
    for column in ("person_id", "issued_day", "cancelled_day"):
        assert fast.cards[column].tolist() == rows.cards[column].tolist()
    assert fast.cards["card_no"].astype(object).tolist() == rows.cards["card_no"].tolist()
    probes = pa.array([c.card_no for c in cards] + ["nobody", None], pa.string())
    assert fast.by_card_no.positions(probes).tolist() == rows.by_card_no.positions(probes).tolist()


def test_an_empty_card_register_reads_as_no_cards(session: Session) -> None:
    index = linking.CardIndex.load(session)
    assert len(index.cards) == 0
    assert index.by_card_no.positions(pa.array(["8860"], pa.string())).tolist() == [-1]
