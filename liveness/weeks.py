"""Weeks as the agency plans its visits: Monday to Sunday. A leaf: it imports no library."""

from __future__ import annotations

import datetime as dt


def week_start(day: dt.date) -> dt.date:
    """Return the Monday of `day`'s week."""
    return day - dt.timedelta(days=day.weekday())
