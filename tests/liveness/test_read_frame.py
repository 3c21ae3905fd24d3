"""A read joined by the database (`read_frame`) returns exactly the frame a row read returns."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from liveness import db
from liveness.db import any_ids, id_rows, query_frame, read_frame
from models import Benefit, BenefitStatus, BenefitType, Person

# Names and phones as a roll may hold them: empty, missing, wide characters, and values no
# joined text can carry (the field separator, a line break), which are read row by row.
_NAMES = ["张三", "", 'O\'Brien, "Jr"', "a\x1fb", "two\nlines", "s", "  spaced  ", "\ufeffbom"]


def _roll(session: Session) -> list[int]:
    """Add persons with varied text and dates, some with benefits; return their ids."""
    session.execute(
        insert(Person),
        [
            {"person_ref": f"R{n}", "id_number": f"N{n}", "id_status": "valid",
             "name": _NAMES[n % len(_NAMES)], "sex": "F",
             "birth_date": dt.date(1900 + n, 1 + n % 12, 1 + n % 28),
             "region_code": "330102", "grid_code": f"G{n % 3}",
             "phone": None if n % 3 == 0 else ("" if n % 3 == 1 else f"1{n:010d}")}
            for n in range(40)
        ],
    )  # fmt: skip
    ids = list(
        session.scalars(select(Person.id).where(Person.person_ref.like("R%")).order_by(Person.id))
    )
    session.execute(
        insert(Benefit),
        [
            {"person_id": p, "benefit_type": BenefitType.RESIDENT_PENSION,
             "monthly_amount": Decimal("1.25"), "benefit_start": dt.date(2010, 1, 1),
             "status": BenefitStatus.SUSPENDED if n % 4 == 0 else BenefitStatus.ACTIVE,
             "suspended_as_of": dt.date(2024, 5, 1) if n % 4 == 0 else None,
             "held_entry_id": None}
            for n, p in enumerate(ids) if n % 2 == 0
        ],
    )  # fmt: skip
    session.flush()
    return ids


def _same(
    session: Session, statement: Any, columns: list[str], *, joined: bool = True
) -> pd.DataFrame:
    """Assert that both reads give the same frame, rows in the same order; return it.

    With `joined`, the joined read must not fall back to rows.
    """
    want = query_frame(session, statement, columns)
    with pytest.MonkeyPatch.context() as patch:
        if joined:
            patch.setattr(db, "query_frame", _no_row_read)
        got = read_frame(session, statement, columns)
    pd.testing.assert_frame_equal(got, want)
    return got


def _no_row_read(*_: Any) -> pd.DataFrame:
    raise AssertionError("read row by row")


def test_a_joined_read_equals_the_row_read(session: Session) -> None:
    ids = _roll(session)
    mine = Person.person_ref.like("R%")
    # Text of every kind (those that cannot be joined fall back to rows), nullable text.
    _same(session, select(Person.id, Person.name, Person.phone).where(mine), ["a", "b", "c"],
          joined=False)  # fmt: skip
    # Joinable text only: empty, missing, quotes, wide characters.
    clean = mine & Person.name.not_in(["a\x1fb", "two\nlines", "\ufeffbom"])
    frame = _same(
        session, select(Person.id, Person.name, Person.phone, Person.birth_date).where(clean),
        ["id", "name", "phone", "born"],
    )  # fmt: skip
    assert "" in set(frame["name"]) and "" in set(frame["phone"].dropna())
    assert frame["phone"].isna().any()
    # Dates (nullable), integers (nullable, all null), an outer join.
    outer = (
        select(Person.id, Benefit.id, Benefit.suspended_as_of, Benefit.held_entry_id,
               Benefit.status)
        .outerjoin(Benefit, Benefit.person_id == Person.id).where(mine)
    )  # fmt: skip
    _same(session, outer, ["person_id", "benefit_id", "suspended", "held", "status"])
    _same(session, outer.where(Benefit.id.is_not(None)), ["p", "b", "s", "h", "st"])
    # Ordered (descending, by a text then an id), grouped aggregates, and no rows at all.
    _same(session, select(Person.id, Person.grid_code).where(mine)
          .order_by(Person.grid_code, Person.id.desc()), ["id", "grid"])  # fmt: skip
    _same(
        session,
        select(Person.grid_code, func.max(Person.birth_date), func.count())
        .where(mine).group_by(Person.grid_code),
        ["grid", "born", "n"],
    )  # fmt: skip
    _same(session, select(Person.id, Person.birth_date).where(Person.id < 0), ["id", "born"])
    # Ids sent as one parameter (`id_rows`), and a float column (read row by row).
    _same(session, select(Benefit.person_id, Benefit.benefit_start)
          .where(Benefit.person_id.in_(id_rows(session, ids[::3]))), ["p", "d"])  # fmt: skip
    _same(session, select(Benefit.id, Benefit.monthly_amount).where(Benefit.person_id.in_(ids)),
          ["id", "amount"], joined=False)  # fmt: skip


@pytest.mark.parametrize("rows", [1, 2])
def test_a_single_column_of_nulls_and_empties_reads_back(session: Session, rows: int) -> None:
    # A lone null makes an empty line, which Arrow may not take for a row: rows, then.
    ids = _roll(session)
    _same(session, select(Person.phone).where(Person.id.in_(ids[:rows])), ["phone"], joined=False)
    held = select(Benefit.held_entry_id).where(Benefit.person_id.in_(ids[: 2 * rows]))
    _same(session, held, ["held"], joined=False)
    _same(session, select(Person.id).where(Person.id.in_(ids[:rows])), ["id"])


def test_any_number_of_ids_is_one_statement_past_the_protocols_parameter_cap(
    session: Session,
) -> None:
    """PostgreSQL's protocol carries at most 65,535 parameters: a roll's ids go as one."""
    ids = _roll(session)
    # A first run's notices at a million persons, some ids as NumPy gives them from a frame.
    many = [*np.array(ids, dtype=np.int64), *range(10**6, 10**6 + 70_000)]
    found = session.scalars(select(Person.id).where(Person.id.in_(any_ids(session, many))))
    assert sorted(found) == sorted(ids)
    assert any_ids(session, ids[:3]) == ids[:3]  # a few stay plain parameters
