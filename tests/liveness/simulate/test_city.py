"""One realistic year of a 20k-person city, checked against its own truth file."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stdnum.cn import ric

from liveness.simulate import SimulationSummary, annual_death_probability, simulate_city
from liveness.simulate.city import _streams
from liveness.simulate.population import build_population

START = date(2025, 1, 1)
DAYS = 365
PERSONS = 20_000


def checksum_ok(number: str) -> bool:
    """Check the MOD 11-2 character with python-stdnum as the oracle.

    stdnum's full validation also wants the region code to have existed in the birth year,
    which real numbers of people born before 1985 do not satisfy either.
    """
    ascii17 = number[:17].isascii() and number[:17].isdigit()
    return len(number) == 18 and ascii17 and ric.calc_check_digit(number) == number[17]


COLUMNS = {
    "registry": [
        "person_ref", "id_number", "name", "sex", "birth_date", "benefit_type", "monthly_amount",
        "benefit_start", "bank_account", "phone", "address", "region_code", "grid_code", "status",
        "last_certified_on",
    ],
    "cards": ["card_no", "card_kind", "id_number", "issued_on", "cancelled_on"],
    "transit": [
        "record_id", "card_no", "tapped_at", "city_code", "mode", "line", "station", "face_match",
    ],
    "card_txn": [
        "record_id", "card_no", "txn_at", "channel", "merchant_category", "amount", "city_code",
    ],
    "medical": [
        "record_id", "id_number", "name", "visit_at", "institution_code", "visit_type",
        "discharge_outcome", "city_code",
    ],
    "cremation": [
        "record_id", "id_number", "name", "sex", "birth_date", "died_on", "cremated_on",
        "funeral_home", "region_code",
    ],
    "deregistration": [
        "record_id", "id_number", "name", "deregistered_on", "reason", "died_on", "new_id_number",
    ],
    "face": [
        "record_id", "id_number", "verified_at", "result", "channel", "score", "request_id",
        "face_id",
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationSummary, Path]:
    out = tmp_path_factory.mktemp("city")
    summary = simulate_city(persons=PERSONS, start=START, days=DAYS, seed=7, out=out)
    return summary, out


def read(out: Path, source: str, *, resend: bool = False) -> pd.DataFrame:
    encoding = "gb18030" if source == "cremation" else "utf-8"
    frames = []
    for path in sorted((out / source).glob("*.csv")):
        if path.name.endswith(".resend.csv") and not resend:
            continue
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
        frame["_file"] = path.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def truth(city: tuple[SimulationSummary, Path]) -> pd.DataFrame:
    return pd.read_csv(city[1] / "truth.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def anomalies(city: tuple[SimulationSummary, Path]) -> dict[str, object]:
    result: dict[str, object] = json.loads((city[1] / "anomalies.json").read_text("utf-8"))
    return result


@pytest.fixture(scope="module")
def frames(city: tuple[SimulationSummary, Path]) -> dict[str, pd.DataFrame]:
    out = city[1]
    result = {s: read(out, s) for s in COLUMNS if s not in ("registry", "cards")}
    result["registry"] = pd.read_csv(
        out / "registry/registry.csv", dtype=str, keep_default_na=False
    )
    result["cards"] = pd.read_csv(out / "cards/cards.csv", dtype=str, keep_default_na=False)
    return result


@pytest.fixture(scope="module")
def card_owner(frames: dict[str, pd.DataFrame], truth: pd.DataFrame) -> pd.Series:
    by_id = truth.set_index("id_number")["person_ref"]
    cards = frames["cards"]
    return pd.Series(by_id.loc[cards["id_number"]].to_numpy(), index=cards["card_no"])


def test_layout_and_summary(city: tuple[SimulationSummary, Path]) -> None:
    summary, out = city
    assert summary.persons == PERSONS
    files = [p for p in out.rglob("*") if p.is_file()]
    assert summary.files == len(files)
    assert len(list((out / "transit").glob("transit_????????.csv"))) == DAYS
    assert len(list((out / "card_txn").glob("card_txn_*.csv"))) == DAYS
    for source in ("medical", "cremation", "deregistration", "face"):
        assert len(list((out / source).glob("*.csv"))) == 12
    assert (out / "transit/transit_20250702.resend.csv").exists()
    # About 100 traces per person-year.
    assert 70 * PERSONS < summary.traces < 140 * PERSONS


def test_columns_and_encodings(city: tuple[SimulationSummary, Path]) -> None:
    out = city[1]
    for source, columns in COLUMNS.items():
        for path in sorted((out / source).glob("*.csv")):
            raw = path.read_bytes()
            assert not raw.startswith(b"\xef\xbb\xbf")
            if source == "cremation":
                with pytest.raises(UnicodeDecodeError):
                    raw.decode("utf-8")
                assert "殡仪馆" in raw.decode("gb18030")
            else:
                raw.decode("utf-8")
            encoding = "gb18030" if source == "cremation" else "utf-8"
            assert list(pd.read_csv(path, nrows=0, encoding=encoding).columns) == columns


def test_record_ids_unique_except_planted(
    frames: dict[str, pd.DataFrame], anomalies: dict[str, object]
) -> None:
    for source in ("transit", "medical", "cremation", "deregistration", "face"):
        assert frames[source]["record_id"].is_unique, source
    card = frames["card_txn"]
    duplicated = card[card["record_id"].duplicated(keep=False)]
    repeated = anomalies["repeated_rows"]
    assert isinstance(repeated, list) and len(repeated) == 1
    assert 40 <= len(repeated[0]["record_ids"]) <= 50
    assert set(duplicated["record_id"]) == set(repeated[0]["record_ids"])
    # The repeated rows are identical copies, not new records under old ids.
    assert len(duplicated.drop(columns="_file").drop_duplicates()) == len(repeated[0]["record_ids"])


def test_resend_is_identical(city: tuple[SimulationSummary, Path], anomalies: dict) -> None:
    (entry,) = anomalies["redelivered_files"]
    folder = city[1] / entry["source"]
    assert (folder / entry["file"]).read_bytes() == (folder / entry["original"]).read_bytes()


def test_rows_are_in_time_order(frames: dict[str, pd.DataFrame]) -> None:
    for source, column in (
        ("transit", "tapped_at"),
        ("medical", "visit_at"),
        ("face", "verified_at"),
    ):
        frame = frames[source]
        for _, part in frame.groupby("_file"):
            stamps = pd.to_datetime(part[column], format="%Y-%m-%d %H:%M:%S", errors="coerce")
            good = part[stamps.notna()]
            assert good[column].is_monotonic_increasing
            assert good["record_id"].is_monotonic_increasing


def test_identity_numbers_valid_and_unique(frames: dict[str, pd.DataFrame]) -> None:
    registry = frames["registry"]
    assert registry["id_number"].is_unique
    assert registry["id_number"].map(checksum_ok).all()
    assert all(ric.get_birth_date(x) for x in registry["id_number"].iloc[:1000])
    sex_digit = registry["id_number"].str[16].astype(int)
    assert ((sex_digit % 2 == 1) == (registry["sex"] == "M")).all()
    assert (registry["id_number"].str[6:14] == registry["birth_date"].str.replace("-", "")).all()
    assert registry["person_ref"].str.fullmatch(r"P\d{7}").all()
    assert registry["phone"].replace("", np.nan).dropna().str.fullmatch(r"1\d{10}").all()
    assert registry["monthly_amount"].str.fullmatch(r"\d+\.\d\d").all()


def test_population_shape(truth: pd.DataFrame, frames: dict[str, pd.DataFrame]) -> None:
    age = truth["age_at_start"].astype(int)
    assert age.between(60, 100).all()
    counts = age.groupby(age // 10 * 10).size()
    assert counts[60] > counts[70] > counts[80] > counts[90]
    women_old = (truth.loc[age >= 90, "sex"] == "F").mean()
    assert 0.5 < women_old < 0.75
    shares = truth["profile"].value_counts(normalize=True)
    assert shares["active_urban"] == pytest.approx(0.55, abs=0.03)
    types = truth["benefit_type"].value_counts(normalize=True)
    assert types["enterprise_pension"] == pytest.approx(0.55, abs=0.06)
    grids = truth["grid_code"].nunique()
    assert PERSONS / 400 < grids < PERSONS / 200
    assert truth["grid_code"].str.fullmatch(r"3307\d\d-\d{3}-\d{2}").all()


def test_mortality_curve() -> None:
    q = annual_death_probability(np.array([65, 95, 100, 120]))
    assert q[0] == pytest.approx(0.01, rel=0.01)
    assert q[1] == pytest.approx(0.2, rel=0.01)
    assert q[2] > q[1] and q[3] <= 0.5


def test_deaths_per_age_band(truth: pd.DataFrame) -> None:
    age = truth["age_at_start"].astype(int).to_numpy()
    died = (truth["died_on"] != "").to_numpy()
    p = 1 - (1 - annual_death_probability(age)) ** (DAYS / 365)
    for low in (60, 70, 80, 90):
        band = (age >= low) & (age < low + 10 if low < 90 else age <= 100)
        expected = p[band].sum()
        sigma = np.sqrt((p[band] * (1 - p[band])).sum())
        assert abs(died[band].sum() - expected) < 4 * sigma, (low, died[band].sum(), expected)


def test_deaths_per_age_band_large_population() -> None:
    rngs = _streams(3)
    population = build_population(rngs=rngs, persons=200_000, start=START, days=DAYS)
    p = 1 - (1 - annual_death_probability(population.age)) ** (DAYS / 365)
    died = population.died
    for low in (60, 70, 80, 90):
        band = (population.age >= low) & (population.age < low + 10 if low < 90 else True)
        expected = p[band].sum()
        sigma = np.sqrt((p[band] * (1 - p[band])).sum())
        assert abs(died[band].sum() - expected) < 4 * sigma, (low, died[band].sum(), expected)
    day = population.death_day[died]
    assert day.min() >= 0 and day.max() < DAYS


def _last_90_days_traces(
    frames: dict[str, pd.DataFrame], card_owner: pd.Series, truth: pd.DataFrame
) -> set[str]:
    cutoff = "2025-10-03"
    transit = frames["transit"]
    card = frames["card_txn"]
    card = card[card["channel"] != "auto_debit"]
    medical = frames["medical"]
    ids = truth.set_index("id_number")["person_ref"]
    seen = set(card_owner.reindex(transit.loc[transit["tapped_at"] >= cutoff, "card_no"]).dropna())
    seen |= set(card_owner.reindex(card.loc[card["txn_at"] >= cutoff, "card_no"]).dropna())
    seen |= set(ids.reindex(medical.loc[medical["visit_at"] >= cutoff, "id_number"]).dropna())
    return seen


def test_share_of_living_without_traces(
    frames: dict[str, pd.DataFrame], card_owner: pd.Series, truth: pd.DataFrame
) -> None:
    living = truth.loc[truth["died_on"] == "", "person_ref"]
    seen = _last_90_days_traces(frames, card_owner, truth)
    share = 1 - living.isin(seen).mean()
    assert 0.05 <= share <= 0.12, share


def test_death_record_lags(frames: dict[str, pd.DataFrame], truth: pd.DataFrame) -> None:
    crem = frames["cremation"]
    lag = pd.to_datetime(crem["cremated_on"]) - pd.to_datetime(crem["died_on"])
    assert lag.dt.days.between(0, 5).all()
    dereg = frames["deregistration"]
    death = dereg[dereg["reason"] == "death"]
    lag = pd.to_datetime(death["deregistered_on"]) - pd.to_datetime(death["died_on"])
    assert lag.dt.days.between(14, 180).all()
    assert (dereg.loc[dereg["reason"] != "death", "died_on"] == "").all()
    others = dereg[dereg["reason"].isin(["moved_out", "duplicate"])]
    assert len(others) >= 2 and (others["new_id_number"] != "").all()
    assert crem["sex"].isin(["男", "女"]).all()

    dead = truth[truth["died_on"] != ""]
    kinds = dead["death_record"].value_counts()
    assert set(kinds.index) <= {"cremation", "deregistration", "both", "hospital_only", "none"}
    # Home burials in the countryside leave nothing at all, even long after death.
    early = dead[dead["died_on"] < "2025-06-01"]
    no_record = (early["death_record"] == "none").mean()
    assert 0.04 <= no_record <= 0.15, no_record
    assert (
        early.loc[early["death_record"] == "none", "profile"] == "rural_no_transit"
    ).mean() > 0.5


def test_hospital_deaths(frames: dict[str, pd.DataFrame], truth: pd.DataFrame) -> None:
    medical = frames["medical"]
    deceased = medical[medical["discharge_outcome"] == "deceased"]
    assert (deceased["visit_type"] == "inpatient_discharge").all()
    assert len(deceased) > 50
    died_on = truth.set_index("id_number")["died_on"]
    assert (deceased["visit_at"].str[:10] == died_on.loc[deceased["id_number"]].to_numpy()).all()


def test_traces_stop_at_death(
    frames: dict[str, pd.DataFrame],
    card_owner: pd.Series,
    truth: pd.DataFrame,
    anomalies: dict[str, object],
) -> None:
    died_on = truth.loc[truth["died_on"] != ""].set_index("person_ref")["died_on"]

    def after_death(frame: pd.DataFrame, person: pd.Series, when: str) -> pd.DataFrame:
        death = died_on.reindex(person).to_numpy()
        mask = pd.notna(death) & (frame[when].str[:10].to_numpy() > death.astype(str))
        return frame[mask]

    transit = frames["transit"]
    late = after_death(transit, card_owner.reindex(transit["card_no"]), "tapped_at")
    owners = set(card_owner.reindex(late["card_no"]))
    assert owners == set(anomalies["card_used_after_death"])
    assert (late["face_match"] != "true").all()
    assert owners == set(truth.loc[truth["card_used_after_death"] == "true", "person_ref"])
    assert 0.03 < len(owners) / len(died_on) < 0.2

    card = frames["card_txn"]
    late = after_death(card, card_owner.reindex(card["card_no"]), "txn_at")
    assert len(late) > 0 and (late["channel"] == "auto_debit").all()

    medical = frames["medical"]
    ids = truth.set_index("id_number")["person_ref"]
    late = after_death(medical, ids.reindex(medical["id_number"]), "visit_at")
    assert late.empty


def test_cards_reissued(frames: dict[str, pd.DataFrame], card_owner: pd.Series) -> None:
    cards = frames["cards"]
    assert cards["card_no"].is_unique and cards["card_no"].str.fullmatch(r"\d+").all()
    cancelled = cards[cards["cancelled_on"] != ""]
    assert len(cancelled) > 100
    fresh = cards.merge(cancelled, on=["id_number", "card_kind"], suffixes=("", "_old"))
    fresh = fresh[fresh["card_no"] != fresh["card_no_old"]]
    assert (fresh["issued_on"] == fresh["cancelled_on_old"]).all()
    transit = frames["transit"].merge(cards, on="card_no")
    on_old = transit[transit["cancelled_on"] != ""]
    assert len(on_old) > 0 and (on_old["tapped_at"].str[:10] < on_old["cancelled_on"]).all()
    assert (transit["tapped_at"].str[:10] >= transit["issued_on"]).all()


def test_vocabularies(frames: dict[str, pd.DataFrame]) -> None:
    assert set(frames["transit"]["face_match"]) == {"true", "false", ""}
    assert set(frames["face"]["result"]) == {"pass", "fail", "no_liveness", "no_face"}
    assert set(frames["face"]["channel"]) == {"app", "kiosk", "assisted", "proxy"}
    assert set(frames["registry"]["sex"]) == {"M", "F"}
    card = frames["card_txn"]
    assert card.loc[card["amount"] != "", "amount"].str.fullmatch(r"\d+\.\d\d").all()
    share_true = (frames["transit"]["face_match"] == "true").mean()
    assert 0.25 < share_true < 0.45


def test_malformed_rows_listed(
    city: tuple[SimulationSummary, Path], anomalies: dict[str, object]
) -> None:
    malformed = anomalies["malformed_rows"]
    assert isinstance(malformed, dict)
    for source in ("transit", "card_txn", "medical"):
        rows = malformed[source]
        assert 5 <= len(rows) <= 20
        problems = {row["problem"] for row in rows}
        assert {"bad_timestamp", "missing_required", "too_few_fields"} <= problems
        for row in rows:
            lines = (city[1] / source / row["file"]).read_text("utf-8").split("\n")
            fields = lines[row["line"] - 1].split(",")
            header = lines[0].split(",")
            if row["problem"] == "too_few_fields":
                assert len(fields) < len(header)
                continue
            assert len(fields) == len(header)
            value = dict(zip(header, fields, strict=True))
            if row["problem"] == "bad_timestamp":
                stamp = value[
                    {"transit": "tapped_at", "card_txn": "txn_at"}.get(source, "visit_at")
                ]
                with pytest.raises(ValueError):
                    pd.to_datetime(stamp, format="%Y-%m-%d %H:%M:%S")
            elif row["problem"] == "missing_required":
                assert "" in fields[:2]
            elif row["problem"] == "unknown_channel":
                assert value["channel"] not in {
                    "pos_pin", "pos_tap", "counter", "atm", "online", "auto_debit",
                }  # fmt: skip
            elif row["problem"] == "unknown_visit_type":
                assert value["visit_type"] not in {
                    "outpatient", "emergency", "inpatient_admission", "inpatient_discharge",
                    "pharmacy", "home_care",
                }  # fmt: skip


def test_silent_card_txn(city: tuple[SimulationSummary, Path], anomalies: dict) -> None:
    silent = anomalies["silent"]
    assert silent["source"] == "card_txn"
    assert silent["days"] == [f"2025-12-{d}" for d in range(12, 17)]
    for day in silent["days"]:
        path = city[1] / "card_txn" / f"card_txn_{day.replace('-', '')}.csv"
        assert path.read_text("utf-8").count("\n") == 1


def test_identity_anomalies(frames: dict[str, pd.DataFrame], anomalies: dict) -> None:
    ids = frames["medical"]["id_number"]
    rows = len(ids)
    legacy = ids.str.fullmatch(r"[0-9]{15}")
    fullwidth = ids.str.contains("[０-９]")
    lower = ids.str.endswith("x")
    ascii18 = ids.str.fullmatch(r"[0-9]{17}[0-9X]")
    bad = ascii18 & ~ids.where(ascii18, "").map(checksum_ok)
    assert legacy.sum() == anomalies["legacy_15_digit_rows_by_source"]["medical"]
    assert fullwidth.sum() == anomalies["fullwidth_rows"]
    assert bad.sum() == anomalies["bad_check_rows"]
    assert lower.sum() == anomalies["lowercase_x_rows"] > 0
    assert 0.015 < legacy.mean() < 0.025
    assert 0.007 < fullwidth.mean() < 0.013
    assert 0.003 < bad.mean() < 0.007
    assert rows > 100_000
    dereg = frames["deregistration"]
    assert dereg["id_number"].str.fullmatch(r"[0-9]{15}").sum() > 0


def test_death_records_with_bad_ids(frames: dict[str, pd.DataFrame], anomalies: dict) -> None:
    crem = frames["cremation"]
    assert (crem["id_number"] == "").sum() == len(anomalies["cremation_blank_id"]) > 0
    blank = crem[crem["id_number"] == ""]
    assert (blank["name"] != "").all() and (blank["birth_date"] != "").all()
    wrong = crem["id_number"].map(lambda x: x != "" and not checksum_ok(x))
    assert wrong.sum() == len(anomalies["cremation_wrong_id"]) > 0


def test_wrongly_reported_dead(
    frames: dict[str, pd.DataFrame], truth: pd.DataFrame, anomalies: dict
) -> None:
    wrong = anomalies["wrongly_reported_dead"]
    assert 2 <= len(wrong) <= 6
    people = truth.set_index("person_ref").loc[wrong]
    assert (people["died_on"] == "").all()
    assert (people["wrongly_reported_dead"] == "true").all()
    deaths = pd.concat(
        [
            frames["cremation"][["id_number", "name"]],
            frames["deregistration"].loc[
                frames["deregistration"]["reason"] == "death", ["id_number", "name"]
            ],
        ]
    )
    for ref, person in people.iterrows():
        records = deaths[deaths["id_number"] == person["id_number"]]
        assert len(records) == 1, ref
        assert records["name"].iloc[0] != person["name"]
