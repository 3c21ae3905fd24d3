"""A risk review says on the worker's list which sources fell silent, since when, or P(alive)."""

from __future__ import annotations

import datetime as dt

from api.web.reasons import why_listed

DAY = dt.date(2025, 3, 20)


def test_a_risk_review_names_its_silent_sources_and_their_last_day() -> None:
    reasons = {"risk": {"silent": {"transit": "2025-02-09", "card_txn": "2025-02-10"},
                        "silent_days": 30}}  # fmt: skip
    said = why_listed("en", cause="risk", task_reasons=reasons, current=None, due_on=DAY,
                      today=DAY)  # fmt: skip
    assert said[:3] == [
        "reviewed early: the person's own traces stopped abruptly, or their P(alive) is low",
        "no transit since 2025-02-09",
        "no card payments since 2025-02-10",
    ]
    zh = why_listed("zh", cause="risk", task_reasons=reasons, current=None, due_on=DAY, today=DAY)
    assert "公交刷卡自2025-02-09后再无记录" in zh


def test_a_low_probability_review_gives_the_probability() -> None:
    reasons = {"risk": {"probability": 0.31, "artifact": "abc"}}
    said = why_listed("en", cause="risk", task_reasons=reasons, current=None, due_on=DAY,
                      today=DAY)  # fmt: skip
    assert "estimated probability of being alive: 0.31" in said
