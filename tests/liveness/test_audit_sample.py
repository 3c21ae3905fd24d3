"""The monthly audit sample: drawn only once its month is over, the same sample every time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from liveness.db import session_scope
from liveness.lists.audit import AuditMonthInvalid, draw_sample
from liveness.services import Services
from models import AuditEntry


def test_a_month_is_sampled_once_it_is_over(services_factory: Callable[[str], Services]) -> None:
    services = services_factory("sqlite")
    with session_scope(services.sessions) as session:
        # During the month (and for a month to come) its decisions are still being made: a
        # draw then sampled what there was so far, and a later one other decisions.
        for month, today in (("2025-12", dt.date(2025, 12, 31)), ("2999-01", dt.date(2026, 1, 5))):
            with pytest.raises(AuditMonthInvalid, match="is not over"):
                draw_sample(session, month=month, share=0.05, actor="aud", today=today)
        assert session.query(AuditEntry).count() == 0
        sample = draw_sample(
            session, month="2025-12", share=0.05, actor="aud", today=dt.date(2026, 1, 1)
        )
        assert sample.empty and session.query(AuditEntry).count() == 1
