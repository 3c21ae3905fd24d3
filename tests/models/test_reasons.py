"""Reasons stored compactly read back as the very dict written, on both backends."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from liveness.db import insert_rows
from models import Assessment, Base, Run, RunStatus
from models.reasons import pack_reasons, unpack_reasons
from tests.liveness.test_insert_rows import _person_and_run

names = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=10)
iso_days = st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)).map(dt.date.isoformat)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | names | finite,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def source_entries(draw: st.DrawFn) -> dict[str, Any]:
    """One source's entry as the explainer writes it."""
    entry: dict[str, Any] = {
        "last": draw(iso_days), "recent_weight": draw(finite), "agrees": draw(st.booleans()),
    }  # fmt: skip
    if draw(st.booleans()):
        entry["group"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        entry["degraded"] = True
    return entry


@st.composite
def explained(draw: st.DrawFn) -> dict[str, Any]:
    """A person's reasons as `reasons_frame` (and the steps after it) write them."""
    reasons: dict[str, Any] = {
        "policy": draw(st.text(max_size=12)),
        "level": draw(st.sampled_from(["strong", "medium", "weak", "deceased"])),
        "rule": draw(st.text(max_size=16)),
        "score": draw(finite),
        "window": draw(st.integers(0, 1000)),
        "long": draw(st.integers(0, 1000)),
        "sources": draw(st.dictionaries(names, source_entries(), max_size=6)),
    }
    optional = {
        "degraded": st.lists(names, max_size=2), "institution": st.lists(names, max_size=2),
        "kept_from": st.sampled_from(["strong", "medium"]), "face_pass": iso_days,
        "death": iso_days, "post_death_traces": st.integers(0, 99), "strong_on": iso_days,
        "risk": st.dictionaries(names, json_values, max_size=3),
    }  # fmt: skip
    for key, values in optional.items():
        if draw(st.booleans()):
            reasons[key] = draw(values)
    return reasons


def _stored(value: Any) -> Any:
    """Return what a JSON column gives back for `value`."""
    return json.loads(json.dumps(value))


@given(reasons=explained())
def test_a_runs_reasons_read_back_exactly_and_shorter(reasons: dict[str, Any]) -> None:
    packed = pack_reasons(reasons)
    assert isinstance(packed, list)
    back = unpack_reasons(_stored(packed))
    assert back == reasons
    assert list(back) == list(reasons)
    assert [list(entry) for entry in back["sources"].values()] == [
        list(entry) for entry in reasons["sources"].values()
    ]
    if reasons["sources"]:
        assert len(json.dumps(packed)) < len(json.dumps(reasons))


@given(value=st.dictionaries(names, json_values, max_size=5))
def test_reasons_of_another_shape_are_kept_as_they_are(value: dict[str, Any]) -> None:
    assert unpack_reasons(_stored(pack_reasons(value))) == value


def test_what_the_explainer_would_not_write_is_kept_as_it_is() -> None:
    shaped = {
        "policy": "p", "level": "strong", "rule": "sources_strong", "score": 0.8, "window": 90,
        "long": 365, "sources": {"transit": {"last": "2025-12-27", "recent_weight": 9.75,
                                             "agrees": True}},
    }  # fmt: skip
    odd = [
        {**shaped, "sources": {"transit": {"last": "2025-12-27", "recent_weight": 9,
                                           "agrees": True}}},  # an int weight
        {**shaped, "sources": {"transit": {"last": "20251227", "recent_weight": 9.75,
                                           "agrees": True}}},  # another spelling of a date
        {**shaped, "sources": {"transit": {"last": "2025-12-27", "recent_weight": 9.75,
                                           "agrees": True, "degraded": False}}},
        {**shaped, "sources": {"transit": {"last": "2025-12-27", "recent_weight": 9.75,
                                           "agrees": True, "note": "x"}}},
        {"sources": {}, **{k: v for k, v in shaped.items() if k != "sources"}},  # out of order
        {k: v for k, v in shaped.items() if k != "window"},
    ]  # fmt: skip
    for value in odd:
        assert pack_reasons(value) is value
        assert unpack_reasons(_stored(value)) == value


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reasons=explained())
def test_stored_compact_on_both_backends_by_the_orm_and_past_it(
    session: Session, reasons: dict[str, Any]
) -> None:
    nested = session.begin_nested()
    person_id, run_id = _person_and_run(session)
    other = Run(as_of=dt.date(2025, 7, 2), status=RunStatus.PUBLISHED, policy_version="p")
    session.add(other)
    session.add(
        Assessment(run_id=run_id, person_id=person_id, level=reasons["level"], score=0.5,
                   rule="r", reasons=reasons, policy_version="p")
    )  # fmt: skip
    session.flush()
    insert_rows(
        session, Base.metadata.tables["assessments"],
        {"run_id": [other.id], "person_id": [person_id], "level": [reasons["level"]],
         "score": [0.5], "rule": ["r"], "reasons": [reasons], "policy_version": ["p"]},
    )  # fmt: skip
    session.expire_all()
    read = session.scalars(
        select(Assessment.reasons).where(Assessment.person_id == person_id)
    ).all()
    assert read == [reasons, reasons]
    raw = session.execute(
        text("SELECT reasons FROM assessments WHERE person_id = :p"), {"p": person_id}
    ).scalars()
    for value in raw:
        stored = json.loads(value) if isinstance(value, str) else value
        assert isinstance(stored, list) and stored[0] == 1
    nested.rollback()
