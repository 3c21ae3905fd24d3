"""Containers, encodings and broken rows."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import MissingColumns, UndecodableFile, UnreadableFile
from tests.connectors.test_conformance import SAMPLES, connector_for, read_all, write_delivery

HEADER = "record_id,id_number,name,deregistered_on,reason"
GOOD = "d1,11010519491231002X,张三,2025-01-10,death"


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_utf8_with_bom_loads(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", f"{HEADER}\n{GOOD}\n", "utf-8-sig")
    got = read_all(connector_for("deregistration"), path)
    assert got.rows["record_id"].tolist() == ["d1"]
    assert got.rows["name"].tolist() == ["张三"]


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "jsonl"])
def test_gb18030_loads_when_configured(tmp_path: Path, fmt: str) -> None:
    path = write_delivery(tmp_path / "c", SAMPLES["cremation"], fmt, encoding="gb18030")
    got = read_all(connector_for("cremation"), path, encoding="gb18030")
    assert got.rows["name"].tolist() == ["张三", "王五"]
    assert got.rows["funeral_home"].iloc[0] == "金华殡仪馆"


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "jsonl"])
def test_gb18030_read_as_utf8_is_refused_with_offset(tmp_path: Path, fmt: str) -> None:
    path = write_delivery(tmp_path / "c", SAMPLES["cremation"], fmt, encoding="gb18030")
    raw = gzip.decompress(path.read_bytes()) if fmt.endswith("gz") else path.read_bytes()
    offset = next(i for i, b in enumerate(raw) if b >= 0x80)
    connector = connector_for("cremation")
    with pytest.raises(UndecodableFile) as info:
        list(connector.read(path, encoding="utf-8"))
    assert info.value.offset == offset
    assert str(path) in str(info.value)
    assert "utf-8" in str(info.value) and f"byte offset {offset}" in str(info.value)


def test_undecodable_byte_far_into_a_file_refuses_it_whole(tmp_path: Path) -> None:
    # the bad byte sits past the first reading block: no batch may have left before the error
    lines = [HEADER] + [f"d{i},,某{i},2025-01-10,death" for i in range(300_000)]
    body = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "d.csv"
    path.write_bytes(body + b"dX,,\xff\xfe,2025-01-10,death\n")
    batches = []
    with pytest.raises(UndecodableFile) as info:
        for batch in connector_for("deregistration").read(path, batch_rows=1000):
            batches.append(batch)
    assert batches == []
    assert info.value.offset == len(body) + 4


def test_missing_required_column_refuses_naming_it(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "record_id,id_number,name,reason\nd1,,张三,death\n")
    with pytest.raises(MissingColumns, match="deregistered_on") as info:
        list(connector_for("deregistration").read(path))
    assert info.value.columns == ("deregistered_on",)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_missing_required_column_refused_in_other_containers(tmp_path: Path, fmt: str) -> None:
    rows = [{k: v for k, v in SAMPLES["transit"][0].items() if k != "tapped_at"}]
    path = write_delivery(tmp_path / "t", rows, fmt)
    with pytest.raises(MissingColumns, match="tapped_at"):
        list(connector_for("transit").read(path))


def test_malformed_rows_are_quarantined_while_good_rows_load(tmp_path: Path) -> None:
    text = "\n".join(
        [
            HEADER,
            GOOD,
            "d2,,李四,2025-01-11",  # too few fields
            "",  # blank line: not a record
            'd3,,"王\n五",2025-01-12,death',  # quoted newline: the record spans lines 5-6
            "d4,,赵六,2025-01-13,death,extra",  # too many fields
            "d5,,孙七,2025-02-30,death",  # impossible date
            "d6,,周八,2025-01-14,abroad",
        ]
    )
    path = _write(tmp_path / "d.csv", text + "\n")
    got = read_all(connector_for("deregistration"), path)
    assert got.rows["record_id"].tolist() == ["d1", "d3", "d6"]
    assert got.rows["_line"].tolist() == [2, 5, 9]
    q = got.quarantined
    assert q["line"].tolist() == [3, 7, 8]
    assert q["raw"].tolist()[:2] == ["d2,,李四,2025-01-11", "d4,,赵六,2025-01-13,death,extra"]
    assert "wrong number of fields: expected 5, found 4" in q["reason"].iloc[0]
    assert q["reason"].iloc[2] == "bad date value in deregistered_on: '2025-02-30'"
    assert got.rows_read == 6


def test_extra_columns_are_kept_as_json(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", f'{HEADER},note,"x ""y"""\n{GOOD},a "b"\\c,\n')
    got = read_all(connector_for("deregistration"), path)
    assert got.rows["_extra"].iloc[0] == '{"note": "a \\"b\\"\\\\c", "x \\"y\\"": ""}'
    plain = read_all(
        connector_for("deregistration"), _write(tmp_path / "p.csv", f"{HEADER}\n{GOOD}\n")
    )
    assert plain.rows["_extra"].isna().all()


