"""A read of many persons' rows in one statement equals the read in chunks of ids it replaces."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from liveness.certification.workflow.frames import benefits, earliest_dates, frame_in, of_persons
from liveness.db import IN_CHUNK, id_rows, query_frame
from models import Benefit, BenefitStatus, BenefitType, Person


def _roll(session: Session, persons: int) -> list[int]:
    """Add persons, every third with a second benefit, every fourth suspended; return ids."""
    session.execute(
        insert(Person),
        [
            {"person_ref": f"P{n}", "id_number": f"N{n}", "id_status": "valid", "name": "张",
             "sex": "F", "birth_date": dt.date(1950, 1, 1), "region_code": "330102",
             "grid_code": "G1"}
            for n in range(persons)
        ],
    )  # fmt: skip
    ids = list(session.scalars(select(Person.id).order_by(Person.id)))
    rows = [
        {"person_id": p, "benefit_type": BenefitType(kind), "monthly_amount": Decimal("1.00"),
         "benefit_start": dt.date(2010, 1, 1),
         "status": BenefitStatus.SUSPENDED if n % 4 == 0 else BenefitStatus.ACTIVE}
        for n, p in enumerate(ids)
        for kind in (("enterprise_pension", "survivor_pension") if n % 3 == 0
                     else ("resident_pension",))
    ]  # fmt: skip
    session.execute(insert(Benefit), rows)
    session.flush()
    return ids


def _chunked(session: Session, persons: list[int], *where: object) -> pd.DataFrame:
    """The benefits as read before: one statement per `IN_CHUNK` ids (the oracle)."""
    frames = [
        benefits(session, Benefit.person_id.in_(persons[start : start + IN_CHUNK]), *where)
        for start in range(0, len(persons), IN_CHUNK)
    ]
    return pd.concat(frames, ignore_index=True)


def _by_id(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.sort_values(key).reset_index(drop=True)


def test_many_persons_are_read_in_one_statement_with_the_rows_of_chunks(
    session: Session,
) -> None:
    ids = _roll(session, 3 * IN_CHUNK)
    # More than a chunk, with gaps and ids nobody holds.
    wanted = [*ids[::2], max(ids) + 1, max(ids) + 7]
    assert len(wanted) > IN_CHUNK
    for where in [(), (Benefit.status == BenefitStatus.ACTIVE,)]:
        got = of_persons(session, wanted, *where)
        want = _chunked(session, sorted(wanted), *where)
        assert len(got) == len(want) > 0
        pd.testing.assert_frame_equal(_by_id(got, "benefit_id"), _by_id(want, "benefit_id"))
    rows = frame_in(
        session, wanted,
        lambda chunk: select(Benefit.id, Benefit.person_id).where(Benefit.person_id.in_(chunk)),
        ["id", "person_id"],
    )  # fmt: skip
    assert sorted(rows["id"]) == sorted(_chunked(session, sorted(wanted))["benefit_id"])
    # The ids as rows: each once, nothing else.
    unpacked = query_frame(session, id_rows(session, wanted), ["id"])
    assert sorted(unpacked["id"].astype(int)) == sorted(wanted)


def test_the_earliest_date_per_person_is_the_groupby_minimum() -> None:
    day = dt.date(2024, 1, 31)
    persons = [5, 3, 5, 9, 3, 3, 1, 5]
    dates = [day + dt.timedelta(days=(n * 37) % 11 - 5) for n in range(len(persons))]
    cases = [
        pd.Series(dates, index=pd.Index(persons, name="person_id"), name="died_on"),
        pd.Series([dt.date(1, 1, 1), dt.date(9999, 12, 31), day], index=[2, 2, 1]),
        pd.Series([day, None, day], index=[1, 1, 2], dtype=object),  # a null: pandas decides
        pd.Series([dt.datetime(2024, 1, 1, 5), dt.datetime(2023, 5, 1)], index=[1, 1]),  # pandas
        pd.Series([], index=pd.Index([], dtype="int64", name="person_id"), dtype=object),
    ]
    for dates_of in cases:
        got = earliest_dates(dates_of)
        pd.testing.assert_series_equal(got, dates_of.groupby(level=0).min())
        assert [type(v) for v in got] == [type(v) for v in dates_of.groupby(level=0).min()]
