"""The data scenarios of the simulated city: plausible coverage per way of life, loadable."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from connectors import get_connector, load_source_configs
from liveness.simulate import simulate_city
from liveness.simulate.city import SCENARIOS
from tests.connectors.test_conformance import read_all

REPO = Path(__file__).resolve().parents[3]
START = date(2025, 1, 1)
PERSONS = 20_000


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    simulate_city(persons=PERSONS, start=START, days=365, seed=3, out=out)
    return out


@pytest.fixture(scope="module")
def truth(city: Path) -> pd.DataFrame:
    return pd.read_csv(city / "truth.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def loaded(city: Path) -> dict[str, tuple[pd.DataFrame, int]]:
    """Read every scenario's files through its declaration: the good rows, and how many not."""
    configs = load_source_configs(REPO / "config" / "sources.toml")
    result = {}
    for source in SCENARIOS:
        batches = [
            read_all(get_connector(source, configs), path)
            for path in sorted((city / source).glob("*.csv"))
        ]
        rows = pd.concat([batch.rows for batch in batches], ignore_index=True)
        result[source] = (rows, sum(len(batch.quarantined) for batch in batches))
    return result


@pytest.fixture(scope="module")
def frames(loaded: dict[str, tuple[pd.DataFrame, int]]) -> dict[str, pd.DataFrame]:
    """Return each scenario's good rows, times as local text (YYYY-MM-DD HH:MM:SS)."""
    result = {}
    for source, (rows, _) in loaded.items():
        frame = rows.copy()
        for column in frame.columns:
            values = frame[column]
            if pd.api.types.is_datetime64_any_dtype(values):
                if values.dt.tz is not None:
                    values = values.dt.tz_convert("Asia/Shanghai")
                frame[column] = values.dt.strftime("%Y-%m-%d %H:%M:%S")
        result[source] = frame.astype({"record_id": str})
    return result


def _unique(index: pd.Series, values: pd.Series) -> pd.Series:
    """Return `values` by `index`, without the labels several rows share (namesakes)."""
    keep = ~index.duplicated(keep=False).to_numpy()
    return pd.Series(values.to_numpy()[keep], index=index.to_numpy()[keep])


@pytest.fixture(scope="module")
def coverage(frames: dict[str, pd.DataFrame], truth: pd.DataFrame, city: Path) -> pd.DataFrame:
    """Return, per scenario and profile, the share of the living with a record in the year."""
    living = truth[truth["died_on"] == ""]
    by_number = living.set_index("id_number")["person_ref"]
    cards = pd.read_csv(city / "cards" / "cards.csv", dtype=str)
    holder = cards.merge(truth[["id_number", "person_ref"]], on="id_number")
    by_card = holder.set_index("card_no")["person_ref"]
    by_name = _unique(living["name"] + "|" + living["birth_date"], living["person_ref"])
    shares = {}
    for source, frame in frames.items():
        if source == "community":
            named = frame["name"].astype(str) + "|" + frame["birth_date"].str[:10]
            seen = set(by_card.reindex(frame["card_no"].dropna()).dropna())
            seen |= set(by_name.reindex(named).dropna())
        else:
            seen = set(by_number.reindex(frame["id_number"]).dropna())
        shares[source] = (
            living.assign(seen=living["person_ref"].isin(seen)).groupby("profile")["seen"].mean()
        )
    return pd.DataFrame(shares)


def test_every_scenario_delivers_monthly_and_loads_through_its_declaration(
    city: Path, loaded: dict[str, tuple[pd.DataFrame, int]]
) -> None:
    planted = json.loads((city / "anomalies.json").read_text("utf-8"))["malformed_rows"]
    for source in SCENARIOS:
        assert len(list((city / source).glob("*.csv"))) == 12, source
        rows, quarantined = loaded[source]
        # Only the rows planted as damaged are refused: the declaration fits the exports.
        assert quarantined == len(planted[source]) > 0, source
        assert rows["record_id"].is_unique


def test_coverage_per_way_of_life(coverage: pd.DataFrame) -> None:
    share = coverage.round(3).to_dict()
    travel, checks, ltc = share["travel"], share["health_check"], share["ltc"]
    # Travel: mostly those living out of the province and the active in town.
    assert travel["out_of_province"] > 0.6 and 0.2 < travel["active_urban"] < 0.4
    assert travel["bedridden"] == travel["homebound"] == 0
    # Health checks (over-65s only, about two in three): fewer far away or in bed.
    assert 0.4 < checks["active_urban"] < 0.6 and checks["out_of_province"] < 0.1
    assert checks["bedridden"] < checks["homebound"] < checks["rural_no_transit"]
    # Long-term care: the bedridden, then the homebound; hardly anyone else.
    assert 0.3 < ltc["bedridden"] < 0.5 and 0.15 < ltc["homebound"] < 0.3
    assert ltc["active_urban"] == ltc["out_of_province"] == 0
    # Canteens and events in town and the suburbs, meals delivered to those who stay in.
    community = share["community"]
    assert community["active_urban"] > 0.3 and community["moderate"] > 0.3
    assert community["out_of_province"] == 0 and community["homebound"] > 0.2
    # Counters: the country people most, never the bedridden.
    counter = share["counter"]
    assert counter["rural_no_transit"] > counter["active_urban"] > 0.5
    assert counter["bedridden"] == 0 and counter["out_of_province"] < 0.3
    vaccination = share["vaccination"]
    assert 0.1 < vaccination["active_urban"] < 0.3 and vaccination["out_of_province"] < 0.1
    # Settlements in another province: three in four of those living there, a few winterers.
    remote = share["remote_medical"]
    assert 0.65 < remote["out_of_province"] < 0.85
    assert 0 < remote["active_urban"] < 0.03 and remote["moderate"] < 0.03
    assert remote["bedridden"] == remote["homebound"] == remote["rural_no_transit"] == 0
    # Family doctors: most of the bedridden who leave traces and of the homebound; a third
    # of the over-65s elsewhere (a chronic condition), hardly anyone far away.
    doctor = share["family_doctor"]
    assert 0.4 < doctor["bedridden"] < 0.65 and 0.45 < doctor["homebound"] < 0.75
    assert 0.15 < doctor["active_urban"] < 0.35 and doctor["out_of_province"] < 0.05


