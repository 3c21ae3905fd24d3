import datetime as dt

import pytest

from liveness.lists import months_paid_after


@pytest.mark.parametrize(
    ("died_on", "as_of", "payment_day", "months"),
    [
        (dt.date(2025, 3, 15), dt.date(2025, 3, 31), 1, 0),  # the month of death is owed
        (dt.date(2025, 3, 15), dt.date(2025, 4, 1), 1, 1),  # April paid on the 1st
        (dt.date(2025, 3, 15), dt.date(2025, 4, 9), 10, 0),  # April not paid yet
        (dt.date(2025, 3, 15), dt.date(2025, 4, 10), 10, 1),
        (dt.date(2024, 12, 31), dt.date(2025, 12, 31), 1, 12),  # across a year end
        (dt.date(2025, 5, 1), dt.date(2025, 4, 1), 1, 0),  # a death after the as-of date
    ],
)
def test_months_paid_after_death(
    died_on: dt.date, as_of: dt.date, payment_day: int, months: int
) -> None:
    assert months_paid_after(died_on=died_on, as_of=as_of, payment_day=payment_day) == months
