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


def test_scenario_traces_stop_with_ordinary_life(
    frames: dict[str, pd.DataFrame], truth: pd.DataFrame
) -> None:
    died = truth[truth["died_on"] != ""].set_index("id_number")["died_on"]
    time_column = {
        "travel": "departed_at", "health_check": "checked_on", "counter": "served_at",
        "ltc": "cared_on", "vaccination": "vaccinated_at",
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


def test_without_scenarios_the_city_delivers_the_built_in_sources_only(tmp_path: Path) -> None:
    simulate_city(persons=300, start=START, days=40, seed=3, out=tmp_path, scenarios=False)
    assert not any((tmp_path / source).exists() for source in SCENARIOS)
    assert (tmp_path / "transit").is_dir()
