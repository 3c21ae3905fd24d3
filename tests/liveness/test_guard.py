"""The mass-downgrade breaker: a run that would lower too many people stops before publishing."""

from __future__ import annotations

import datetime as dt
import itertools

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from liveness.certification.guard import (
    DowngradeCounts,
    check_downgrades,
    count_downgrades,
    decide_downgrades,
)
from liveness.certification.policy import GuardPolicy
from liveness.certification.run import certify
from liveness.db import session_scope
from models import Assessment, EvidencePart, ListEntry, Person, Run, RunStatus
from tests.liveness.test_run import AS_OF

POLICY = GuardPolicy(
    max_downgrade_share=0.02,
    max_new_deceased_share=0.02,
    min_persons=3,
    share_period_days=28,
    max_downgrade_share_ceiling=0.1,
    max_new_deceased_share_ceiling=0.05,
)


def _previous_run(session: Session, levels: list[str]) -> list[int]:
    ids = []
    for n, _ in enumerate(levels):
        person = Person(
            person_ref=f"G{n}", id_number=f"X{n}", id_status="valid", name="某", sex="M",
            birth_date=dt.date(1950, 1, 1), region_code="330702", grid_code="G",
        )  # fmt: skip
        session.add(person)
        session.flush()
        ids.append(person.id)
    run = Run(as_of=dt.date(2025, 1, 31), status=RunStatus.PUBLISHED, policy_version="p")
    session.add(run)
    session.flush()
    session.add_all(
        Assessment(
            run_id=run.id,
            person_id=pid,
            level=level,
            score=0.5,
            rule="r",
            reasons={},
            policy_version="p",
        )
        for pid, level in zip(ids, levels, strict=True)
    )
    session.flush()
    return ids


def _current(session: Session, as_of: dt.date = dt.date(2025, 2, 28)) -> Run:
    run = Run(as_of=as_of, status=RunStatus.RUNNING, policy_version="p")
    session.add(run)
    session.flush()
    return run


def test_few_changes_pass_and_many_lowered_levels_trip(session: Session) -> None:
    ids = _previous_run(session, ["strong"] * 100)
    run = _current(session)
    two_lowered = pd.DataFrame({"person_id": ids, "level": ["medium"] * 2 + ["strong"] * 98})
    verdict = check_downgrades(session, run=run, assessed=two_lowered, policy=POLICY)
    assert not verdict.tripped and verdict.downgraded == 2
    five_lowered = pd.DataFrame({"person_id": ids, "level": ["weak"] * 5 + ["strong"] * 95})
    verdict = check_downgrades(session, run=run, assessed=five_lowered, policy=POLICY)
    assert verdict.tripped and verdict.transitions == {"strong->weak": 5}
    assert "5 of 100" in verdict.reasons[0]


def test_a_wave_of_new_deaths_trips_and_upgrades_never_do(session: Session) -> None:
    ids = _previous_run(session, ["medium"] * 50)
    run = _current(session)
    upgraded = pd.DataFrame({"person_id": ids, "level": ["strong"] * 50})
    assert not check_downgrades(session, run=run, assessed=upgraded, policy=POLICY).tripped
    dead = pd.DataFrame({"person_id": ids, "level": ["deceased"] * 4 + ["medium"] * 46})
    verdict = check_downgrades(session, run=run, assessed=dead, policy=POLICY)
    assert verdict.tripped and verdict.newly_deceased == 4 and verdict.downgraded == 0


def test_the_first_run_has_nothing_to_compare_with(session: Session) -> None:
    run = _current(session)
    assessed = pd.DataFrame({"person_id": [1, 2], "level": ["weak", "weak"]})
    verdict = check_downgrades(session, run=run, assessed=assessed, policy=POLICY)
    assert verdict.previous_run_id is None and not verdict.tripped


def test_losing_a_source_stops_the_run_until_an_operator_overrides(certified_city) -> None:  # type: ignore[no-untyped-def]
    services, first, _ = certified_city
    with session_scope(services.sessions) as session:
        # A partition lost from the store: the data is gone, the people are not.
        session.execute(delete(EvidencePart).where(EvidencePart.source == "transit"))
    with session_scope(services.sessions) as session:
        stopped = certify(session, as_of=AS_OF, store=services.store, policies=services.policies)
    assert stopped.status == RunStatus.STOPPED_BY_GUARD
    assert stopped.report["guard"]["previous_run_id"] == first.id
    assert stopped.report["guard"]["downgrade_share"] > 0.02
    with session_scope(services.sessions) as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Assessment).where(Assessment.run_id == stopped.id)
            )
            == 0
        )
        entries_before = session.scalar(select(func.count()).select_from(ListEntry))
        overridden = certify(
            session, as_of=AS_OF, store=services.store, policies=services.policies,
            override_guard=True,
        )  # fmt: skip
    assert overridden.status == RunStatus.PUBLISHED
    assert overridden.report["guard"]["overridden"] is True
    with session_scope(services.sessions) as session:
        assert session.scalar(select(func.count()).select_from(ListEntry)) == entries_before


