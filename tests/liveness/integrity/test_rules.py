"""Each planted pattern is found, and no lead names the clean people around it."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from liveness.db import session_scope
from liveness.entry.demo_leads import demo_leads
from liveness.evidence.snapshot import ACTING_MATCHES
from liveness.integrity import RULES, find_leads, load_integrity_policy
from models import DeathRecord, Person, RecordStatus
from tests.liveness.conftest import REPO
from tests.liveness.integrity.conftest import AS_OF, PlantedCity

POLICY = load_integrity_policy(REPO / "config" / "integrity.toml")


def _leads(city: PlantedCity) -> pd.DataFrame:
    with session_scope(city.services.sessions) as session:
        return find_leads(session, store=city.services.store, policy=POLICY, as_of=AS_OF)


def _acting_dead(city: PlantedCity) -> set[str]:
    with session_scope(city.services.sessions) as session:
        return set(
            session.scalars(
                select(Person.person_ref)
                .join(DeathRecord, DeathRecord.person_id == Person.id)
                .where(
                    DeathRecord.status == RecordStatus.ACTIVE,
                    DeathRecord.match.in_([m.value for m in ACTING_MATCHES]),
                )
            )
        )


@pytest.mark.parametrize("rule", [r for r in RULES if r != "activity_after_death"])
def test_each_planted_pattern_is_found_and_nothing_else(
    planted_city: PlantedCity, rule: str
) -> None:
    leads = _leads(planted_city)
    named = [set(refs) for refs in leads.loc[leads["rule"] == rule, "person_refs"]]
    groups = planted_city.planted.groups[rule]
    assert groups, f"nothing planted for {rule}"
    for group in groups:
        assert any(set(group) <= refs for refs in named), f"{rule}: {group} not found"
    expected = planted_city.planted.persons(rule) | set(
        planted_city.planted.also_expected.get(rule, [])
    )
    assert all(refs <= expected for refs in named), f"{rule}: a lead names a clean person"


def test_activity_after_death_lists_the_transactions_and_spares_standing_orders(
    planted_city: PlantedCity,
) -> None:
    leads = _leads(planted_city)
    after = leads.loc[leads["rule"] == "activity_after_death"]
    named = {ref for refs in after["person_refs"] for ref in refs}
    planted = planted_city.planted
    findable = planted.persons("activity_after_death") & _acting_dead(planted_city)
    assert findable, "the planted post-death tap must have an acting death record"
    assert findable <= named
    assert named <= planted.persons("activity_after_death") | set(
        planted.also_expected["activity_after_death"]
    )
    for evidence in after["evidence"]:
        assert evidence["traces"] >= 1
        assert all(t["day"] > evidence["died_on"] for t in evidence["listed"])
        # A standing order runs without the person: never evidence of someone's own act.
        assert all(t["kind"] != "auto_debit" for t in evidence["listed"])
    rider = planted.groups["activity_after_death"][0][0]
    listed = after.loc[after["person_refs"].map(lambda refs: rider in refs), "evidence"].iloc[0]
    assert "TP00000001" in {t["record_id"] for t in listed["listed"]}


def test_a_disabled_rule_finds_nothing(planted_city: PlantedCity) -> None:
    settings = {k: dict(v) for k, v in POLICY.settings.items()}
    settings["shared_bank_account"]["enabled"] = False
    policy = type(POLICY)(version="test", settings=settings)
    with session_scope(planted_city.services.sessions) as session:
        leads = find_leads(session, store=planted_city.services.store, policy=policy, as_of=AS_OF)
    assert "shared_bank_account" not in set(leads["rule"])


def test_demo_figures_find_every_planted_group(planted_city: PlantedCity) -> None:
    figures = demo_leads(planted_city.services, planted=planted_city.planted, as_of=AS_OF)
    table = figures.set_index("rule")
    for rule in ("shared_bank_account", "shared_phone", "same_demographics", "deregistered_number",
                 "face_pass_after_death", "same_face_id", "two_region_certification"):  # fmt: skip
        assert table.loc[rule, "found"] == table.loc[rule, "planted"]
        assert table.loc[rule, "precision"] == 1.0
    assert table.loc["activity_after_death", "found"] >= 1
