"""The simulated civil registry: notices within a day for a share of the registered deaths."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from connectors import get_connector, load_source_configs
from liveness.simulate import deaths, simulate_city
from tests.connectors.test_conformance import read_all
from tests.liveness.conftest import REPO

START = date(2025, 1, 1)
DAYS = 240
PERSONS = 6000


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    simulate_city(persons=PERSONS, start=START, days=DAYS, seed=5, out=out)
    return out


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_notices_load_and_name_registered_deaths_within_a_day(city: Path) -> None:
    configs = load_source_configs(REPO / "config" / "sources.toml")
    batches = [
        read_all(get_connector("registry_notice", configs), path)
        for path in sorted((city / "registry_notice").glob("*.csv"))
    ]
    assert len(batches) == 8  # one delivery per month of the period
    assert all(batch.quarantined.empty for batch in batches)
    rows = pd.concat([batch.rows for batch in batches], ignore_index=True)
    truth = pd.read_csv(city / "truth.csv", dtype=str, keep_default_na=False)
    assert set(rows["event"]) == {"registered"}
    assert rows["record_id"].is_unique

    # Every notice with a number names a person who died, registered the day or the day after.
    numbered = rows[rows["id_number"].notna()]
    people = truth.set_index("id_number").loc[numbered["id_number"]]
    assert (people["died_on"] != "").all()
    died = pd.to_datetime(people["died_on"]).to_numpy()
    lag = (numbered["registered_on"].to_numpy() - died) / pd.Timedelta(days=1)
    assert set(lag.tolist()) <= {0.0, 1.0}
    assert (people["registry_notice"] == "true").all()

    # Identification as a registry has it: mostly a number, some without; a few partial dates.
    assert 0.01 < rows["id_number"].isna().mean() < 0.12
    lengths = rows["died_on"].str.len().value_counts()
    assert lengths[10] > 0.9 * len(rows) and lengths.get(7, 0) + lengths.get(4, 0) > 0

    # About the configured share of the deaths that get any record (none has no record).
    dead = truth[truth["died_on"] != ""]
    notified = dead["registry_notice"] == "true"
    assert notified.sum() == len(rows)
    recorded = dead["death_record"].isin(["cremation", "deregistration", "both", "hospital_only"])
    assert 0.45 < notified[recorded].mean() < 0.75
    assert (truth.loc[truth["died_on"] == "", "registry_notice"] == "false").all()


def test_the_registry_draws_from_its_own_stream(
    city: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deaths, "NOTICE_SHARE", 0.3)
    simulate_city(persons=PERSONS, start=START, days=DAYS, seed=5, out=tmp_path)
    before, after = _digests(city), _digests(tmp_path)
    assert set(before) == set(after)
    changed = {name for name in before if before[name] != after[name]}
    # Only the registry's deliveries and the truth's column of who was notified change.
    assert changed - {"truth.csv"} <= {n for n in before if n.startswith("registry_notice/")}
    old = pd.read_csv(city / "truth.csv", dtype=str, keep_default_na=False)
    new = pd.read_csv(tmp_path / "truth.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(
        old.drop(columns="registry_notice"), new.drop(columns="registry_notice")
    )
    assert (new["registry_notice"] == "true").sum() < (old["registry_notice"] == "true").sum()
