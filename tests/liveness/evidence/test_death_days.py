"""Each person's first death day, picked out for a roll with or without gaps in its ids."""

import datetime as dt

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.evidence.local_engine import PersonIndex
from liveness.evidence.snapshot import _death_days

IDS = st.lists(st.integers(0, 400), unique=True, max_size=60).map(sorted)
DEATHS = st.dictionaries(
    st.integers(0, 500), st.dates(dt.date(1965, 1, 1), dt.date(2030, 12, 31)), max_size=30
)


@settings(max_examples=300, deadline=None)
@given(ids=IDS, deaths=DEATHS, consecutive=st.booleans())
def test_death_days_are_the_roll_persons_own(
    ids: list[int], deaths: dict[int, dt.date], consecutive: bool
) -> None:
    if consecutive and ids:
        ids = list(range(ids[0], ids[0] + len(ids)))
    first_death = pd.Series(list(deaths.values()), index=list(deaths), dtype=object)
    got = _death_days(first_death, PersonIndex(np.array(ids, dtype=np.int64)))
    # Day numbers from 1970; a death before it counts on day 0.
    expected = [max((deaths[p] - dt.date(1970, 1, 1)).days, 0) if p in deaths else -1 for p in ids]
    assert got.dtype == np.int32 and got.tolist() == expected