def test_scenario_traces_stop_with_ordinary_life(
    frames: dict[str, pd.DataFrame], truth: pd.DataFrame
) -> None:
    died = truth[truth["died_on"] != ""].set_index("id_number")["died_on"]
    time_column = {
        "travel": "departed_at", "health_check": "checked_on", "counter": "served_at",
        "ltc": "cared_on", "vaccination": "vaccinated_at", "remote_medical": "settled_at",
        "family_doctor": "visited_at",
    }  # fmt: skip
    for source, column in time_column.items():
        frame = frames[source]
        death = died.reindex(frame["id_number"]).fillna("9999-12-31")
        assert not (frame[column].str[:10].to_numpy() > death.to_numpy()).any(), source


def test_health_checks_are_yearly_and_some_flu_shots_the_same_visit(
    frames: dict[str, pd.DataFrame], truth: pd.DataFrame
) -> None:
    checks = frames["health_check"]
    assert checks["id_number"].is_unique  # once in the year
    ages = truth.set_index("id_number")["age_at_start"].astype(int)
    assert (ages.reindex(checks["id_number"]) >= 65).all()
    flu = frames["vaccination"]
    flu = flu[flu["vaccine"] == "influenza"]
    same = flu.merge(checks, on="id_number")
    same_day = (same["vaccinated_at"].str[:10] == same["checked_on"].str[:10]).mean()
    assert 0.15 < same_day < 0.6
    # Nursing homes write a line a day: their residents' records are daily.
    ltc = frames["ltc"]
    daily = ltc[ltc["service"] == "nursing_home_day"].groupby("id_number").size()
    assert np.median(daily) > 300


def test_family_doctors_visit_the_bedridden_at_home_and_follow_up_the_others(
    frames: dict[str, pd.DataFrame], truth: pd.DataFrame
) -> None:
    people = truth.set_index("id_number")
    visits = frames["family_doctor"]
    profile = people["profile"].reindex(visits["id_number"]).to_numpy()
    age = people["age_at_start"].astype(int).reindex(visits["id_number"]).to_numpy()
    home = visits[visits["visit_type"] == "home_visit"]
    # The bedridden who signed are seen at home about monthly; nobody active in town is.
    bedridden = home[profile[visits["visit_type"] == "home_visit"] == "bedridden"]
    assert np.median(bedridden.groupby("id_number").size()) >= 8
    assert not (profile[visits["visit_type"] == "home_visit"] == "active_urban").any()
    # Chronic-disease follow-ups are for the over-65s; the bedridden and homebound at any age.
    any_age = np.isin(profile, ["bedridden", "homebound"])
    assert (age[~any_age] >= 65).all()
    # A phone call is the smaller part, and each person keeps their centre.
    assert 0.1 < (visits["visit_type"] == "phone_follow_up").mean() < 0.35
    assert (visits.groupby("id_number")["institution_code"].nunique() == 1).all()


def test_remote_settlements_are_out_of_the_province(
    frames: dict[str, pd.DataFrame], truth: pd.DataFrame
) -> None:
    remote = frames["remote_medical"]
    profile = truth.set_index("id_number")["profile"].reindex(remote["id_number"]).to_numpy()
    assert not remote["province_code"].str.startswith("33").any()  # never this province
    # Hospitals and pharmacies under the national codes of the province of the visit.
    letter = np.where(remote["visit_type"] == "pharmacy", "P", "H")
    assert (remote["institution_code"].str[0] == letter).all()
    assert (remote["institution_code"].str[1:7] == remote["province_code"]).all()
    assert 0.2 < (remote["visit_type"] == "pharmacy").mean() < 0.5
    # The winterers are seen there from November to March only.
    winter = remote[np.isin(profile, ["active_urban", "moderate"])]["settled_at"].str[5:7]
    assert len(winter) > 0 and winter.isin(["11", "12", "01", "02", "03"]).all()
    # A stay's end comes after its admission, and only to those who live there.
    stays = remote[remote["visit_type"].str.startswith("inpatient")]
    assert set(profile[remote["visit_type"].str.startswith("inpatient").to_numpy()]) == {
        "out_of_province"
    }
    first = stays.sort_values("settled_at").groupby("id_number")["visit_type"].first()
    # (but where the admission's row was planted damaged, and quarantined)
    assert (first == "inpatient_admission").mean() > 0.95


def test_without_scenarios_the_city_delivers_the_built_in_sources_only(tmp_path: Path) -> None:
    simulate_city(persons=300, start=START, days=40, seed=3, out=tmp_path, scenarios=False)
    assert not any((tmp_path / source).exists() for source in SCENARIOS)
    assert (tmp_path / "transit").is_dir()