@pytest.fixture
def certified_city(request: pytest.FixtureRequest, city, services_factory):  # type: ignore[no-untyped-def]
    from tests.liveness.test_run import _ingest_city

    services = services_factory("sqlite")
    reports = _ingest_city(services, city)
    with session_scope(services.sessions) as session:
        run = certify(session, as_of=AS_OF, store=services.store, policies=services.policies)
    return services, run, reports


def test_the_allowed_share_grows_with_the_time_since_the_previous_run(session: Session) -> None:
    ids = _previous_run(session, ["strong"] * 100)  # as of 2025-01-31
    later = _current(session, as_of=dt.date(2025, 4, 30))
    five_lowered = pd.DataFrame({"person_id": ids, "level": ["weak"] * 5 + ["strong"] * 95})
    # 89 days: four periods of 28 days, so up to 8% may be lowered.
    assert not check_downgrades(session, run=later, assessed=five_lowered, policy=POLICY).tripped


def test_no_gap_between_runs_switches_the_guard_off(session: Session) -> None:
    ids = _previous_run(session, ["strong"] * 100)  # as of 2025-01-31
    # 2999: a typo of a date, some 35,000 periods later. The allowance stops at its ceiling.
    typo = _current(session, as_of=dt.date(2999, 1, 1))
    most_lowered = pd.DataFrame({"person_id": ids, "level": ["weak"] * 89 + ["strong"] * 11})
    verdict = check_downgrades(session, run=typo, assessed=most_lowered, policy=POLICY)
    assert verdict.tripped and "(10.0%)" in verdict.reasons[0]
    dead = pd.DataFrame({"person_id": ids, "level": ["deceased"] * 6 + ["strong"] * 94})
    verdict = check_downgrades(session, run=typo, assessed=dead, policy=POLICY)
    assert verdict.tripped and "(5.0%)" in verdict.reasons[0]


LEVELS_SEEN = ["strong", "medium", "weak", "deceased"]
RANK = {"weak": 0, "medium": 1, "strong": 2}


@given(
    persons=st.lists(
        st.tuples(st.sampled_from([None, *LEVELS_SEEN]), st.sampled_from(LEVELS_SEEN)),
        max_size=60,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=5),
)
def test_the_counts_of_partitions_add_up_to_everyones(
    persons: list[tuple[str | None, str]], cuts: list[int]
) -> None:
    # Person i stood at persons[i][0] (None: not graded before) and is now at persons[i][1].
    assessed = pd.DataFrame(
        {"person_id": range(len(persons)), "level": [now for _, now in persons]}
    )
    before = [(i, was) for i, (was, _) in enumerate(persons) if was is not None]
    previous = pd.DataFrame(
        {"person_id": [i for i, _ in before], "previous": [was for _, was in before]}
    )
    # The model: every person compared, one by one.
    lowered = [
        (was, now) for was, now in persons if was in RANK and now in RANK and RANK[now] < RANK[was]
    ]
    died = [(was, now) for was, now in persons if was is not None and was != "deceased" == now]
    transitions: dict[str, int] = {}
    for was, now in lowered + died:
        transitions[f"{was}->{now}"] = transitions.get(f"{was}->{now}", 0) + 1
    whole = count_downgrades(assessed, previous)
    assert (whole.compared, whole.downgraded, whole.newly_deceased) == (
        len(before), len(lowered), len(died),
    )  # fmt: skip
    assert whole.transitions == transitions
    # Counted partition by partition (consecutive ranges of person ids), the same.
    edges = [0, *sorted(cuts), len(persons) + 1]
    summed = DowngradeCounts()
    for lo, hi in itertools.pairwise(edges):
        summed = summed + count_downgrades(
            assessed[assessed["person_id"].between(lo, hi - 1)],
            previous[previous["person_id"].between(lo, hi - 1)],
        )
    assert summed == whole
    run = Run(as_of=dt.date(2025, 2, 28), status=RunStatus.RUNNING, policy_version="p")
    before_run = Run(id=1, as_of=dt.date(2025, 1, 31), status=RunStatus.PUBLISHED)
    verdict = decide_downgrades(summed, run=run, previous_run=before_run, policy=POLICY)
    assert verdict == decide_downgrades(whole, run=run, previous_run=before_run, policy=POLICY)
    assert list(verdict.transitions) == sorted(transitions)
    assert verdict.tripped == (
        (len(lowered) >= 3 and len(lowered) / len(before) > 0.04)
        or (len(died) >= 3 and len(died) / len(before) > 0.04)
    )
