"""The learned estimator may certify silently, with guardrails; a probability never suspends."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sqlalchemy import select

from liveness.db import session_scope
from liveness.entry.reports import estimator_effect
from liveness.estimator import artifacts_dir, feature_names, save_artifact
from liveness.services import Services
from models import (
    Certification,
    ListEntry,
    Person,
    ReviewTask,
    TaskKind,
    assessments_as_of,
)
from tests.liveness.ingest.test_ingest import CARDS, REGISTRY
from tests.liveness.test_workflow import City

# P1's and P2's certifications end on 2025-06-01: their renewal window is open since 04-02,
# and on 04-12 their reviews open (just in time) unless the data certifies them.
RUN = "2025-04-12"


@pytest.fixture(params=["sqlite", "postgresql"])
def city(
    request: pytest.FixtureRequest, services_factory: Callable[[str], Services], tmp_path: Path
) -> City:
    place = City(services_factory(request.param), tmp_path)
    place.deliver("registry", REGISTRY)
    place.deliver("cards", CARDS)
    # Medium both: P1 by face-matched taps (their own body at the gate), P2 by contactless
    # payments (anyone holding the card), one source each in the recent window.
    place.deliver(
        "transit",
        "record_id,card_no,tapped_at,city_code,face_match\n"
        "T1,C2,2025-03-10 08:00:00,330700,true\nT2,C2,2025-03-12 08:00:00,330700,true\n",
    )
    place.deliver(
        "card_txn",
        "record_id,card_no,txn_at,channel\n"
        + "".join(f"P{d},C3,2025-03-{d:02d} 10:00:00,pos_tap\n" for d in range(10, 18)),
    )
    return place


def _enable(city: City) -> None:
    """Let the run use the estimator, as `[certify] enabled = true` in estimator.toml does."""
    policies = city.services.policies
    assert policies.estimator is not None and not policies.estimator.certify_enabled
    city.services.policies = dataclasses.replace(  # type: ignore[misc]
        policies, estimator=dataclasses.replace(policies.estimator, certify_enabled=True)
    )


def _train(city: City, *, alive: float, roc_auc: float = 0.9) -> str:
    """Save an artifact that gives everyone the same P(alive); return its version.

    `roc_auc` is what its training would have measured on held-out persons.
    """
    policies = city.services.policies
    names = feature_names(policy=policies.scoring, age=True)
    labels = np.zeros(1000, dtype=np.int8)
    labels[: round(alive * 1000)] = 1
    estimator = DummyClassifier(strategy="prior").fit(
        pd.DataFrame(np.zeros((1000, len(names))), columns=names), labels
    )
    with session_scope(city.services.sessions) as session:
        row = save_artifact(
            session, estimator=cast(Any, estimator), folder=artifacts_dir(city.services.settings),
            trained_as_of=dt.date(2025, 1, 1), horizon_days=90, feature_names=names,
            metrics={"estimator": {"roc_auc": roc_auc}},
            policy_version=policies.scoring.version,
        )  # fmt: skip
        return row.version


def _certifications(city: City) -> dict[str, Certification]:
    with session_scope(city.services.sessions) as session:
        rows = session.execute(
            select(Person.person_ref, Certification).join(
                Person, Person.id == Certification.person_id
            )
        ).all()
        session.expunge_all()
    return {ref: certification for ref, certification in rows}


def test_a_likely_alive_person_with_an_own_body_trace_is_certified(city: City) -> None:
    _enable(city)
    version = _train(city, alive=0.999)
    run_id = city.run(RUN)
    certified = _certifications(city)
    # P1 passed the gate's face check: certified silently, the estimator named with its
    # artifact and the trace. P2's payments could be anyone's: P2 is asked as usual.
    assert set(certified) == {"P1"}
    evidence = certified["P1"].evidence
    assert certified["P1"].source == "data_comparison"
    assert evidence["by"] == "estimator" and evidence["artifact"] == version
    assert evidence["probability"] == pytest.approx(0.999)
    assert evidence["own_body"] == {"kind": "transit.tap_face", "day": "2025-03-12"}
    assert evidence["level"] == "medium"
    assert city.task("P1", TaskKind.FACE_VERIFICATION) is None
    assert city.task("P2", TaskKind.FACE_VERIFICATION) is not None
    report = city.report(run_id)
    assert report["certified_by_estimator"] == 1
    assert report["certified_silently"] == 1
    assert report["estimator"]["artifact"] == version
    # P3, never certified and without a trace, is in the window too, and not certified.
    assert report["estimator"] == {
        "enabled": True, "artifact": version, "notes": [], "in_renewal_window": 3,
        "above_min_probability": 3, "without_own_body_trace": 2, "certified": 1,
    }  # fmt: skip
    assert estimator_effect(report) == (
        f"certified silently: 0 by the rules, 1 more by the estimator (artifact {version}: 3 "
        "likely alive, 2 of them without a recent trace of their own body)"
    )


def test_disabled_the_estimator_certifies_nobody(city: City) -> None:
    _train(city, alive=0.999)
    run_id = city.run(RUN)
    assert _certifications(city) == {}
    report = city.report(run_id)
    assert report["certified_by_estimator"] == 0
    assert report["estimator"] == {"enabled": False, "artifact": None, "notes": []}
    assert estimator_effect(report).endswith("the estimator is not enabled")


def test_below_the_threshold_the_estimator_certifies_nobody(city: City) -> None:
    _enable(city)
    _train(city, alive=0.99)
    run_id = city.run(RUN)
    assert _certifications(city) == {}
    assert city.report(run_id)["estimator"]["above_min_probability"] == 0


def test_an_artifact_that_ranked_poorly_is_not_used(city: City) -> None:
    _enable(city)
    _train(city, alive=0.999, roc_auc=0.55)
    run_id = city.run(RUN)
    assert _certifications(city) == {}
    report = city.report(run_id)["estimator"]
    assert report["artifact"] is None and "ROC AUC of 0.55" in report["notes"][0]


def test_an_own_body_trace_older_than_the_policy_allows_certifies_nobody(city: City) -> None:
    _enable(city)
    _train(city, alive=0.999)
    # P1's face-matched taps of 03-10 and 03-12 are 60 days old or more by 05-11.
    run_id = city.run("2025-05-11")
    assert "P1" not in _certifications(city)
    assert city.report(run_id)["certified_by_estimator"] == 0


def test_enabled_without_an_artifact_the_run_says_so_and_publishes(city: City) -> None:
    _enable(city)
    run_id = city.run(RUN)
    (note,) = city.report(run_id)["estimator"]["notes"]
    assert "not used" in note and "classifier train" in note
    assert _certifications(city) == {}


def _levels(city: City, run_id: int) -> dict[str, str]:
    with session_scope(city.services.sessions) as session:
        standing = assessments_as_of(run_id)
        rows = session.execute(
            select(Person.person_ref, standing.level).join(Person, Person.id == standing.person_id)
        ).all()
    return dict(rows)


def test_a_low_probability_opens_a_review_and_never_suspends(city: City) -> None:
    first = city.run("2025-03-20")
    _enable(city)
    version = _train(city, alive=0.3)
    run_id = city.run("2025-03-21")
    # Before the renewal window: a review for the likely dead, ranked by their probability;
    # their levels are the rules' and nobody is suspended or certified.
    assert _levels(city, run_id) == _levels(city, first)
    with session_scope(city.services.sessions) as session:
        assert session.scalars(select(ListEntry)).all() == []
        tasks = session.execute(
            select(Person.person_ref, ReviewTask).join(Person, Person.id == ReviewTask.person_id)
        ).all()
        session.expunge_all()
    # P3, never certified, was due at the first run already.
    causes = {ref: (task.cause, task.opened_on.isoformat()) for ref, task in tasks}
    assert causes == {"P1": ("risk", "2025-03-21"), "P2": ("risk", "2025-03-21"),
                      "P3": ("renewal", "2025-03-20")}  # fmt: skip
    opened = {ref: task for ref, task in tasks}
    assert opened["P1"].reasons["risk"] == {"probability": 0.3, "artifact": version}
    assert opened["P1"].priority == pytest.approx((1 - 0.3) * 3000.0)
    assert _certifications(city) == {}
    report = city.report(run_id)
    assert report["risk_reviews"] == {"abrupt_stop": 0, "low_probability": 2, "opened": 2}
