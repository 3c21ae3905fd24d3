"""The certification's column arithmetic equals the one-date-at-a-time rule it replaces."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from liveness.certification import add_months, add_months_array, dates_of


@given(
    st.lists(
        st.tuples(
            st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2999, 12, 31)),
            st.integers(min_value=0, max_value=240),
        ),
        max_size=50,
    )
)
def test_add_months_of_a_column_is_add_months_of_each_day(pairs: list[tuple[dt.date, int]]) -> None:
    days = np.array([d for d, _ in pairs], dtype="datetime64[D]")
    months = np.array([m for _, m in pairs], dtype=np.int64)
    got = add_months_array(days, months).astype(object).tolist()
    assert got == [add_months(d, m) for d, m in pairs]


def test_month_ends_clamp_and_leap_days() -> None:
    days = np.array(["2024-01-31", "2024-02-29", "2023-08-31", "2099-12-31"], dtype="datetime64[D]")
    got = add_months_array(days, np.array([1, 12, 6, 2], dtype=np.int64)).astype(str).tolist()
    assert got == ["2024-02-29", "2025-02-28", "2024-02-29", "2100-02-28"]


def test_dates_of_persons_without_a_date_are_nat() -> None:
    ends = pd.Series([dt.date(2025, 3, 1), dt.date(2999, 1, 1)], index=[7, 9], dtype=object)
    got = dates_of(pd.Series([9, 8, 7, 9]), ends)
    assert [str(d) for d in got] == ["2999-01-01", "NaT", "2025-03-01", "2999-01-01"]
