"""Values are checked against the contract and the policy: each bad value quarantines its row."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import Batch, ConfigError, Connector, get_connector, parse_source_configs
from connectors.config import load_source_configs

REPO = Path(__file__).resolve().parents[2]
CONFIGS = load_source_configs(REPO / "config" / "sources.toml")
RULES = CONFIGS["registry"].validation
# A fixed arrival, so that "after the arrival" is the same whenever the tests run.
ARRIVED = dt.datetime(2026, 6, 15, 4, 0, tzinfo=dt.UTC)  # 12:00 in Asia/Shanghai
ARRIVED_DAY = dt.date(2026, 6, 15)


def connector(source: str) -> Connector:
    return get_connector(source, CONFIGS, arrived_at=ARRIVED)


def read_rows(source: str, rows: list[dict[str, str]], tmp_path: Path) -> Batch:
    """Read reference-format rows as a CSV delivery; return its one batch."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=names, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / f"{source}.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    batches = list(connector(source).read(path, encoding="utf-8"))
    return Batch(
        pd.concat([b.rows for b in batches], ignore_index=True),
        pd.concat([b.quarantined for b in batches], ignore_index=True),
        sum(b.rows_read for b in batches),
    )


def test_the_shipped_policy_numbers() -> None:
    assert RULES.earliest == dt.date(1900, 1, 1)
    assert RULES.future_allowance == dt.timedelta(minutes=60)
    assert RULES.ceilings["monthly_amount"] == Decimal("50000.00")
    assert dict(RULES.minimum_age) == {
        "enterprise_pension": 45, "institution_pension": 45, "resident_pension": 60,
        "work_injury_long_term": 16, "survivor_pension": 0, "unemployment": 16,
    }  # fmt: skip


# ---------------------------------------------------------------- the roll, by property

PERSON = {
    "person_ref": "P1", "id_number": "330702194501011230", "name": "张三", "sex": "M",
    "birth_date": "1945-01-01", "benefit_type": "enterprise_pension",
    "monthly_amount": "3000.00", "benefit_start": "2005-01-01", "region_code": "330702",
    "grid_code": "G1", "status": "active", "last_certified_on": "2024-06-01",
}  # fmt: skip

GOOD_AMOUNT = st.builds(
    lambda yuan, fen, zeros: f"{yuan}.{fen:02d}{'0' * zeros}",
    st.integers(1, 49_999), st.integers(0, 99), st.integers(0, 2),
) | st.integers(1, 50_000).map(str)  # fmt: skip
BAD_AMOUNT = st.one_of(
    st.builds(lambda y, f: f"{y}.{f:03d}", st.integers(0, 49_999), st.integers(1, 999).filter(
        lambda f: f % 10 != 0)),  # a third decimal: never rounded away
    st.integers(0, 10**6).map(lambda y: f"-{y}.00"),
    st.just("0"), st.just("0.00"),
    st.integers(50_001, 10**14).map(lambda y: f"{y}.00"),
    st.just("99999999999.99"),
)  # fmt: skip
DAY = st.dates(dt.date(1900, 1, 1), dt.date(2026, 6, 15))
FUTURE_DAY = st.dates(dt.date(2026, 6, 16), dt.date(2200, 1, 1))
ANCIENT_DAY = st.dates(dt.date(1000, 1, 1), dt.date(1899, 12, 31))


@st.composite
def roll_rows(draw: st.DrawFn) -> tuple[dict[str, str], set[str]]:
    """Draw a roll row and the fields it gets wrong (empty: a valid row)."""
    wrong: set[str] = set()
    row = dict(PERSON)
    benefit = draw(st.sampled_from(sorted(RULES.minimum_age)))
    row["benefit_type"] = benefit
    youngest = RULES.minimum_age[benefit]
    latest_birth = dt.date(ARRIVED_DAY.year - youngest, ARRIVED_DAY.month, ARRIVED_DAY.day)
    kind = draw(st.sampled_from(["ok", "future", "ancient", "young", "start"]))
    if kind == "ok":
        birth = draw(st.dates(dt.date(1900, 1, 1), latest_birth))
    elif kind == "future":
        birth, wrong = draw(FUTURE_DAY), wrong | {"birth_date"}
    elif kind == "ancient":
        birth, wrong = draw(ANCIENT_DAY), wrong | {"birth_date"}
    elif kind == "young" and youngest > 0:
        birth = draw(st.dates(latest_birth + dt.timedelta(days=1), ARRIVED_DAY))
        wrong |= {"birth_date"}
    else:
        birth = draw(st.dates(dt.date(1900, 1, 2), latest_birth))
    row["birth_date"] = birth.isoformat()
    first = max(birth, dt.date(1900, 1, 1))
    start = draw(st.dates(first, max(first, dt.date(2030, 1, 1))))
    if kind == "start" and birth > dt.date(1900, 1, 1):
        start = draw(st.dates(dt.date(1900, 1, 1), birth - dt.timedelta(days=1)))
        wrong |= {"benefit_start"}
    row["benefit_start"] = start.isoformat()
    if draw(st.booleans()):
        row["monthly_amount"] = draw(GOOD_AMOUNT)
    else:
        row["monthly_amount"] = draw(BAD_AMOUNT)
        wrong |= {"monthly_amount"}
    if draw(st.booleans()):
        row["last_certified_on"] = draw(st.sampled_from(["", "2024-06-01"]))
    else:
        row["last_certified_on"] = draw(FUTURE_DAY).isoformat()
        wrong |= {"last_certified_on"}
    return row, wrong


