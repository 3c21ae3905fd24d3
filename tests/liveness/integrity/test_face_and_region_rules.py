"""One face passing for two numbers, and review outcomes placing one person in two regions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from liveness.access.gateways import FaceResult, receive_face_result
from liveness.db import session_scope
from liveness.errors import ConfigurationError
from liveness.evidence.parts import day_number
from liveness.integrity import find_leads, load_integrity_policy
from liveness.integrity.policy import IntegrityPolicy
from liveness.integrity.rules import FACE_PASS_COLUMNS, OUTCOME_COLUMNS, same_face_id
from liveness.integrity.rules import two_region_certification as two_regions
from liveness.simulate.integrity import SHARED_FACE_ID, record_planted_outcomes
from models import Person, ReviewTask, TaskKind, TaskStatus
from tests.liveness.conftest import REPO
from tests.liveness.integrity.conftest import AS_OF, PlantedCity

POLICY = load_integrity_policy(REPO / "config" / "integrity.toml")
ROLL = pd.DataFrame(
    {
        "person_id": [1, 2, 3],
        "person_ref": ["P1", "P2", "P3"],
        "id_number": ["N1", "N2", "N3"],
        "name": ["a", "b", "c"],
        "region_code": ["330702", "330702", "330782"],
        "monthly_amount": [1000.0, 800.0, 900.0],
    }
)


def _policy(rule: str, **changes: Any) -> IntegrityPolicy:
    settings = {k: dict(v) for k, v in POLICY.settings.items()}
    settings[rule].update(changes)
    return IntegrityPolicy(version="test", settings=settings)


def _leads(city: PlantedCity, rule: str, policy: IntegrityPolicy = POLICY) -> pd.DataFrame:
    with session_scope(city.services.sessions) as session:
        leads = find_leads(
            session, store=city.services.store, policy=policy, as_of=AS_OF, only=[rule]
        )
    return leads.reset_index(drop=True)


def test_one_face_passing_for_two_numbers_is_one_lead_with_its_verifications(
    planted_city: PlantedCity,
) -> None:
    leads = _leads(planted_city, "same_face_id")
    (group,) = planted_city.planted.groups["same_face_id"]
    assert len(leads) == 1
    lead = leads.iloc[0]
    assert lead["key"] == SHARED_FACE_ID
    assert sorted(lead["person_refs"]) == sorted(group)
    evidence = lead["evidence"]
    assert {v["record_id"] for v in evidence["listed"]} == {"VP00000002", "VP00000003"}
    assert {v["person_ref"] for v in evidence["listed"]} == set(group)
    amounts = [p["monthly_amount"] for p in evidence["persons"]]
    assert lead["amount_at_risk"] == pytest.approx(sum(amounts))
    # Passes older than the window are no lead.
    assert _leads(planted_city, "same_face_id", _policy("same_face_id", window_days=5)).empty


def test_only_passes_of_distinct_persons_make_a_face_lead() -> None:
    passes = pd.DataFrame(
        [
            ("V1", 1, day_number(dt.date(2025, 3, 1)), "pass_app", "F1"),
            ("V2", 1, day_number(dt.date(2025, 3, 9)), "pass_kiosk", "F1"),  # same person again
            ("V3", 2, day_number(dt.date(2025, 3, 2)), "pass_app", "F2"),
            ("V4", 3, day_number(dt.date(2025, 3, 3)), "pass_proxy", "F2"),
        ],
        columns=FACE_PASS_COLUMNS,
    )
    leads = same_face_id(passes, ROLL, min_persons=2, max_listed=1)
    assert leads["key"].tolist() == ["F2"]
    assert leads["person_refs"].iloc[0] == ["P2", "P3"]
    assert len(leads["evidence"].iloc[0]["listed"]) == 1
    assert leads["evidence"].iloc[0]["verifications"] == 2
    assert leads["amount_at_risk"].iloc[0] == pytest.approx(1700.0)
    assert same_face_id(passes, ROLL, min_persons=3, max_listed=5).empty
    assert same_face_id(passes.iloc[:0], ROLL, min_persons=2, max_listed=5).empty


def test_outcomes_in_two_regions_are_a_lead_and_a_plain_move_is_not(
    planted_city: PlantedCity,
) -> None:
    leads = _leads(planted_city, "two_region_certification")
    planted = planted_city.planted
    assert sorted(ref for refs in leads["person_refs"] for ref in refs) == sorted(
        planted.persons("two_region_certification")
    )
    mover = {o["person_ref"] for o in planted.outcomes} - planted.persons(
        "two_region_certification"
    )
    assert len(mover) == 1, "a person who moved after a visit at home is planted as a control"
    for lead in leads.itertuples(index=False):
        evidence = lead.evidence
        assert len(evidence["regions"]) == 2
        assert lead.region_code == evidence["roll_region"]
        assert len(evidence["outcomes"]) == 2
        for outcome in evidence["outcomes"]:
            assert outcome["by"].startswith("grid:")
            assert outcome["on"] <= AS_OF.isoformat()
            assert outcome["region"] in evidence["regions"]
        assert any(o["outcome"] == "moved_away" for o in evidence["outcomes"])
    # Recording the planted outcomes again adds nothing.
    with session_scope(planted_city.services.sessions) as session:
        assert record_planted_outcomes(session, planted=planted, as_of=AS_OF) == 0
    # With a window too short to hold both outcomes of a conflict, nothing conflicts.
    short = _policy("two_region_certification", window_days=12)
    assert _leads(planted_city, "two_region_certification", short).empty


def test_two_region_conflicts_by_the_order_of_outcomes() -> None:
    def outcome(task: int, person: int, kind: str, on: str, region: str | None) -> tuple[Any, ...]:
        day = day_number(dt.date.fromisoformat(on))
        return (task, person, "home_visit", kind, day, f"grid:{person}", region)

    outcomes = pd.DataFrame(
        [
            # P1: moved to 330782, then confirmed alive at home in 330702: a conflict.
            outcome(1, 1, "moved_away", "2025-03-01", "330782"),
            outcome(2, 1, "alive_confirmed", "2025-03-20", None),
            # P2: confirmed at home, then moved: a move, no conflict.
            outcome(3, 2, "alive_confirmed", "2025-03-01", None),
            outcome(4, 2, "moved_away", "2025-03-20", "330782"),
            # P3: moved to the region the roll already has, then seen there: consistent.
            outcome(5, 3, "moved_away", "2025-03-01", "330782"),
            outcome(6, 3, "alive_confirmed", "2025-03-20", None),
        ],
        columns=OUTCOME_COLUMNS,
    )
    leads = two_regions(outcomes, ROLL, max_listed=5)
    assert leads["key"].tolist() == ["P1"]
    listed = leads["evidence"].iloc[0]["outcomes"]
    assert [(o["task_id"], o["region"]) for o in listed] == [(1, "330782"), (2, "330702")]
    assert leads["amount_at_risk"].iloc[0] == pytest.approx(1000.0)
    assert two_regions(outcomes.iloc[:0], ROLL, max_listed=5).empty


def test_an_outcome_that_places_no_one_is_refused(tmp_path: Path) -> None:
    text = (REPO / "config" / "integrity.toml").read_text(encoding="utf-8")
    path = tmp_path / "integrity.toml"
    path.write_text(
        text.replace('outcomes = ["alive_confirmed", "moved_away"]', 'outcomes = ["refused"]'),
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match="place no one"):
        load_integrity_policy(path)


def test_a_verifier_callback_keeps_its_face_id_in_the_evidence(
    planted_city: PlantedCity, tmp_path: Path
) -> None:
    services = planted_city.services
    with session_scope(services.sessions) as session:
        person = session.scalars(select(Person).order_by(Person.id)).first()
        assert person is not None
        task = ReviewTask(
            person_id=person.id, kind=TaskKind.FACE_VERIFICATION, status=TaskStatus.OPEN,
            grid_code=person.grid_code, priority=0.0, opened_on=AS_OF - dt.timedelta(days=20),
            due_on=AS_OF,
        )  # fmt: skip
        session.add(task)
        session.flush()
        result = FaceResult(
            request_id=task.id, result="pass", channel="app", face_id="FTcallback000001",
            verified_at=dt.datetime.combine(AS_OF - dt.timedelta(days=3), dt.time(9), dt.UTC),
        )  # fmt: skip
        callback = receive_face_result(
            session, result=result, client="verifier-test", signature="ab" * 32,
            inbox=tmp_path / "inbox", context=services.ingest_context(),
        )  # fmt: skip
        table = services.store.read_table(session, source="face", columns=["record_id", "face_id"])
    face_ids = dict(zip(table["record_id"].to_pylist(), table["face_id"].to_pylist(), strict=True))
    assert face_ids[callback.record_id] == "FTcallback000001"