def test_jsonl_bad_lines_quarantined(tmp_path: Path) -> None:
    good = (
        '{"record_id": "d1", "id_number": null, "name": "张三", '
        '"deregistered_on": "2025-01-10", "reason": "death"}'
    )
    path = _write(tmp_path / "d.jsonl", f"{good}\n{{not json\n\n[1, 2]\n{good}\n")
    got = read_all(connector_for("deregistration"), path)
    assert got.rows["_line"].tolist() == [1, 5]
    assert got.quarantined["line"].tolist() == [2, 4]
    assert got.quarantined["raw"].tolist() == ["{not json", "[1, 2]"]
    assert got.rows_read == 4


def test_typed_parquet_columns_load(tmp_path: Path) -> None:
    table = pa.table(
        {
            "record_id": ["x1", "x2"],
            "card_no": pa.array([123, 456], pa.int64()),
            "txn_at": pa.array([0, 3_600_000_000], pa.timestamp("us")),
            "channel": ["atm", "online"],
            "amount": pa.array([1.5, None], pa.float64()),
            "correction": pa.array([True, None]),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    got = read_all(connector_for("card_txn"), tmp_path / "t.parquet")
    assert got.rows["card_no"].tolist() == ["123", "456"]
    # a naive Parquet timestamp is local time too
    assert str(got.rows["txn_at"].iloc[0]) == "1969-12-31 16:00:00+00:00"
    assert got.rows["amount"].iloc[0] == 1.5 and got.rows["amount"].isna().iloc[1]
    assert got.rows["correction"].tolist()[0] is True


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("d.csv", b"", "not a readable CSV"),
        ("d.csv.gz", b"\x1f\x8b\x08\x00garbage", "cannot read"),
        ("d.parquet", b"PAR1 not really", "not a readable Parquet"),
        ("d.xlsx", b"PK", "cannot tell the format"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFile, match=match):
        list(connector_for("deregistration").read(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="no such file"):
        list(connector_for("deregistration").read(tmp_path / "nope.csv"))


def test_batches_respect_batch_rows(tmp_path: Path) -> None:
    lines = [HEADER] + [f"d{i},,某,2025-01-10,death" for i in range(25)] + ["bad"]
    path = _write(tmp_path / "d.csv", "\n".join(lines) + "\n")
    batches = list(connector_for("deregistration").read(path, batch_rows=10))
    assert all(len(b.rows) <= 10 for b in batches)
    assert sum(len(b.rows) for b in batches) == 25
    assert sum(b.rows_read for b in batches) == 26
    assert all(b.rows_read == len(b.rows) + len(b.quarantined) for b in batches)


_field = st.text(alphabet=st.sampled_from([*'ab1-:," \n', "张", "\r"]), max_size=8)
_row = st.one_of(
    st.just(GOOD),
    st.lists(_field, min_size=1, max_size=7).map(",".join),
    st.lists(_field, min_size=5, max_size=5).map(",".join),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(_row, max_size=12))
def test_random_malformed_rows_never_crash_and_counts_add_up(
    tmp_path: Path, rows: list[str]
) -> None:
    path = _write(tmp_path / "d.csv", "\n".join([HEADER, *rows]) + "\n")
    try:
        batches = list(connector_for("deregistration").read(path, batch_rows=3))
    except UnreadableFile:
        return  # e.g. an unterminated quote swallowing the rest of the file is refused cleanly
    for b in batches:
        assert b.rows_read == len(b.rows) + len(b.quarantined)
        assert b.quarantined["reason"].notna().all()
        assert (b.quarantined["line"] >= 2).all() and (b.rows["_line"] >= 2).all()
    lines = [int(x) for b in batches for x in (*b.rows["_line"], *b.quarantined["line"])]
    assert len(lines) == len(set(lines))
    if not any('"' in r for r in rows):  # an open quote may legitimately swallow later rows
        assert sum(r == GOOD for r in rows) <= sum(len(b.rows) for b in batches)