@settings(max_examples=300, deadline=None)
@given(drawn=st.lists(roll_rows(), min_size=1, max_size=12))
def test_valid_roll_rows_load_and_each_bad_value_quarantines_naming_its_field(
    drawn: list[tuple[dict[str, str], set[str]]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    rows = [dict(row, person_ref=f"P{k}") for k, (row, _) in enumerate(drawn)]
    batch = read_rows("registry", rows, tmp_path_factory.mktemp("roll"))
    assert batch.rows_read == len(rows)
    loaded = set(batch.rows["person_ref"])
    reasons = dict(zip(batch.quarantined["line"], batch.quarantined["reason"], strict=True))
    for k, (_, wrong) in enumerate(drawn):
        line = k + 2
        if not wrong:
            assert f"P{k}" in loaded, reasons.get(line)
            continue
        assert f"P{k}" not in loaded and line in reasons
        for field in wrong:
            assert field in reasons[line], (field, reasons[line])
    good = batch.rows.set_index("person_ref")["monthly_amount"]
    for k, (row, wrong) in enumerate(drawn):
        if not wrong:
            # exact to the fen, never through a float
            assert good[f"P{k}"] == Decimal(row["monthly_amount"])


# ---------------------------------------------------------------- each rule, by example


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("-3000", "monthly_amount -3000.00 is not positive"),
        ("0.00", "monthly_amount 0.00 is not positive"),
        ("99999999999.99", "monthly_amount 99999999999.99 is above the ceiling of 50000.00 yuan"),
        ("3000.123", "bad money value in monthly_amount: '3000.123'"),
        ("3,000.00", "bad money value in monthly_amount"),
        ("1e3", "bad money value in monthly_amount"),
    ],
)
def test_amounts_are_positive_within_the_ceiling_and_exact_to_the_fen(
    amount: str, reason: str, tmp_path: Path
) -> None:
    batch = read_rows("registry", [dict(PERSON, monthly_amount=amount)], tmp_path)
    assert batch.rows.empty
    assert reason in batch.quarantined["reason"].iloc[0]


def test_a_trailing_zero_past_the_fen_is_exact(tmp_path: Path) -> None:
    batch = read_rows("registry", [dict(PERSON, monthly_amount="3000.120")], tmp_path)
    assert batch.rows["monthly_amount"].tolist() == [Decimal("3000.12")]


def test_typed_amounts_are_checked_as_the_text_they_stand_for(tmp_path: Path) -> None:
    names = list(PERSON)
    table = pa.table(
        {n: pa.array([PERSON[n]] * 4) for n in names if n != "monthly_amount"}
        | {"monthly_amount": pa.array([3000.12, 3000.123, 2500.0, -1.5])}
    )
    path = tmp_path / "registry.parquet"
    pq.write_table(table, path)
    (batch,) = connector("registry").read(path)
    assert batch.rows["monthly_amount"].tolist() == [Decimal("3000.12"), Decimal("2500.00")]
    assert batch.quarantined["line"].tolist() == [3, 5]


@pytest.mark.parametrize(
    ("birth", "benefit", "reason"),
    [
        ("2090-01-01", "enterprise_pension", "birth_date 2090-01-01 is after the delivery arrived"),
        ("1899-12-31", "enterprise_pension", "birth_date 1899-12-31 is before 1900-01-01"),
        ("2023-05-01", "enterprise_pension", "birth_date 2023-05-01 makes the person 3 years "
         "old, younger than the minimum age 45 for enterprise_pension"),
        ("1966-06-16", "resident_pension", "makes the person 59 years old"),
    ],
)  # fmt: skip
def test_birth_dates_are_plausible(birth: str, benefit: str, reason: str, tmp_path: Path) -> None:
    row = dict(PERSON, birth_date=birth, benefit_type=benefit, benefit_start="2025-01-01")
    batch = read_rows("registry", [row], tmp_path)
    assert batch.rows.empty
    assert reason in batch.quarantined["reason"].iloc[0]


