"""The payment calendar: benefits are paid monthly in advance on the payment day."""

from __future__ import annotations

import calendar
import datetime as dt


def payment_days(*, after: dt.date, until: dt.date, payment_day: int) -> list[dt.date]:
    """Return the monthly payment days d with after < d <= until."""
    days: list[dt.date] = []
    year, month = after.year, after.month
    while True:
        day = dt.date(year, month, payment_day)
        if day > until:
            return days
        if day > after:
            days.append(day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def next_payment_day(*, after: dt.date, payment_day: int) -> dt.date:
    """Return the first payment day strictly after `after`."""
    candidate = dt.date(after.year, after.month, payment_day)
    if candidate > after:
        return candidate
    year, month = (after.year + 1, 1) if after.month == 12 else (after.year, after.month + 1)
    return dt.date(year, month, payment_day)


def months_paid_after(*, died_on: dt.date, as_of: dt.date, payment_day: int) -> int:
    """Count monthly payments made for months after the month of death, up to `as_of`.

    Benefits are paid in advance on `payment_day`: the month of death is owed, each later
    month whose payment day has come by `as_of` was paid to nobody entitled.
    """
    return len(payment_days(after=month_end(died_on), until=as_of, payment_day=payment_day))


def month_end(day: dt.date) -> dt.date:
    """Return the last day of the month of `day`."""
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])
