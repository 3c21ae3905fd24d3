"""Configuration: mapping a deviating department without code; value normalisation."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import (
    SOURCES,
    Batch,
    ConfigError,
    SourceConfig,
    UndecodableFile,
    get_connector,
    load_source_configs,
)
from connectors import files as files_module
from connectors.files import check_encoding
from tests.connectors.test_conformance import connector_for, read_all

REPO = Path(__file__).resolve().parents[2]

DEVIATING = """
[medical]
path = "var/inbox/medical"
encoding = "GB18030"
[medical.rename]
"证件号码" = "id_number"
"就诊时间" = "visit_at"
"机构" = "institution_code"
"类别" = "visit_type"
"流水号" = "record_id"
[medical.date_formats]
visit_at = "%d/%m/%Y %H:%M"
[medical.value_maps.visit_type]
"11" = "outpatient"
"22" = "inpatient_discharge"
[medical.value_maps.discharge_outcome]
"死亡" = "deceased"
"""

# The built-in sources, and the data scenarios the shipped sources.toml declares.
SHIPPED_SOURCES = {
    *SOURCES, "travel", "health_check", "community", "counter", "ltc", "vaccination",
    "remote_medical", "family_doctor",
}  # fmt: skip


def test_shipped_config_covers_every_source() -> None:
    configs = load_source_configs(REPO / "config" / "sources.toml")
    assert set(configs) == SHIPPED_SOURCES
    assert len(SOURCES) == 9
    assert configs["cremation"].encoding == "gb18030"
    assert configs["transit"].path == "var/inbox/transit"
    assert all(not c.rename for c in configs.values())


def test_deviating_department_is_mapped_from_toml(tmp_path: Path) -> None:
    toml = tmp_path / "sources.toml"
    toml.write_text(DEVIATING, encoding="utf-8")
    configs = load_source_configs(toml)
    assert configs["transit"] == SourceConfig(name="transit")  # absent sources get defaults
    csv = (
        "流水号,证件号码,就诊时间,机构,类别,discharge_outcome,医生\n"
        "m1,11010519491231002x,31/01/2025 09:30,H1,11,,王医生\n"
        "m2,110105491231002,01/02/2025 23:00,H1,22,死亡,李医生\n"
        "m3,11010519491231002X,2025-02-02 08:00:00,H1,99,,\n"
    )
    path = tmp_path / "medical.csv"
    path.write_bytes(csv.encode("gb18030"))
    got = read_all(get_connector("medical", configs), path)
    rows = got.rows
    assert rows["record_id"].tolist() == ["m1", "m2"]
    assert rows["id_number"].tolist() == ["11010519491231002X"] * 2
    assert rows["visit_at"].tolist() == [
        pd.Timestamp("2025-01-31 01:30", tz="UTC"),
        pd.Timestamp("2025-02-01 15:00", tz="UTC"),
    ]
    assert rows["visit_type"].tolist() == ["outpatient", "inpatient_discharge"]
    assert rows["discharge_outcome"].tolist()[1] == "deceased"
    assert rows["_extra"].iloc[0] == '{"医生": "王医生"}'
    assert got.quarantined["line"].tolist() == [4]
    assert "bad value in visit_type: '99'" in got.quarantined["reason"].iloc[0]


def test_day_first_date_format(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('[cards.date_formats]\nissued_on = "%d/%m/%Y"\n', encoding="utf-8")
    path = tmp_path / "cards.csv"
    path.write_text(
        "card_no,card_kind,id_number,issued_on\n"
        "C1,citizen,11010519491231002X,03/02/2021\n"
        "C2,citizen,11010519491231002X,2021-02-04\n",
        encoding="utf-8",
    )
    got = read_all(get_connector("cards", load_source_configs(toml)), path)
    assert got.rows["issued_on"].tolist() == [
        pd.Timestamp("2021-02-03"),
        pd.Timestamp("2021-02-04"),
    ]


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("[taxes]\npath='x'\n", r"\[taxes\] unknown source"),
        ("[transit]\npth='x'\n", r"\[transit.pth\] unknown key"),
        ("[transit]\nformat='xlsx'\n", r"\[transit.format\]"),
        ("[transit]\nencoding='latin-1'\n", r"\[transit.encoding\]"),
        ("[transit.rename]\nwhen='tapped_on'\n", r"\[transit.rename.when\] 'tapped_on' is not"),
        ("[transit.rename]\na='card_no'\nb='card_no'\n", r"several columns"),
        ("[transit.date_formats]\ncard_no='%Y'\n", r"\[transit.date_formats.card_no\]"),
        ("[transit.value_maps.nope]\na='b'\n", r"\[transit.value_maps.nope\]"),
        ("[transit\n", "not valid TOML"),
    ],
)
def test_bad_config_names_source_and_key(tmp_path: Path, toml: str, match: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        load_source_configs(path)


def _read_csv(tmp_path: Path, source: str, text: str) -> Batch:
    """Write a UTF-8 CSV delivery of a source and read it with the default configuration."""
    path = tmp_path / f"{source}.csv"
    path.write_text(text, encoding="utf-8")
    return read_all(connector_for(source), path)


def _transit(tmp_path: Path, *stamps: str) -> pd.DataFrame:
    lines = ["record_id,card_no,tapped_at,city_code"]
    lines += [f"t{i},C,{s},330702" for i, s in enumerate(stamps)]
    got = _read_csv(tmp_path, "transit", "\n".join(lines) + "\n")
    assert got.quarantined.empty, got.quarantined.to_dict("records")
    return got.rows


def test_naive_timestamps_are_shanghai_time(tmp_path: Path) -> None:
    rows = _transit(tmp_path, "2025-01-01 08:00:00", "2025-01-01T08:00:00", "2025-01-01T08:00:00.5")
    assert rows["tapped_at"].tolist() == [
        pd.Timestamp("2025-01-01 00:00", tz="UTC"),
        pd.Timestamp("2025-01-01 00:00", tz="UTC"),
        pd.Timestamp("2025-01-01 00:00:00.5", tz="UTC"),
    ]


def test_timestamp_offsets_are_honoured(tmp_path: Path) -> None:
    rows = _transit(
        tmp_path,
        "2025-01-01T08:00:00+08:00",
        "2025-01-01T08:00:00Z",
        "2025-01-01T08:00:00-05:00",
        "2025-01-01 08:00:00+0800",
    )
    assert rows["tapped_at"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2025-01-01 00:00",
        "2025-01-01 08:00",
        "2025-01-01 13:00",
        "2025-01-01 00:00",
    ]


def test_value_kinds(tmp_path: Path) -> None:
    got = _read_csv(
        tmp_path,
        "transit",
        "record_id,card_no,tapped_at,city_code,mode,face_match,correction\n"
        "t1, C1 ,2025-01-01 08:00:00,330702,Bus,是,\n"
        "t2,C2,2025-01-01 08:00:00,330702,metro,F,no\n"
        "t3,C3,2025-01-01 08:00:00,330702,tram,true,\n"
        "t4,,2025-01-01 08:00:00,330702,bus,,\n"
        "t5,C5,,330702,bus,,\n",
    )
    rows = got.rows
    assert rows["card_no"].tolist() == ["C1", "C2"]
    assert rows["mode"].tolist() == ["bus", "metro"]
    assert rows["face_match"].tolist() == [True, False]
    assert rows["correction"].tolist()[1] is False and pd.isna(rows["correction"].iloc[0])
    assert got.quarantined["reason"].tolist() == [
        "bad value in mode (optional column): 'tram', expected one of bus, metro, ferry",
        "missing required value in card_no",
        "missing required value in tapped_at",
    ]


def test_decimal_rejects_non_numbers(tmp_path: Path) -> None:
    got = _read_csv(
        tmp_path,
        "card_txn",
        "record_id,card_no,txn_at,channel,amount\n"
        "x1,C,2025-01-01 08:00:00,atm,12.50\nx2,C,2025-01-01 08:00:00,atm,NaN\n"
        "x3,C,2025-01-01 08:00:00,atm,12元\nx4,C,2025-01-01 08:00:00,atm,-3\n",
    )
    # An amount is money: exact to the fen, and never negative (a card use of no money is 0).
    assert got.rows["amount"].tolist() == [Decimal("12.50")]
    assert got.quarantined["line"].tolist() == [3, 4, 5]
    assert "amount -3.00 is negative" in got.quarantined["reason"].iloc[2]


@settings(max_examples=50, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(["a", "é", "张", "𝄞", "\n"]), max_size=40))
def test_encoding_check_across_block_boundaries(text: str) -> None:
    import tempfile

    for encoding in ("utf-8", "gb18030"):
        with tempfile.NamedTemporaryFile(suffix=".csv") as fh:
            data = text.encode(encoding)
            bad = data + b"\xff" + data
            fh.write(bad)
            fh.flush()
            old = files_module._CHUNK
            files_module._CHUNK = 3  # force characters to straddle reading blocks
            try:
                fh.seek(0)
                Path(fh.name).write_bytes(data)
                check_encoding(Path(fh.name), encoding=encoding)
                Path(fh.name).write_bytes(bad)
                with pytest.raises(UndecodableFile, match=f"byte offset {len(data)} "):
                    check_encoding(Path(fh.name), encoding=encoding)
            finally:
                files_module._CHUNK = old