def test_the_minimum_age_is_reached_on_the_birthday(tmp_path: Path) -> None:
    rows = [
        dict(PERSON, person_ref="P60", birth_date="1966-06-15", benefit_type="resident_pension"),
        dict(PERSON, person_ref="P0", birth_date="2026-06-15", benefit_type="survivor_pension",
             benefit_start="2026-06-15"),
    ]  # fmt: skip
    batch = read_rows("registry", rows, tmp_path)
    assert batch.quarantined.empty and batch.rows["person_ref"].tolist() == ["P60", "P0"]


def test_a_benefit_may_start_in_the_future_but_not_before_birth(tmp_path: Path) -> None:
    rows = [
        dict(PERSON, person_ref="P1", benefit_start="2026-07-01"),
        dict(PERSON, person_ref="P2", benefit_start="1944-12-31"),
    ]
    batch = read_rows("registry", rows, tmp_path)
    assert batch.rows["person_ref"].tolist() == ["P1"]
    assert (
        "benefit_start 1944-12-31 is before birth_date 1945-01-01"
        in batch.quarantined["reason"].iloc[0]
    )


def test_event_times_are_not_after_the_arrival_beyond_the_allowance(tmp_path: Path) -> None:
    visit = {"record_id": "M1", "id_number": "330702194501011230", "institution_code": "H1",
             "visit_type": "outpatient"}  # fmt: skip
    rows = [
        dict(visit, record_id="ok", visit_at="2026-06-15 12:59:00"),  # within the hour
        dict(visit, record_id="aware", visit_at="2026-06-15T05:00:00Z"),  # 13:00 local
        dict(visit, record_id="late", visit_at="2026-06-15 13:01:00"),
        dict(visit, record_id="2030", visit_at="2030-01-01 09:00:00"),
        dict(visit, record_id="2099", visit_at="2099-05-05T09:00:00+08:00"),
    ]
    batch = read_rows("medical", rows, tmp_path)
    assert batch.rows["record_id"].tolist() == ["ok", "aware"]
    reasons = batch.quarantined["reason"].tolist()
    assert reasons[0] == (
        "visit_at 2026-06-15 13:01 is after the delivery arrived (2026-06-15 12:00 +08:00)"
    )
    assert "visit_at 2030-01-01 09:00" in reasons[1] and "visit_at 2099-05-05 09:00" in reasons[2]


@pytest.mark.parametrize(
    ("source", "row", "reason"),
    [
        ("cards", {"card_no": "C1", "card_kind": "citizen", "id_number": "330702194501011230",
                   "issued_on": "2020-01-02", "cancelled_on": "2020-01-01"},
         "cancelled_on 2020-01-01 is before issued_on 2020-01-02"),
        ("cremation", {"record_id": "R1", "id_number": "", "name": "张三",
                       "died_on": "2025-01-09", "cremated_on": "2025-01-07"},
         "cremated_on 2025-01-07 is before died_on 2025-01-09"),
        ("cremation", {"record_id": "R1", "id_number": "", "name": "张三",
                       "birth_date": "1950-01-01", "died_on": "1949-01-09",
                       "cremated_on": "1949-01-10"},
         "died_on 1949-01-09 is before birth_date 1950-01-01"),
        ("deregistration", {"record_id": "D1", "id_number": "", "name": "张三",
                            "deregistered_on": "2025-01-07", "reason": "death",
                            "died_on": "2025-01-09"},
         "deregistered_on 2025-01-07 is before died_on 2025-01-09"),
        ("face", {"record_id": "F1", "id_number": "330702194501011230",
                  "verified_at": "2025-01-01 08:00:00", "result": "pass", "score": "1.5"},
         "score 1.5 is outside 0..1"),
        ("card_txn", {"record_id": "X1", "card_no": "C1", "txn_at": "2025-01-01 08:00:00",
                      "channel": "atm", "amount": "1000000.01"},
         "amount 1000000.01 is above the ceiling of 1000000.00 yuan"),
        ("cremation", {"record_id": "R1", "id_number": "", "name": "张三",
                       "died_on": "2025-01-05", "cremated_on": "2025-01-07", "voided": "true"},
         "voided=true without correction=true"),
    ],
)  # fmt: skip
def test_rows_keep_their_dates_in_order_and_values_in_range(
    source: str, row: dict[str, str], reason: str, tmp_path: Path
) -> None:
    batch = read_rows(source, [row], tmp_path)
    assert batch.rows.empty
    assert reason in batch.quarantined["reason"].iloc[0]


