"""One conformance suite over every source x container: same delivery, same rows."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import SOURCES, Batch, Connector, Pull, SourceConfig, get_connector

ID_A = "11010519491231002X"
ID_B = "330702198001011237"  # wrong check character: kept, status bad_check
ID_15 = "110105491231002"

# Two reference-format rows per source; every value is text, as a CSV would carry it.
SAMPLES: dict[str, list[dict[str, str]]] = {
    "registry": [
        {"person_ref": "P1", "id_number": ID_A, "name": "张三", "sex": "男",
         "birth_date": "1949-12-31", "benefit_type": "enterprise_pension",
         "monthly_amount": "3120.50", "benefit_start": "20091231", "bank_account": "6222",
         "phone": "", "region_code": "330702", "grid_code": "G-01", "status": "active",
         "last_certified_on": "2024-06-01"},
        {"person_ref": "P2", "id_number": ID_15, "name": "李四", "sex": "2",
         "birth_date": "19491231", "benefit_type": "survivor_pension",
         "monthly_amount": "800", "benefit_start": "2010-01-01", "bank_account": "",
         "phone": "138", "region_code": "330702", "grid_code": "G-02", "status": "suspended",
         "last_certified_on": ""},
    ],
    "cards": [
        {"card_no": "C1", "card_kind": "transit_senior", "id_number": ID_A,
         "issued_on": "2020-01-01", "cancelled_on": ""},
        {"card_no": "C2", "card_kind": "citizen", "id_number": ID_B,
         "issued_on": "2021-02-03", "cancelled_on": "2024-01-01"},
    ],
    "transit": [
        {"record_id": "t1", "card_no": "C1", "tapped_at": "2025-01-01 08:00:00",
         "city_code": "330702", "mode": "bus", "line": "K1", "station": "火车站",
         "face_match": "true", "correction": ""},
        {"record_id": "t2", "card_no": "C2", "tapped_at": "2025-01-01T08:00:00+00:00",
         "city_code": "330702", "mode": "", "line": "", "station": "", "face_match": "",
         "correction": "1"},
    ],
    "card_txn": [
        {"record_id": "x1", "card_no": "C1", "txn_at": "2025-03-01T12:30:00+08:00",
         "channel": "pos_pin", "merchant_category": "5411", "amount": "12.30",
         "city_code": "330702"},
        {"record_id": "x2", "card_no": "C2", "txn_at": "2025-03-02 00:00:00",
         "channel": "auto_debit", "merchant_category": "", "amount": "", "city_code": ""},
    ],
    "medical": [
        {"record_id": "m1", "id_number": ID_A, "name": "张三", "visit_at": "2025-02-01 09:00:00",
         "institution_code": "H1", "visit_type": "outpatient", "discharge_outcome": "",
         "city_code": "330702"},
        {"record_id": "m2", "id_number": ID_B, "name": "", "visit_at": "2025-02-03T10:00:00Z",
         "institution_code": "H2", "visit_type": "inpatient_discharge",
         "discharge_outcome": "deceased", "city_code": ""},
    ],
    "cremation": [
        {"record_id": "c1", "id_number": ID_A, "name": "张三", "sex": "M",
         "birth_date": "1949-12-31", "died_on": "2025-01-05", "cremated_on": "2025-01-08",
         "funeral_home": "金华殡仪馆", "region_code": "330702"},
        {"record_id": "c2", "id_number": "", "name": "王五", "sex": "女", "birth_date": "",
         "died_on": "20250106", "cremated_on": "20250109", "funeral_home": "",
         "region_code": ""},
    ],
    "deregistration": [
        {"record_id": "d1", "id_number": ID_A, "name": "张三", "deregistered_on": "2025-01-10",
         "reason": "death", "died_on": "2025-01-05", "new_id_number": ""},
        {"record_id": "d2", "id_number": ID_15, "name": "李四", "deregistered_on": "2025-01-11",
         "reason": "duplicate", "died_on": "", "new_id_number": ID_A},
    ],
    "registry_notice": [
        {"record_id": "N1", "event": "registered", "id_number": ID_A, "name": "张三",
         "sex": "M", "birth_date": "1949-12-31", "region_code": "330702",
         "died_on": "2025-01-05", "registered_on": "2025-01-06"},
        {"record_id": "N2", "event": "Corrected", "id_number": "", "name": "王五", "sex": "",
         "birth_date": "", "region_code": "", "died_on": "2024-12",
         "registered_on": "20250107"},
    ],
    "face": [
        {"record_id": "f1", "id_number": ID_A, "verified_at": "2025-04-01 10:00:00",
         "result": "pass", "channel": "app", "score": "0.93", "request_id": "R1",
         "face_id": "FACE1", "correction": "false"},
        {"record_id": "f2", "id_number": ID_B, "verified_at": "2025-04-02T10:00:00+08:00",
         "result": "no_face", "channel": "", "score": "", "request_id": "", "face_id": ""},
    ],
}  # fmt: skip

FORMATS = ("csv", "csv.gz", "parquet", "jsonl")


def _columns(rows: list[dict[str, str]]) -> list[str]:
    names: list[str] = []
    for row in rows:
        names += [k for k in row if k not in names]
    return names


def write_delivery(
    path: Path, rows: list[dict[str, str]], fmt: str, encoding: str = "utf-8"
) -> Path:
    """Write reference-format rows as a delivery in the given container."""
    names = _columns(rows)
    if fmt in ("csv", "csv.gz"):
        target = path.with_suffix("." + fmt)
        opener = gzip.open if fmt == "csv.gz" else open
        with opener(target, "wt", encoding=encoding, newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=names, restval="")
            writer.writeheader()
            writer.writerows(rows)
        return target
    if fmt == "parquet":
        target = path.with_suffix(".parquet")
        table = pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})
        pq.write_table(table, target)
        return target
    target = path.with_suffix(".jsonl")
    with open(target, "w", encoding=encoding) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target


def concatenated(batches: Iterable[Batch]) -> Batch:
    """Return batches as one; no batch at all gives empty frames."""
    batches = list(batches)
    if not batches:
        return Batch(pd.DataFrame(), pd.DataFrame(), 0)
    rows = pd.concat([b.rows for b in batches], ignore_index=True)
    quarantined = pd.concat([b.quarantined for b in batches], ignore_index=True)
    return Batch(rows, quarantined, sum(b.rows_read for b in batches))


def read_all(connector: Connector, path: Path, **options: object) -> Batch:
    """Read a delivery and concatenate its batches."""
    return concatenated(connector.read(path, **options))  # type: ignore[arg-type]


def collect(pull: Pull) -> Batch:
    """Read a SQL or HTTP pull to its end and concatenate its batches."""
    return concatenated(pull.batches)


def connector_for(name: str) -> Connector:
    """Return a connector with the default (reference format, UTF-8) configuration."""
    return get_connector(name, {name: SourceConfig(name=name)})


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_format_loads_the_same_rows(tmp_path: Path, source: str, fmt: str) -> None:
    rows = SAMPLES[source]
    connector = connector_for(source)
    reference = read_all(connector, write_delivery(tmp_path / "ref", rows, "csv"))
    got = read_all(connector, write_delivery(tmp_path / "delivery", rows, fmt))

    assert got.quarantined.empty, got.quarantined.to_dict("records")
    assert got.rows_read == len(rows) == len(got.rows)
    pd.testing.assert_frame_equal(
        got.rows.drop(columns="_line"), reference.rows.drop(columns="_line")
    )
    # physical lines: a header is line 1 in CSV; JSON Lines has no header
    first = 1 if fmt == "jsonl" else 2
    assert got.rows["_line"].tolist() == list(range(first, first + len(rows)))


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_rows_have_the_reference_schema(tmp_path: Path, source: str) -> None:
    spec = SOURCES[source]
    batch = read_all(connector_for(source), write_delivery(tmp_path / "d", SAMPLES[source], "csv"))
    expected: list[str] = []
    for col in spec.columns:
        expected.append(col.name)
        if col.kind == "id_number":
            expected.append(f"{col.name}_status")
    assert list(batch.rows.columns) == [*expected, "_line", "_extra"]
    kinds = {c.name: c.kind for c in spec.columns}
    for name, kind in kinds.items():
        dtype = batch.rows[name].dtype
        if kind == "date":
            assert str(dtype) == "datetime64[us]", name
        elif kind == "timestamp":
            assert str(dtype) == "datetime64[us, UTC]", name
        elif kind == "bool":
            assert dtype == pd.BooleanDtype(), name
        elif kind == "decimal":
            assert dtype == "float64", name
        elif kind == "money":
            # yuan exact to the fen: never a float
            assert dtype == pd.ArrowDtype(pa.decimal128(18, 2)), name
        else:
            assert dtype == pd.StringDtype("pyarrow"), name
    assert str(batch.rows["_line"].dtype) == "int64"


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_connector_declares_name_key_cursor(source: str) -> None:
    spec = SOURCES[source]
    connector = connector_for(source)
    assert connector.name == source
    assert connector.key == spec.key and connector.key
    assert set(connector.key) <= set(spec.required_columns)
    if connector.cursor is not None:
        assert spec.column(connector.cursor).kind in ("date", "timestamp")
    if "event" in spec.column_names:
        # a registry's events correct and withdraw records themselves
        assert spec.column("event").values == ("registered", "corrected", "voided")
    elif "record_id" in spec.column_names:
        assert spec.column("correction").kind == "bool"


def test_normalised_values(tmp_path: Path) -> None:
    reg = read_all(
        connector_for("registry"), write_delivery(tmp_path / "r", SAMPLES["registry"], "csv")
    )
    rows = reg.rows
    assert rows["sex"].tolist() == ["M", "F"]
    assert rows["id_number"].tolist() == [ID_A, ID_A]
    assert rows["id_number_status"].tolist() == ["valid", "upgraded"]
    assert rows["monthly_amount"].tolist() == [Decimal("3120.50"), Decimal("800.00")]
    assert rows["birth_date"].tolist() == [pd.Timestamp("1949-12-31")] * 2
    assert rows["phone"].isna().tolist() == [True, False]

    cards = read_all(
        connector_for("cards"), write_delivery(tmp_path / "c", SAMPLES["cards"], "csv")
    )
    assert cards.rows["id_number_status"].tolist() == ["valid", "bad_check"]
    assert cards.rows["id_number"].tolist() == [ID_A, ID_B]

    crem = read_all(
        connector_for("cremation"), write_delivery(tmp_path / "k", SAMPLES["cremation"], "csv")
    )
    # a blank number does not stop a cremation record: name, sex and birth date identify it
    assert crem.quarantined.empty
    assert crem.rows["id_number_status"].tolist() == ["valid", "missing"]

    notices = read_all(
        connector_for("registry_notice"),
        write_delivery(tmp_path / "n", SAMPLES["registry_notice"], "csv"),
    )
    # a date of death known to the month stays so; a notice without a number still loads
    assert notices.quarantined.empty
    assert notices.rows["died_on"].tolist() == ["2025-01-05", "2024-12"]
    assert notices.rows["event"].tolist() == ["registered", "corrected"]
    assert notices.rows["id_number_status"].tolist() == ["valid", "missing"]
    assert notices.rows["registered_on"].tolist() == [
        pd.Timestamp("2025-01-06"),
        pd.Timestamp("2025-01-07"),
    ]
    assert crem.rows["sex"].tolist() == ["M", "F"]


def test_blank_required_id_number_is_quarantined_where_it_is_the_only_identity(
    tmp_path: Path,
) -> None:
    rows = [dict(SAMPLES["face"][0]), dict(SAMPLES["face"][1], id_number="  ")]
    got = read_all(connector_for("face"), write_delivery(tmp_path / "f", rows, "csv"))
    assert len(got.rows) == 1
    assert got.quarantined["line"].tolist() == [3]
    assert "missing required value in id_number" in got.quarantined["reason"].iloc[0]


def test_get_connector_unknown_source_lists_known() -> None:
    from connectors import ConnectorError

    with pytest.raises(ConnectorError, match="known sources: registry, cards"):
        get_connector("tax", {})
