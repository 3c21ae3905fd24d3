"""Who could be strong on a night of a renewal window: the bound never leaves anyone out."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.certification.workflow.moments import _Traces
from liveness.scoring.policy import load_policy
from liveness.settings import default_config_dir

POLICY = load_policy(default_config_dir() / "scoring.toml")
BENEFITS = ("enterprise_pension", "resident_pension", "survivor_pension", "unemployment")
FIRST, LAST = 20_000, 20_060


@st.composite
def _traces(draw: st.DrawFn) -> _Traces:
    """A few persons and their traces of any kind, from a long window before the first night."""
    persons = draw(st.integers(1, 6))
    traces = draw(
        st.lists(
            st.tuples(
                st.integers(0, persons - 1),
                st.integers(0, len(POLICY.kinds) - 1),
                st.integers(FIRST - POLICY.long, LAST),
            ),
            max_size=40,
        )
    )
    person, kind, day = (
        (np.array(column, dtype=np.int64) for column in zip(*traces, strict=True))
        if traces
        else (np.empty(0, dtype=np.int64),) * 3
    )
    return _Traces(
        person.astype(np.int32), POLICY.source_of_kind[kind].astype(np.int8),
        kind.astype(np.int16), day.astype(np.int32),
        np.array(draw(st.lists(st.sampled_from(BENEFITS), min_size=persons,
                               max_size=persons)), dtype=object),
        POLICY,
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(traces=_traces())
def test_whoever_is_strong_on_some_night_could_be(traces: _Traces) -> None:
    """Graded night by night (the oracle), nobody strong is outside the bound."""
    could = traces.could_be_strong(first=FIRST, last=LAST)
    for night in range(FIRST, LAST + 1):
        strong = traces.graded(night)[1].certifiable
        assert not (strong & ~could).any(), (night, np.flatnonzero(strong & ~could))


@settings(max_examples=60, deadline=None)
@given(traces=_traces(), data=st.data())
def test_the_traces_of_some_persons_grade_as_they_did_among_all(
    traces: _Traces, data: st.DataObject
) -> None:
    n = len(traces.benefit_type)
    persons = np.array(sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=n))), dtype=np.intp)
    some = traces.of(persons)
    for night in (FIRST, (FIRST + LAST) // 2, LAST):
        all_grades = traces.graded(night)[1]
        their = some.graded(night)[1]
        assert np.array_equal(their.level, all_grades.level[persons])
        assert np.array_equal(their.certifiable, all_grades.certifiable[persons])
