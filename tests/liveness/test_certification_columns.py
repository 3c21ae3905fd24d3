"""The certification's column arithmetic equals the one-date-at-a-time rule it replaces."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from liveness.certification import CertificationPolicy, add_months, add_months_array, dates_of
from liveness.certification.policy import load_certification_policy
from liveness.certification.service import _certification_rows, cycle_days
from liveness.certification.workflow.frames import sorted_ids
from liveness.certification.workflow.notices import notice_bodies
from liveness.settings import default_config_dir
from models import CertificationSource


@given(
    st.lists(
        st.tuples(
            st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2999, 12, 31)),
            st.integers(min_value=0, max_value=240),
        ),
        max_size=50,
    )
)
def test_add_months_of_a_column_is_add_months_of_each_day(pairs: list[tuple[dt.date, int]]) -> None:
    days = np.array([d for d, _ in pairs], dtype="datetime64[D]")
    months = np.array([m for _, m in pairs], dtype=np.int64)
    got = add_months_array(days, months).astype(object).tolist()
    assert got == [add_months(d, m) for d, m in pairs]


def test_month_ends_clamp_and_leap_days() -> None:
    days = np.array(["2024-01-31", "2024-02-29", "2023-08-31", "2099-12-31"], dtype="datetime64[D]")
    got = add_months_array(days, np.array([1, 12, 6, 2], dtype=np.int64)).astype(str).tolist()
    assert got == ["2024-02-29", "2025-02-28", "2024-02-29", "2100-02-28"]


def test_dates_of_persons_without_a_date_are_nat() -> None:
    ends = pd.Series([dt.date(2025, 3, 1), dt.date(2999, 1, 1)], index=[7, 9], dtype=object)
    got = dates_of(pd.Series([9, 8, 7, 9]), ends)
    assert [str(d) for d in got] == ["2999-01-01", "NaT", "2025-03-01", "2999-01-01"]


def _old_certification_rows(
    proofs: pd.DataFrame, *, run_id: int, as_of: dt.date, policy: CertificationPolicy,
    policy_version: str,
) -> list[dict[str, object]]:  # fmt: skip
    """The rows as `certify_persons` built them one person at a time (the oracle)."""
    return [
        {
            "person_id": int(person_id), "source": source, "mark": "certified",
            "certified_on": as_of,
            "valid_until": add_months(as_of, policy.cycle_for(str(benefit_type)).valid_months),
            "run_id": run_id, "policy_version": policy_version, "evidence": evidence,
        }
        for person_id, benefit_type, source, evidence in zip(
            proofs["person_id"], proofs["benefit_type"], proofs["source"], proofs["evidence"],
            strict=True,
        )
    ]  # fmt: skip


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10**9),
            st.sampled_from(["enterprise_pension", "institution_pension", "resident_pension", "x"]),
            st.sampled_from(list(CertificationSource)),
        ),
        max_size=30,
    ),
    st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2999, 12, 31)),
)
def test_certification_rows_equal_the_rows_built_person_by_person(
    proofs: list[tuple[int, str, CertificationSource]], as_of: dt.date
) -> None:
    policy = load_certification_policy(default_config_dir() / "certification.toml")
    frame = pd.DataFrame(
        {
            "person_id": np.array([p for p, _, _ in proofs], dtype=np.int64),
            "benefit_type": np.array([b for _, b, _ in proofs], dtype=object),
            "source": np.array([s for _, _, s in proofs], dtype=object),
            "evidence": np.array([{"n": i} for i in range(len(proofs))], dtype=object),
        },
        index=pd.RangeIndex(len(proofs)) * 3,  # an index the rows must not depend on
    )
    got = _certification_rows(
        frame, run_id=4, as_of=as_of, policy_version="v1", source=frame["source"],
        valid_months=cycle_days(policy, frame["benefit_type"], field="valid_months"),
        evidence=frame["evidence"],
    )  # fmt: skip
    want = _old_certification_rows(frame, run_id=4, as_of=as_of, policy=policy, policy_version="v1")
    assert got == want
    assert [type(row["source"]) for row in got] == [type(row["source"]) for row in want]
    assert all(type(row["person_id"]) is int for row in got)


@given(
    st.lists(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(9999, 12, 31)), max_size=30),
    st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1)),
    st.sampled_from(
        [
            "{end} {deadline}",
            "ends {end}, again {end}; by {deadline}.",
            "no day at all {deadline}",
            "{end:>12}|{deadline}",
            "{end!r}",
            "{end}\x00{deadline}\x00",
            "【社保】您的待遇领取资格认证已于{end}到期，请于{deadline}前完成认证。",
        ]
    ),
)
def test_notice_bodies_equal_formatting_each_notice(
    days: list[dt.date], deadline: dt.date, template: str
) -> None:
    got = notice_bodies(
        template, field="end", deadline=deadline.isoformat(),
        days=np.array(days, dtype="datetime64[D]"),
    )  # fmt: skip
    want = [template.format(end=d.isoformat(), deadline=deadline.isoformat()) for d in days]
    assert got == want


def test_policy_notice_texts_format_as_before() -> None:
    policy = load_certification_policy(default_config_dir() / "certification.toml")
    days = [dt.date(2025, 2, 28), dt.date(2026, 1, 1)]
    column = np.array(days, dtype="datetime64[D]")
    assert notice_bodies(policy.notice_texts["face"], field="due", days=column) == [
        policy.notice_texts["face"].format(due=d.isoformat()) for d in days
    ]
    assert notice_bodies(
        policy.notice_texts["lapse"], field="end", deadline="2025-03-30", days=column
    ) == [
        policy.notice_texts["lapse"].format(end=d.isoformat(), deadline="2025-03-30") for d in days
    ]


@given(
    st.dictionaries(
        st.integers(min_value=1, max_value=10**6),
        st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(9999, 12, 31)),
        max_size=30,
    ),
    st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1)),
)
def test_certifications_running_past_today_as_a_column(
    ends: dict[int, dt.date], as_of: dt.date
) -> None:
    series = pd.Series(list(ends.values()), index=list(ends), dtype=object)
    running = series.to_numpy().astype("datetime64[D]") > np.datetime64(as_of, "D")
    assert set(series.index[running].tolist()) == {p for p, end in series.items() if end > as_of}


@given(st.lists(st.integers(min_value=-(2**40), max_value=2**40), max_size=40))
def test_sorted_ids_equal_sorting_a_set_of_ints(ids: list[int]) -> None:
    want = sorted({int(i) for i in ids})
    for given_ids in (ids, set(ids), pd.Series(ids, dtype=np.int64), np.array(ids, np.int64)):
        got = sorted_ids(given_ids)
        assert got == want and all(type(i) is int for i in got)