def test_zero_is_an_amount_for_a_card_use_but_not_for_a_pension(tmp_path: Path) -> None:
    txn = {"record_id": "X1", "card_no": "C1", "txn_at": "2025-01-01 08:00:00", "channel": "atm",
           "amount": "0"}  # fmt: skip
    assert read_rows("card_txn", [txn], tmp_path).quarantined.empty


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=20))
def test_any_amount_text_loads_or_quarantines_never_raises(
    text: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if "\n" in text or "\r" in text or "\x00" in text:
        return
    batch = read_rows("registry", [dict(PERSON, monthly_amount=text)],
                      tmp_path_factory.mktemp("amount"))  # fmt: skip
    assert len(batch.rows) + len(batch.quarantined) == 1
    if len(batch.quarantined):
        assert "monthly_amount" in batch.quarantined["reason"].iloc[0]


# ---------------------------------------------------------------- the policy file


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"ceilings": {"score": 1}}, "[validation.ceilings.score] not a money column"),
        ({"ceilings": {"monthly_amount": "1.234"}}, "at most two decimals"),
        ({"ceilings": {"monthly_amount": -5}}, "must be a positive amount"),
        ({"minimum_age": {"pension": 60}}, "[validation.minimum_age.pension] not a benefit type"),
        ({"minimum_age": {"unemployment": 16.5}}, "must be whole years"),
        ({"future_allowance_minutes": -1}, "must be a whole number >= 0"),
        ({"earliest_date": "1900"}, "must be a date"),
        ({"latest_date": 1}, "unknown key"),
    ],
)
def test_bad_validation_settings_are_named(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_source_configs({"validation": table})
    assert message in str(caught.value)


def test_without_policy_numbers_only_the_contract_is_checked(tmp_path: Path) -> None:
    plain = parse_source_configs({})
    rows = [dict(PERSON, person_ref="P1", monthly_amount="99999999999.99",
                 birth_date="1800-01-01")]  # fmt: skip
    path = tmp_path / "r.csv"
    path.write_text(",".join(PERSON) + "\n" + ",".join(rows[0].values()) + "\n")
    (batch,) = get_connector("registry", plain, arrived_at=ARRIVED).read(path)
    assert batch.quarantined.empty


# ------------------------------------------------------- a registry's partial dates of death


def _notice(died_on: str, **fields: str) -> dict[str, str]:
    return {
        "record_id": "N1", "event": "registered", "id_number": "11010519491231002X",
        "name": "张三", "birth_date": "1949-12-31", "died_on": died_on,
        "registered_on": "2026-06-10", **fields,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("died_on", "stored"),
    [("2026-06-09", "2026-06-09"), ("20260609", "2026-06-09"), ("2026-05", "2026-05"),
     ("202605", "2026-05"), ("2026", "2026"), (" 2026-06 ", "2026-06")],
)  # fmt: skip
def test_a_partial_date_of_death_loads_as_its_text(
    died_on: str, stored: str, tmp_path: Path
) -> None:
    batch = read_rows("registry_notice", [_notice(died_on)], tmp_path)
    assert batch.quarantined.empty, batch.quarantined.to_dict("records")
    assert batch.rows["died_on"].tolist() == [stored]


@pytest.mark.parametrize(
    ("died_on", "fields", "reason"),
    [
        ("2026-13", {}, "bad partial_date value in died_on: '2026-13', expected YYYY-MM-DD,"),
        ("2026-02-30", {}, "bad partial_date value in died_on: '2026-02-30'"),
        ("June 2026", {}, "bad partial_date value in died_on: 'June 2026'"),
        ("", {}, "missing required value in died_on"),
        ("1899-12", {}, "died_on 1899-12 is before 1900-01-01"),
        ("2026-07", {}, "died_on 2026-07 is after the delivery arrived"),
        # known to the month: in order if any day of it is
        ("2026-06", {"registered_on": "2026-05-31"}, "registered_on 2026-05-31 is before died_on"),
        ("1949", {"birth_date": "1950-01-01"}, "died_on 1949-12-31 is before birth_date"),
        ("2026-06-01", {"event": "amended"}, "bad value in event: 'amended'"),
    ],
)
def test_a_bad_partial_date_is_quarantined_naming_the_field(
    died_on: str, fields: dict[str, str], reason: str, tmp_path: Path
) -> None:
    batch = read_rows("registry_notice", [_notice(died_on, **fields)], tmp_path)
    assert batch.rows.empty
    (why,) = batch.quarantined["reason"].tolist()
    assert reason in why, why


def test_a_partial_date_in_order_with_its_neighbours_loads(tmp_path: Path) -> None:
    rows = [
        _notice("2026-06", registered_on="2026-06-01"),
        _notice("1950", birth_date="1950-07-01"),
    ]
    batch = read_rows("registry_notice", rows, tmp_path)
    assert batch.quarantined.empty, batch.quarantined.to_dict("records")
