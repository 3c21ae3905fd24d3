"""Each person's certification end, read once a run, equals reading it again after certifying."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from liveness.certification import CertificationPolicy, add_months, valid_until
from liveness.certification import service as certification_service
from liveness.certification.kept_ends import keep_ends
from liveness.certification.policy import load_certification_policy
from liveness.certification.service import read_ends, recorded_ends
from liveness.settings import default_config_dir
from models import Benefit, Certification, CertificationSource, Run, RunStatus
from tests.liveness.evidence.test_snapshot import person


@pytest.fixture
def policy() -> CertificationPolicy:
    return load_certification_policy(default_config_dir() / "certification.toml")


def _old_valid_until(session: Session, *, policy: CertificationPolicy) -> pd.Series:
    """The ends as `valid_until` computed them from rows of date objects (the oracle)."""
    latest = dict(
        session.execute(
            select(Certification.person_id, func.max(Certification.valid_until)).group_by(
                Certification.person_id
            )
        ).all()
    )
    carried: dict[int, dt.date] = {}
    for person_id, kind, on in session.execute(
        select(Benefit.person_id, Benefit.benefit_type, Benefit.last_certified_on).where(
            Benefit.last_certified_on.is_not(None)
        )
    ):
        end = add_months(on, policy.cycle_for(str(kind)).valid_months)
        carried[person_id] = min(end, carried.get(person_id, end))
    merged = {**carried, **latest}
    return pd.Series(merged, dtype=object).sort_index()


def _run(session: Session, as_of: dt.date) -> int:
    run = Run(as_of=as_of, status=RunStatus.RUNNING, policy_version="test")
    session.add(run)
    session.flush()
    return run.id


def _certify(session: Session, run_id: int, ends: dict[int, dt.date]) -> None:
    session.execute(
        insert(Certification),
        [
            {"person_id": p, "source": CertificationSource.DATA_COMPARISON, "mark": "certified",
             "certified_on": dt.date(2025, 1, 1), "valid_until": end, "run_id": run_id,
             "policy_version": "test", "evidence": {}}
            for p, end in ends.items()
        ],
    )  # fmt: skip


def test_ends_read_once_and_renewed_by_the_run_equal_a_fresh_read(
    session: Session, policy: CertificationPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Persons with a roll certification (two benefits, the shorter cycle carries), with one
    # the engine recorded (earlier or later than the roll's), with both, and with neither.
    ids = [
        person(session, f"P{n}", "G1", ("enterprise_pension", "1.00", "active"),
               ("resident_pension", "1.00", "active"))
        for n in range(8)
    ]  # fmt: skip
    session.execute(
        update(Benefit)
        .where(Benefit.person_id.in_(ids[:4]))
        .values(last_certified_on=dt.date(2024, 2, 29))
    )
    earlier = _run(session, dt.date(2024, 6, 1))
    _certify(session, earlier, {ids[1]: dt.date(2024, 3, 1), ids[2]: dt.date(9999, 12, 31),
                                ids[4]: dt.date(2025, 8, 31), ids[5]: dt.date(2025, 1, 31)})  # fmt: skip
    _certify(session, earlier, {ids[4]: dt.date(2025, 9, 30)})
    session.flush()
    read = read_ends(session, policy=policy)
    oracle = _old_valid_until(session, policy=policy)
    assert read.merged().sort_index().to_dict() == oracle.to_dict()
    # The run certifies some of each kind, a person it never saw before among them.
    now = _run(session, dt.date(2025, 7, 1))
    _certify(session, now, {ids[0]: dt.date(2026, 1, 1), ids[1]: dt.date(2026, 1, 1),
                            ids[4]: dt.date(2025, 9, 1), ids[6]: dt.date(2026, 7, 1)})  # fmt: skip
    session.flush()
    renewed = read.with_run(session, run_id=now).merged()
    fresh = valid_until(session, policy=policy)
    pd.testing.assert_series_equal(renewed.sort_index(), fresh.sort_index())
    assert fresh.sort_index().to_dict() == _old_valid_until(session, policy=policy).to_dict()
    assert fresh[ids[4]] == dt.date(2025, 9, 30) and fresh[ids[6]] == dt.date(2026, 7, 1)
    assert ids[7] not in fresh.index
    # Read row by row (where the joined text cannot be split back): the same ends.
    monkeypatch.setattr(certification_service, "read_joined", lambda *a, **k: None)
    pd.testing.assert_series_equal(valid_until(session, policy=policy), fresh)


def test_days_of_date_objects_equal_numpy_one_by_one() -> None:
    days = [dt.date(1900, 1, 1), None, dt.date(9999, 12, 31), dt.date(2024, 2, 29)]
    got = certification_service._days(pd.Series(days, dtype=object))
    want = np.array(days, dtype="datetime64[D]")
    assert got.dtype == want.dtype and got.astype(str).tolist() == want.astype(str).tolist()
    text = certification_service._days(pd.Series(["2025-01-02"], dtype=object))
    assert text.astype(str).tolist() == ["2025-01-02"]


def test_cycle_days_looks_each_type_up_once_with_the_numbers_of_a_lookup_per_row(
    policy: CertificationPolicy,
) -> None:
    kinds = ["enterprise_pension", "resident_pension", "survivor_pension", "unemployment"]
    rows = pd.Series([kinds[n * 7 % 4] for n in range(50)])
    for column in [rows, rows.astype(object), rows.astype("category"), rows[:0]]:
        for field in ("valid_months", "renewal_window_days"):
            want = np.array(
                [getattr(policy.cycle_for(str(kind)), field) for kind in column], dtype=np.int64
            )
            got = certification_service.cycle_days(policy, column, field=field)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the policy is read-only
@given(windows=st.lists(st.integers(1, 400), max_size=4), default=st.integers(1, 400))
def test_the_longest_renewal_window_is_that_of_some_type_and_none_is_longer(
    policy: CertificationPolicy, windows: list[int], default: int
) -> None:
    # The nights a run looks back for strong moments: the same for every partition of a run.
    cycle = dataclasses.replace(policy.cycle, renewal_window_days=default)
    overrides = {
        f"type_{n}": dataclasses.replace(cycle, renewal_window_days=days)
        for n, days in enumerate(windows)
    }
    shaped = dataclasses.replace(policy, cycle=cycle, overrides=overrides)
    kinds = pd.Series(["other", *overrides])
    longest = shaped.longest_renewal_window
    assert longest == max([default, *windows])
    assert (
        longest
        >= certification_service.cycle_days(shaped, kinds, field="renewal_window_days").max()
    )


# Operations on the certifications between reads: a run certifying (and keeping its ends),
# rows written or deleted by hand (which no run keeps), and reading the ends again.
_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("run"), st.dictionaries(st.integers(0, 5), st.integers(-400, 800),
                                                  max_size=4)),
        st.tuples(st.just("insert"), st.tuples(st.integers(0, 5), st.integers(-400, 800))),
        st.tuples(st.just("delete"), st.integers(0, 1_000)),
    ),
    max_size=8,
)  # fmt: skip


@settings(
    max_examples=60, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(operations=_OPERATIONS)
def test_ends_kept_between_runs_equal_a_fresh_read_whatever_happened_since(
    session: Session, policy: CertificationPolicy, operations: list[tuple[str, Any]]
) -> None:
    """The kept ends plus what came after equal the latest end of every certification, by hand
    (the oracle: each person's maximum over the rows as they are), after any sequence."""
    example = session.begin_nested()
    try:
        ids = [person(session, f"K{n}", "G1", ("enterprise_pension", "1.00", "active"))
               for n in range(6)]  # fmt: skip
        day = dt.date(2025, 1, 1)
        for step, (kind, arguments) in enumerate(operations):
            if kind == "run":
                run_id = _run(session, day + dt.timedelta(days=step))
                read = read_ends(session, policy=policy)
                if arguments:
                    _certify(session, run_id, {ids[p]: day + dt.timedelta(days=offset)
                                               for p, offset in arguments.items()})  # fmt: skip
                session.flush()
                keep_ends(session, read.with_run(session, run_id=run_id).recorded)
            elif kind == "insert":
                p, offset = arguments
                _certify(session, _run(session, day), {ids[p]: day + dt.timedelta(days=offset)})
            else:
                rows = session.scalars(select(Certification.id).order_by(Certification.id)).all()
                if rows:
                    session.execute(
                        delete(Certification).where(Certification.id == rows[arguments % len(rows)])
                    )
            session.flush()
            latest: dict[int, dt.date] = {}
            for person_id, end in session.execute(
                select(Certification.person_id, Certification.valid_until)
            ):
                latest[person_id] = max(end, latest.get(person_id, end))
            got = recorded_ends(session)
            assert {int(p): d.date() for p, d in got.items()} == latest
    finally:
        example.rollback()
