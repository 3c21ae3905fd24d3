"""The payment state machine alone: its table, its money, and properties over random events.

Expected amounts are computed here from month arithmetic, not with the module's calendar.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.lists.payment import (
    TRANSITIONS,
    BenefitTerms,
    Occurrence,
    PaymentState,
    RunTerms,
    state_key,
    transition,
)
from models import BenefitStatus, ListAction, ListReason, PaymentEvent

PAY_DAY = 10
AMOUNT = Decimal("2345.67")
BENEFIT = BenefitTerms(monthly_amount=AMOUNT, benefit_start=dt.date(2019, 7, 20))
ACTIVE = PaymentState(BenefitStatus.ACTIVE)


def run(day: dt.date) -> RunTerms:
    return RunTerms(
        as_of=day, payment_day=PAY_DAY, four_eyes_back_pay=Decimal("10000"),
        terminate_after_death_days=180,
    )  # fmt: skip


def month_index(day: dt.date) -> int:
    return day.year * 12 + day.month


def paid_through(day: dt.date) -> int:
    """Return the month index of the last payment made by `day` (paid on the 10th)."""
    return month_index(day) - (1 if day.day < PAY_DAY else 0)


def payments_between(first_month: int, last_month: int) -> int:
    return max(0, last_month - first_month + 1)


def test_a_death_on_an_active_benefit_recovers_the_months_after_it() -> None:
    state, entry = transition(
        ACTIVE, Occurrence(PaymentEvent.DEATH, day=dt.date(2025, 1, 31)), benefit=BENEFIT,
        run=run(dt.date(2025, 4, 9)),
    )  # fmt: skip
    assert entry is not None and entry.action == ListAction.SUSPEND
    # February and March were paid on the 10th; April's payment day has not come.
    assert entry.amount == AMOUNT * 2 and entry.effective_on == dt.date(2025, 2, 1)
    assert (state.status, state.reason, state.suspended_as_of) == (
        BenefitStatus.SUSPENDED, ListReason.DECEASED, dt.date(2025, 4, 9),
    )  # fmt: skip


def test_back_pay_leaves_out_the_months_in_prison() -> None:
    lapsed, _ = transition(
        ACTIVE, Occurrence(PaymentEvent.LAPSE), benefit=BENEFIT, run=run(dt.date(2025, 1, 31))
    )
    prison, amend = transition(
        lapsed, Occurrence(PaymentEvent.IMPRISONMENT), benefit=BENEFIT,
        run=run(dt.date(2025, 3, 31)),
    )  # fmt: skip
    assert amend is not None and amend.action == ListAction.AMEND
    _, back = transition(
        prison, Occurrence(PaymentEvent.PROOF_OF_LIFE, day=dt.date(2025, 6, 2)), benefit=BENEFIT,
        run=run(dt.date(2025, 6, 30)),
    )  # fmt: skip
    # Withheld: Feb to Jun (5); paid back: Feb and Mar, before prison was found.
    assert back is not None and back.amount == AMOUNT * 2
    assert back.detail["unpaid_payments"] == ["2025-04-10", "2025-05-10", "2025-06-10"]


def test_the_prison_months_never_paid_do_not_count_as_overpaid() -> None:
    unpaid = frozenset({dt.date(2025, 4, 10), dt.date(2025, 5, 10)})
    benefit = BenefitTerms(AMOUNT, dt.date(2019, 7, 20), unpaid=unpaid)
    _, entry = transition(
        ACTIVE, Occurrence(PaymentEvent.DEATH, day=dt.date(2025, 3, 1)), benefit=benefit,
        run=run(dt.date(2025, 6, 30)),
    )  # fmt: skip
    assert entry is not None and entry.amount == AMOUNT * 1  # June only


def test_a_benefit_that_began_after_the_death_recovers_only_what_it_paid() -> None:
    late = BenefitTerms(AMOUNT, benefit_start=dt.date(2025, 3, 15))
    _, entry = transition(
        ACTIVE, Occurrence(PaymentEvent.DEATH, day=dt.date(2025, 1, 3)), benefit=late,
        run=run(dt.date(2025, 6, 30)),
    )  # fmt: skip
    assert entry is not None and entry.amount == AMOUNT * 3  # April, May and June


def test_every_pair_outside_the_table_changes_nothing() -> None:
    keys = {state_key(s) for s in STATES}
    for state in STATES:
        for event in PaymentEvent:
            if (state_key(state), event) in TRANSITIONS:
                continue
            after, entry = transition(
                state, Occurrence(event, day=dt.date(2025, 1, 1)), benefit=BENEFIT,
                run=run(dt.date(2025, 6, 30)),
            )  # fmt: skip
            assert (after, entry) == (state, None)
    assert {key for key, _ in TRANSITIONS} <= keys


STATES = [
    ACTIVE,
    *(
        PaymentState(
            BenefitStatus.SUSPENDED, reason, suspended_from=dt.date(2025, 1, 1),
            suspended_as_of=dt.date(2025, 1, 31),
        )
        for reason in (ListReason.DECEASED, ListReason.LAPSED, ListReason.IMPRISONED,
                       ListReason.DUPLICATE_IDENTITY)
    ),
    PaymentState(BenefitStatus.SUSPENDED, ListReason.LAPSED, dt.date(2025, 2, 10),
                 dt.date(2025, 1, 31), held=True),
    PaymentState(BenefitStatus.TERMINATED, ListReason.DECEASED, dt.date(2025, 1, 1),
                 dt.date(2025, 1, 31)),
    PaymentState(BenefitStatus.TERMINATED, ListReason.DECEASED, dt.date(2025, 1, 1),
                 dt.date(2025, 1, 31), held=True),
]  # fmt: skip

days = st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2030, 12, 31))
events = st.sampled_from([e for e in PaymentEvent if e != PaymentEvent.APPROVAL])


@settings(max_examples=300, deadline=None)
@given(
    history=st.lists(st.tuples(events, days, st.integers(min_value=0, max_value=40)), max_size=25),
    start=days,
)
def test_random_histories_follow_the_table_and_never_pay_the_dead(
    history: list[tuple[PaymentEvent, dt.date, int]], start: dt.date
) -> None:
    state, as_of, died = ACTIVE, start, None
    for event, day, gap in history:
        as_of += dt.timedelta(days=gap)  # runs move forward
        occurrence = Occurrence(event, day=min(day, as_of))
        before = state
        state, entry = transition(state, occurrence, benefit=BENEFIT, run=run(as_of))
        if entry is None:
            # Only what the payment system never saw goes without a word: a reinstatement
            # held for a terminated benefit, a withdrawn duplicate under a death.
            assert (
                state == before
                or (before.held and state == replace(before, held=False))
                or (event == PaymentEvent.DUPLICATE_WITHDRAWN
                    and state == replace(before, prior_reason=None))
            )  # fmt: skip
            continue
        assert entry.amount >= 0 and entry.amount == entry.amount.quantize(Decimal("0.01"))
        if entry.action == ListAction.SUSPEND:
            assert before.status == BenefitStatus.ACTIVE and state.status == BenefitStatus.SUSPENDED
        elif entry.action == ListAction.AMEND:
            assert before.status == state.status == BenefitStatus.SUSPENDED
        elif entry.action == ListAction.TERMINATE:
            assert before.status == BenefitStatus.SUSPENDED
            assert state.status == BenefitStatus.TERMINATED
        else:
            assert before.status != BenefitStatus.ACTIVE
            assert state.status == BenefitStatus.ACTIVE or state.held
        if event == PaymentEvent.DEATH:
            died = occurrence.day
            if before.status == BenefitStatus.ACTIVE:
                assert occurrence.day is not None
                months = payments_between(month_index(occurrence.day) + 1, paid_through(as_of))
                assert entry.amount == AMOUNT * months
        if state.status == BenefitStatus.ACTIVE and before.status != BenefitStatus.ACTIVE:
            # Nobody dead is paid again without proof of life after the death, or its
            # withdrawal by its source.
            if before.reason == ListReason.DECEASED:
                assert event in (PaymentEvent.DEATH_WITHDRAWN, PaymentEvent.PROOF_OF_LIFE)
                if event == PaymentEvent.PROOF_OF_LIFE:
                    assert died is not None and occurrence.day is not None
                    assert occurrence.day > died
            withheld = payments_between(
                paid_through(before.suspended_as_of) + 1,
                paid_through(as_of),  # type: ignore[arg-type]
            )
            prison = (
                0 if before.unpaid_after is None
                else payments_between(paid_through(before.unpaid_after) + 1, paid_through(as_of))
            )  # fmt: skip
            assert entry.amount == AMOUNT * (withheld - prison)


@pytest.mark.parametrize("reason", [ListReason.LAPSED, ListReason.IMPRISONED])
def test_a_duplicate_amends_a_suspension_with_what_was_paid_before_it(reason: ListReason) -> None:
    state = PaymentState(
        BenefitStatus.SUSPENDED, reason, suspended_from=dt.date(2025, 2, 10),
        suspended_as_of=dt.date(2025, 1, 31),
    )  # fmt: skip
    after, entry = transition(
        state, Occurrence(PaymentEvent.DUPLICATE_IDENTITY), benefit=BENEFIT,
        run=run(dt.date(2025, 6, 30)),
    )  # fmt: skip
    assert entry is not None and entry.action == ListAction.AMEND
    # From the first payment day on or after 2019-07-20 (08-10) to the last before the
    # suspension withheld payments (2025-01-10).
    assert entry.amount == AMOUNT * payments_between(2019 * 12 + 8, 2025 * 12 + 1)
    assert after.reason == ListReason.DUPLICATE_IDENTITY
