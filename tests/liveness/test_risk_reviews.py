"""Reviews where the risk is: an abrupt stop of a person's own traces opens a review early."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from sqlalchemy import select

from liveness.certification.policy import RiskPolicy
from liveness.certification.workflow.risk import Stops, abrupt_stops
from liveness.db import session_scope
from liveness.evidence.parts import day_number
from liveness.evidence.snapshot import EvidenceSnapshot
from liveness.scoring import load_policy
from liveness.scoring.features import compute_features
from models import Certification, Person, ReviewTask, SourceVolume, TaskKind
from tests.liveness import test_workflow as workflow
from tests.liveness.test_workflow import City

# P1's certification ends on 2025-06-01; its renewal review would open on 2025-04-12.
FIRST = dt.date(2024, 10, 1)
STOP = dt.date(2025, 2, 10)  # P1's taps and payments stop after this day


def _days(first: dt.date, last: dt.date, every: int = 2) -> Iterator[dt.date]:
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=every)


def _regular(city: City, *, transit: tuple[str, dt.date], payments: tuple[str, dt.date]) -> None:
    """Deliver a face-matched tap and a PIN payment every other day from FIRST to each last day.

    Each pair is (card, last day): two regular sources of the card's holder.
    """
    card, last = transit
    taps = "".join(
        f"T{card}{day:%Y%m%d},{card},{day} 08:00:00,330700,true\n" for day in _days(FIRST, last)
    )
    city.deliver("transit", "record_id,card_no,tapped_at,city_code,face_match\n" + taps)
    card, last = payments
    paid = "".join(
        f"P{card}{day:%Y%m%d},{card},{day} 10:00:00,pos_pin\n" for day in _days(FIRST, last)
    )
    city.deliver("card_txn", "record_id,card_no,txn_at,channel\n" + paid)


city = workflow.city  # the fixture: the three-person roll, on both backends


def _tasks(city: City, ref: str) -> list[ReviewTask]:
    with session_scope(city.services.sessions) as session:
        tasks = list(
            session.scalars(
                select(ReviewTask)
                .join(Person, Person.id == ReviewTask.person_id)
                .where(Person.person_ref == ref)
                .order_by(ReviewTask.id)
            )
        )
        session.expunge_all()
    return tasks


def test_regular_sources_falling_silent_together_open_a_risk_review(city: City) -> None:
    # P1 taps and pays every other day, and both stop on 02-10; P2's taps stop then too, but
    # P2 goes on paying: one silent source is no abrupt stop.
    _regular(city, transit=("C1", STOP), payments=("C1", STOP))
    _regular(city, transit=("C3", STOP), payments=("C3", dt.date(2025, 3, 18)))
    first = city.run("2025-03-01")
    # Taps are due three days late: on 03-01 the last 30 due days reach back to 01-28.
    assert _tasks(city, "P1") == []
    assert city.report(first)["risk_reviews"] == {"abrupt_stop": 0, "low_probability": 0,
                                                   "opened": 0}  # fmt: skip
    run_id = city.run("2025-03-20")
    (task,) = _tasks(city, "P1")
    # Weeks before the renewal review would open (04-12): strong by the recent window, P1
    # gets a home visit, ranked as a person scoring no more than the policy's ceiling.
    assert task.cause == "risk" and task.kind == TaskKind.HOME_VISIT
    assert task.opened_on == dt.date(2025, 3, 20)
    assert task.reasons["level"] == "strong"
    last = STOP - dt.timedelta(days=(STOP - FIRST).days % 2)
    # At P1's own pace (a trace of weight 1 every other day in each source over the 365-day
    # long window), the due days since (both sources due through 03-17) should have held:
    traces = (STOP - FIRST).days // 2 + 1
    expected = 2 * traces / 365 * (dt.date(2025, 3, 17) - last).days
    assert task.reasons["risk"] == {
        "silent": {"transit": last.isoformat(), "card_txn": last.isoformat()},
        "silent_days": 30, "expected_weight": round(expected, 1),
    }  # fmt: skip
    assert task.priority == pytest.approx((1 - 0.3) * 3000.0)
    assert _tasks(city, "P2") == []
    assert city.report(run_id)["risk_reviews"] == {"abrupt_stop": 1, "low_probability": 0,
                                                    "opened": 1}  # fmt: skip
    # Under review: not flagged again.
    city.run("2025-03-21")
    assert len(_tasks(city, "P1")) == 1


def test_a_person_gets_one_risk_review_a_cycle(city: City) -> None:
    _regular(city, transit=("C1", STOP), payments=("C1", STOP))
    city.run("2025-03-20")
    city.outcome("P1", TaskKind.HOME_VISIT, "refused", "2025-03-22")
    city.run("2025-03-23")
    run_id = city.run("2025-03-27")
    # Still silent, no longer under review, but this cycle had its risk review.
    (task,) = _tasks(city, "P1")
    assert task.status != "open"
    assert city.report(run_id)["risk_reviews"]["opened"] == 0


def test_a_stopped_person_is_not_certified_by_data(city: City) -> None:
    _regular(city, transit=("C1", STOP), payments=("C1", STOP))
    # The renewal window opened on 04-02 and P1 is still strong by the recent window, but the
    # data that would certify is the data that stopped.
    run_id = city.run("2025-04-05")
    with session_scope(city.services.sessions) as session:
        assert session.scalars(select(Certification)).all() == []
    (task,) = _tasks(city, "P1")
    assert task.cause == "risk"
    assert city.report(run_id)["certified_silently"] == 0


def test_a_silence_that_began_before_a_proof_of_life_flags_nobody(city: City) -> None:
    _regular(city, transit=("C1", STOP), payments=("C1", STOP))
    city.run("2025-03-20")
    city.outcome("P1", TaskKind.HOME_VISIT, "alive_confirmed", "2025-03-22")
    city.run("2025-03-23")
    run_id = city.run("2025-05-01")
    # Found alive after the traces stopped: the stop is explained, however long it lasts.
    assert [task.cause for task in _tasks(city, "P1")] == ["risk"]
    assert city.report(run_id)["risk_reviews"]["abrupt_stop"] == 0


def test_an_outage_s_silence_is_nobody_s(city: City) -> None:
    # The rest of the city taps a hundred times a day until the transit feed collapses when
    # P1 stops: P1's silence in transit is the outage's, and card payments alone are one
    # source. P2 stopped both at the end of December, long before the outage: still a stop.
    with session_scope(city.services.sessions) as session:
        for day in _days(FIRST - dt.timedelta(days=40), STOP, every=1):
            session.add(SourceVolume(source="transit", day=day, traces=100))
    _regular(city, transit=("C1", STOP), payments=("C1", STOP))
    december = dt.date(2024, 12, 31)
    _regular(city, transit=("C3", december), payments=("C3", december))
    run_id = city.run("2025-03-20")
    assert city.report(run_id)["degraded_sources"]["transit"][0] == "2025-02-11"
    assert _tasks(city, "P1") == []
    (task,) = _tasks(city, "P2")
    assert task.cause == "risk" and set(task.reasons["risk"]["silent"]) == {"transit", "card_txn"}
    assert city.report(run_id)["risk_reviews"]["abrupt_stop"] == 1


def _weekly(city: City, card: str, last: dt.date, *, taps: bool = True) -> None:
    """Deliver a PIN payment (and a face-matched tap) every week from FIRST to `last`."""
    days = list(_days(FIRST, last, every=7))
    paid = "".join(f"P{card}{day:%Y%m%d},{card},{day} 10:00:00,pos_pin\n" for day in days)
    city.deliver("card_txn", "record_id,card_no,txn_at,channel\n" + paid)
    if taps:
        tapped = "".join(f"T{card}{day:%Y%m%d},{card},{day} 08:00:00,330700,true\n" for day in days)
        city.deliver("transit", "record_id,card_no,tapped_at,city_code,face_match\n" + tapped)


def test_a_silence_too_long_for_the_person_s_own_pace_opens_a_risk_review(city: City) -> None:
    # P1 pays and taps once a week until 02-10: neither source is regular (19 traces, under
    # the 24 of regular_weight), but at that pace seven weeks of silence in every source are
    # unlikely for the living. P2 went as slowly and stopped too, but goes on paying: one
    # source still speaks, no stop.
    _weekly(city, "C1", STOP)
    _weekly(city, "C3", STOP, taps=True)
    _weekly(city, "C3", dt.date(2025, 3, 25), taps=False)
    run_id = city.run("2025-04-01")
    (task,) = _tasks(city, "P1")
    assert task.cause == "risk"
    # Independently: 19 traces a source over the 365-day long window, silent since the last
    # one up to the due day (both sources due three days late, through 03-29).
    traces = len(list(_days(FIRST, STOP, every=7)))
    last = FIRST + dt.timedelta(days=7 * (traces - 1))
    expected = 2 * traces / 365 * (dt.date(2025, 3, 29) - last).days
    assert traces == 19 and expected >= 4.0
    assert task.reasons["risk"]["expected_weight"] == round(expected, 1)
    assert set(task.reasons["risk"]["silent"]) == {"transit", "card_txn"}
    assert _tasks(city, "P2") == []
    assert city.report(run_id)["risk_reviews"]["abrupt_stop"] == 1


def test_a_silence_within_the_person_s_own_pace_flags_nobody(city: City) -> None:
    # P1 pays and taps once a week until 02-18 (21 traces a source, not regular): on 03-27,
    # both sources due through 03-24, the silence is 34 days, past silent_days, but at that
    # pace it should have held less than the policy's expected weight.
    _weekly(city, "C1", dt.date(2025, 2, 24))
    traces = len(list(_days(FIRST, dt.date(2025, 2, 24), every=7)))
    last = FIRST + dt.timedelta(days=7 * (traces - 1))
    silence = (dt.date(2025, 3, 24) - last).days
    assert traces == 21 and silence >= 30 and 2 * traces / 365 * silence < 4.0
    run_id = city.run("2025-03-27")
    assert all(task.cause != "risk" for task in _tasks(city, "P1"))
    assert city.report(run_id)["risk_reviews"]["abrupt_stop"] == 0


# abrupt_stops on features alone: every source due through the run's night, no outage.
SCORING = load_policy(Path(__file__).parents[2] / "config" / "scoring.toml")
AS_OF = dt.date(2025, 6, 30)


def _stops(traces: list[tuple[int, str, int]], *, n: int, **risk: Any) -> Stops:
    """Return abrupt_stops for (person, "source.kind", days before AS_OF) traces."""
    codes = [SCORING.kind_index[tuple(kind.split("."))] for _, kind, _ in traces]
    features = compute_features(
        person_idx=np.array([p for p, _, _ in traces], dtype=np.int32),
        source_code=np.array([SCORING.sources.index(k.split(".")[0]) for _, k, _ in traces],
                             dtype=np.int8),
        kind_code=np.array(codes, dtype=np.int16),
        day=np.array([day_number(AS_OF) - ago for _, _, ago in traces], dtype=np.int32),
        n_persons=n, as_of_day=day_number(AS_OF), policy=SCORING,
    )  # fmt: skip
    snapshot = SimpleNamespace(
        features=features, as_of=AS_OF, outages={},
        health=SimpleNamespace(not_yet_due={}, degraded={}),
    )  # fmt: skip
    return abrupt_stops(
        cast(EvidenceSnapshot, snapshot), policy=RiskPolicy(**risk), scoring=SCORING
    )


def _every(days: int, *, since: int, until: int) -> list[int]:
    """Return the days before AS_OF of a trace every `days` from `since` back to `until`."""
    return list(range(until, since + 1, days))


def test_a_silence_unusual_for_the_person_holds_back_certification_without_a_review() -> None:
    # Two sources at one pace each, silent for the last 60 days: person 0 every 10 days (a
    # weight of 12 over the year each, 2 x 12/365 x 60 = 3.9 expected), person 1 every 5 days
    # (7.9: stopped), person 2 every 40 days (1.0: neither).
    traces = []
    for person, every in ((0, 10), (1, 5), (2, 40)):
        for ago in _every(every, since=170, until=60):
            traces += [(person, "transit.tap_face", ago), (person, "card_txn.pos_pin", ago)]
    stops = _stops(traces, n=3)
    expected = [2 * len(_every(e, since=170, until=60)) / 365 * 60 for e in (10, 5, 40)]
    assert 2.0 <= expected[0] < 4.0 <= expected[1] and expected[2] < 2.0
    assert stops.stopped.tolist() == [False, True, False]
    assert stops.held.tolist() == [True, True, False]
    assert stops.expected[1] == pytest.approx(expected[1])
    # Off: nothing held beyond the stopped.
    assert _stops(traces, n=3, hold_weight=0.0).held.tolist() == [False, True, False]


def test_a_person_last_seen_too_long_ago_is_held_back() -> None:
    # One trace in each of four sources 95 to 100 days ago (a sparse life, or a death since):
    # nothing unusual at that pace, but last seen longer ago than last_seen_days.
    traces = [(0, "transit.tap_face", 100), (0, "card_txn.pos_pin", 98),
              (0, "medical.outpatient", 96), (0, "counter.bank", 95),
              (1, "transit.tap_face", 100), (1, "card_txn.pos_pin", 80)]  # fmt: skip
    stops = _stops(traces, n=2, last_seen_days=90)
    assert not stops.stopped.any()
    assert stops.held.tolist() == [True, False]
    assert not _stops(traces, n=2, last_seen_days=0).held.any()
