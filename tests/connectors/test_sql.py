"""The SQL transport, on SQLite and PostgreSQL: same rows as files, incremental, quarantine."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from connectors import (
    SOURCES,
    Batch,
    Connector,
    FatalError,
    MissingColumns,
    RetriableError,
    SourceConfig,
    SqlTransport,
    get_connector,
)
from connectors.transport import text_column
from tests.connectors.test_conformance import (
    SAMPLES,
    collect,
    connector_for,
    read_all,
    write_delivery,
)

POSTGRES_URL = os.environ.get(
    "LIVENESS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
LOCAL = dt.timezone(dt.timedelta(hours=8))

# (backend, how values are stored): text as a CSV carries it, typed columns, aware timestamps
VARIANTS = [
    ("sqlite", "text"),
    ("sqlite", "typed"),
    ("postgresql", "text"),
    ("postgresql", "typed"),
    ("postgresql", "typed_tz"),
]


@pytest.fixture(scope="module")
def _postgres_engine() -> Iterator[sa.Engine | None]:
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.connect():
            pass
    except OperationalError as error:
        engine.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable on CI: {error}")
        yield None
        return
    yield engine
    engine.dispose()


@pytest.fixture
def db(
    request: pytest.FixtureRequest, tmp_path: Path, _postgres_engine: sa.Engine | None
) -> Iterator[tuple[str, sa.Engine]]:
    """Give (url, engine) of a database on the requested backend ("sqlite" by default)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.sqlite'}"
        engine = sa.create_engine(url)
        yield url, engine
        engine.dispose()
        return
    if _postgres_engine is None:
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable (CI not set)")
    yield POSTGRES_URL, _postgres_engine


@pytest.fixture
def make_table(db: tuple[str, sa.Engine]) -> Iterator[Callable[..., str]]:
    """Give a function creating a uniquely named table of rows; every table is dropped after."""
    _, engine = db
    metadata = sa.MetaData()

    def create(rows: list[dict[str, Any]], types: dict[str, sa.types.TypeEngine[Any]]) -> str:
        name = f"lv_sql_{uuid.uuid4().hex[:12]}"
        table = sa.Table(name, metadata, *(sa.Column(c, t) for c, t in types.items()))
        table.create(engine)
        insert_rows(engine, name, rows, types)
        return name

    yield create
    metadata.drop_all(engine)


def insert_rows(
    engine: sa.Engine,
    name: str,
    rows: list[dict[str, Any]],
    types: dict[str, sa.types.TypeEngine[Any]],
) -> None:
    table = sa.Table(name, sa.MetaData(), *(sa.Column(c, t) for c, t in types.items()))
    if rows:
        with engine.begin() as conn:
            conn.execute(table.insert(), [{c: r.get(c) for c in types} for r in rows])


def stored(source: str, variant: str, backend: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return SAMPLES[source] as database values with column types, per storage variant."""
    spec = SOURCES[source]
    names = list(dict.fromkeys(k for row in SAMPLES[source] for k in row))
    if variant == "text":
        return [dict(r) for r in SAMPLES[source]], {n: sa.Text() for n in names}
    types: dict[str, Any] = {}
    for n in names:
        kind = spec.column(n).kind
        types[n] = {
            "date": sa.Date(),
            "timestamp": sa.DateTime(timezone=variant == "typed_tz"),
            "bool": sa.Boolean(),
            # SQLite has no decimal type (and SQLAlchemy warns about Decimal there)
            "decimal": sa.Numeric(14, 4) if backend == "postgresql" else sa.Float(),
        }.get(kind, sa.Text())
    rows = []
    for raw in SAMPLES[source]:
        row: dict[str, Any] = {}
        for n, text in raw.items():
            kind = spec.column(n).kind
            row[n] = typed_value(kind, text, aware=variant == "typed_tz", backend=backend)
        rows.append(row)
    return rows, types


def typed_value(kind: str, text: str, *, aware: bool, backend: str) -> Any:
    if kind not in ("date", "timestamp", "bool", "decimal"):
        return text
    if not text.strip():
        return None
    if kind == "date":
        return dt.datetime.strptime(text.replace("-", ""), "%Y%m%d").date()
    if kind == "bool":
        return text.lower() in ("true", "1", "yes")
    if kind == "decimal":
        return Decimal(text) if backend == "postgresql" else float(text)
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=LOCAL)  # SOURCES.md: no offset means Asia/Shanghai
    # a naive database timestamp holds local time
    return value if aware else value.astimezone(LOCAL).replace(tzinfo=None)


def transport(db: tuple[str, sa.Engine], table: str, **options: Any) -> SqlTransport:
    url, engine = db
    options.setdefault("cursor_column", "tapped_at")
    return SqlTransport(url=url, table=table, engine=engine, **options)


# --------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize(
    ("db", "variant"), VARIANTS, indirect=["db"], ids=[f"{b}-{v}" for b, v in VARIANTS]
)
def test_sql_loads_the_same_rows_as_files(
    tmp_path: Path,
    db: tuple[str, sa.Engine],
    make_table: Callable[..., str],
    variant: str,
    source: str,
) -> None:
    backend = sa.make_url(db[0]).get_backend_name()
    rows, types = stored(source, variant, backend)
    name = make_table(rows, types)
    connector = connector_for(source)
    expected = read_all(connector, write_delivery(tmp_path / "ref", SAMPLES[source], "csv"))

    cursor = SOURCES[source].cursor
    got = collect(transport(db, name, cursor_column=cursor).pull(connector, watermark=None))

    assert got.quarantined.empty, got.quarantined.to_dict("records")
    assert got.rows_read == len(rows)
    pd.testing.assert_frame_equal(
        got.rows.drop(columns="_line"), expected.rows.drop(columns="_line")
    )
    assert got.rows["_line"].tolist() == list(range(1, len(rows) + 1))


# --------------------------------------------------------------------------- incremental

T0 = dt.datetime(2025, 1, 1, 8, 0, 0)
TRANSIT_TYPES: dict[str, Any] = {
    "record_id": sa.Text(),
    "card_no": sa.Text(),
    "tapped_at": sa.DateTime(),
    "city_code": sa.Text(),
    "face_match": sa.Boolean(),
}


def taps(ids: list[str], minutes: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "record_id": i,
            "card_no": "C1",
            "tapped_at": T0 + dt.timedelta(minutes=m),
            "city_code": "330702",
            "face_match": True,
        }
        for i, m in zip(ids, minutes, strict=True)
    ]


BOTH = pytest.mark.parametrize("db", ["sqlite", "postgresql"], indirect=True)


@BOTH
def test_incremental_pull_reads_only_rows_from_the_watermark_on(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    name = make_table(taps(["a", "b", "c"], [0, 1, 2]), TRANSIT_TYPES)
    connector = connector_for("transit")
    sql = transport(db, name)

    first = sql.pull(connector, watermark=None)
    assert first.watermark is None
    got = collect(first)
    assert got.rows["record_id"].tolist() == ["a", "b", "c"]
    mark = first.watermark
    assert mark is not None
    assert dt.datetime.fromisoformat(mark) == T0 + dt.timedelta(minutes=2)

    # "c2" ties the watermark but was committed after the first pull; "d" is newer
    insert_rows(db[1], name, taps(["d", "c2"], [5, 2]), TRANSIT_TYPES)
    second = sql.pull(connector, watermark=mark)
    got = collect(second)
    # >=: the row at the watermark is read again (the domain drops it), the tie is not lost
    assert got.rows["record_id"].tolist() == ["c", "c2", "d"]
    assert second.watermark is not None
    assert dt.datetime.fromisoformat(second.watermark) == T0 + dt.timedelta(minutes=5)

    third = sql.pull(connector, watermark=second.watermark)
    assert collect(third).rows["record_id"].tolist() == ["d"]
    assert third.watermark == second.watermark


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_watermark_of_aware_timestamps_round_trips(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    types = dict(TRANSIT_TYPES, tapped_at=sa.DateTime(timezone=True))
    rows = taps(["a", "b"], [0, 1])
    for row in rows:
        row["tapped_at"] = row["tapped_at"].replace(tzinfo=LOCAL)
    name = make_table(rows, types)
    pull = transport(db, name).pull(connector_for("transit"), watermark=None)
    collect(pull)
    assert pull.watermark == "2025-01-01T00:01:00Z"
    again = collect(transport(db, name).pull(connector_for("transit"), watermark=pull.watermark))
    assert again.rows["record_id"].tolist() == ["b"]


@BOTH
def test_batches_respect_batch_rows_and_watermark_follows_consumption(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    name = make_table(taps(list("abcde"), [0, 1, 2, 3, 4]), TRANSIT_TYPES)
    pull = transport(db, name, batch_rows=2).pull(
        connector_for("transit"), watermark="2024-12-31T00:00:00"
    )
    assert pull.watermark == "2024-12-31T00:00:00"
    sizes, marks, lines = [], [], []
    for batch in pull.batches:
        sizes.append(len(batch.rows))
        lines += batch.rows["_line"].tolist()
        assert pull.watermark is not None
        marks.append(dt.datetime.fromisoformat(pull.watermark).minute)
    assert sizes == [2, 2, 1]
    assert marks == [1, 3, 4]  # the last cursor of each batch, once it is handed over
    assert lines == [1, 2, 3, 4, 5]


@BOTH
def test_snapshot_source_without_cursor_reads_everything_each_time(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    rows = list(reversed(SAMPLES["registry"]))
    name = make_table(rows, {n: sa.Text() for n in SAMPLES["registry"][0]})
    sql = transport(db, name, cursor_column=None)
    for _ in range(2):
        pull = sql.pull(connector_for("registry"), watermark=None)
        got = collect(pull)
        assert got.rows["person_ref"].tolist() == ["P1", "P2"]  # ordered by the key
        assert pull.watermark is None


# ---------------------------------------------------------------------- bad rows, errors


@BOTH
def test_bad_values_are_quarantined_with_the_row_as_json(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    rows: list[dict[str, str | None]] = [
        {"record_id": "a", "card_no": "C1", "tapped_at": "2025-01-01 08:00:00",
         "city_code": "330702", "mode": "bus", "note": "x"},
        {"record_id": "b", "card_no": "C1", "tapped_at": "2025-01-01 09:00:00",
         "city_code": "330702", "mode": "plane", "note": None},
        {"record_id": "c", "card_no": "C1", "tapped_at": "2025-01-01 10:00:00",
         "city_code": None, "mode": "metro", "note": "引号\""},
        {"record_id": "d", "card_no": "C1", "tapped_at": "2025-13-45 10:00:00",
         "city_code": "330702", "mode": "bus", "note": None},
    ]  # fmt: skip
    name = make_table(rows, {k: sa.Text() for k in rows[0]})
    pull = transport(db, name).pull(connector_for("transit"), watermark=None)
    got = collect(pull)

    assert got.rows["record_id"].tolist() == ["a"]
    assert json.loads(got.rows["_extra"].iloc[0]) == {"note": "x"}
    assert got.rows_read == 4
    q = got.quarantined
    assert q["line"].tolist() == [2, 3, 4]
    assert [json.loads(r) for r in q["raw"]] == rows[1:]
    assert "'plane'" in q["reason"].iloc[0] and "mode" in q["reason"].iloc[0]
    assert "missing required value in city_code" in q["reason"].iloc[1]
    assert "tapped_at" in q["reason"].iloc[2]
    # compact JSON, as delivered
    assert q["raw"].iloc[0].startswith('{"record_id":"b","card_no":"C1"')
    # the unparsable timestamp sorts last as text but does not become the watermark
    assert pull.watermark == "2025-01-01 10:00:00"


@BOTH
def test_null_cursor_rows_are_quarantined_once_and_not_reread(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    rows = taps(["a", "b"], [0, 1])
    rows[0]["tapped_at"] = None
    name = make_table(rows, TRANSIT_TYPES)
    sql = transport(db, name)
    first = sql.pull(connector_for("transit"), watermark=None)
    got = collect(first)
    assert got.rows["record_id"].tolist() == ["b"]
    assert got.quarantined["reason"].str.contains("missing required value in tapped_at").all()
    assert first.watermark is not None
    assert collect(sql.pull(connector_for("transit"), watermark=first.watermark)).rows[
        "record_id"
    ].tolist() == ["b"]


@BOTH
def test_missing_required_column_is_refused_naming_it(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    types = {k: v for k, v in TRANSIT_TYPES.items() if k != "city_code"}
    name = make_table([], types)
    sql = transport(db, name)
    with pytest.raises(MissingColumns, match="city_code") as info:
        list(sql.pull(connector_for("transit"), watermark=None).batches)
    assert info.value.columns == ("city_code",)
    assert f"sql:{name}@" in str(info.value)


@BOTH
def test_renamed_delivered_columns_map_and_cursor_uses_the_delivered_name(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    rows = [
        {"流水号": "m2", "证件号码": "11010519491231002X", "就诊时间": T0 + dt.timedelta(hours=1),
         "机构": "H1", "类别": "11"},
        {"流水号": "m1", "证件号码": "11010519491231002X", "就诊时间": T0,
         "机构": "H1", "类别": "21"},
    ]  # fmt: skip
    types = {k: sa.Text() for k in rows[0]} | {"就诊时间": sa.DateTime()}
    name = make_table(rows, types)
    config = SourceConfig(
        name="medical",
        rename={"流水号": "record_id", "证件号码": "id_number", "就诊时间": "visit_at",
                "机构": "institution_code", "类别": "visit_type"},
        value_maps={"visit_type": {"11": "outpatient", "21": "inpatient_admission"}},
    )  # fmt: skip
    connector = get_connector("medical", {"medical": config})
    got = collect(transport(db, name, cursor_column="就诊时间").pull(connector, watermark=None))
    assert got.quarantined.empty, got.quarantined.to_dict("records")
    assert got.rows["record_id"].tolist() == ["m1", "m2"]
    assert got.rows["visit_type"].tolist() == ["inpatient_admission", "outpatient"]
    assert got.rows["visit_at"].iloc[0] == pd.Timestamp("2025-01-01 00:00", tz="UTC")


def test_missing_table_is_fatal(db: tuple[str, sa.Engine]) -> None:
    sql = transport(db, "no_such_table")
    with pytest.raises(FatalError, match="'no_such_table' does not exist"):
        list(sql.pull(connector_for("transit"), watermark=None).batches)


def test_missing_cursor_column_is_fatal(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    name = make_table([], TRANSIT_TYPES)
    with pytest.raises(FatalError, match="cursor column 'updated_at'"):
        list(
            transport(db, name, cursor_column="updated_at")
            .pull(connector_for("transit"), watermark=None)
            .batches
        )


def test_missing_sqlite_file_is_fatal_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.sqlite"
    sql = SqlTransport(url=f"sqlite:///{path}", table="t", cursor_column="tapped_at")
    with pytest.raises(FatalError, match="does not exist"):
        list(sql.pull(connector_for("transit"), watermark=None).batches)
    assert not path.exists()


def test_unreachable_database_is_retriable_and_hides_the_password() -> None:
    url = "postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/test?connect_timeout=2"
    sql = SqlTransport(url=url, table="t", cursor_column="tapped_at")
    assert "s3cret-pw" not in sql.origin and "127.0.0.1:1/test" in sql.origin
    with pytest.raises(RetriableError) as info:
        list(sql.pull(connector_for("transit"), watermark=None).batches)
    assert info.value.retriable
    assert "s3cret-pw" not in str(info.value)
    assert str(info.value).startswith("sql:t@postgresql+psycopg://postgres:***@127.0.0.1:1/test")


def test_own_engine_is_created_and_disposed_per_pull(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    name = make_table(taps(["a"], [0]), TRANSIT_TYPES)
    sql = SqlTransport(url=db[0], table=name, cursor_column="tapped_at")
    assert collect(sql.pull(connector_for("transit"), watermark=None)).rows_read == 1


def test_batch_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_rows"):
        SqlTransport(url="sqlite://", table="t", cursor_column=None, batch_rows=0)


# ---------------------------------------------------------------------- values as text


def test_values_become_the_text_a_file_would_carry() -> None:
    aware = dt.datetime(2025, 1, 1, 8, 0, tzinfo=LOCAL)
    cases: list[tuple[list[Any], list[str | None]]] = [
        ([True, False, None], ["true", "false", None]),
        ([dt.datetime(2025, 1, 1, 8), None], ["2025-01-01T08:00:00", None]),
        ([dt.datetime(2025, 1, 1, 8), dt.datetime(2025, 1, 1, 8, 0, 0, 5)],
         ["2025-01-01T08:00:00.000000", "2025-01-01T08:00:00.000005"]),
        ([aware, None], ["2025-01-01T00:00:00Z", None]),
        ([dt.date(2025, 1, 2)], ["2025-01-02"]),
        ([Decimal("12.30"), Decimal("1.5")], ["12.30", "1.50"]),
        ([3, None], ["3", None]),
        ([0.1], ["0.1"]),
        ([None, None], [None, None]),
        # mixed types (SQLite) and huge integers take the per-value path
        ([1, "a", 2.5], ["1", "a", "2.5"]),
        ([2**70], [str(2**70)]),
        ([{"a": 1}, [1, 2]], ['{"a":1}', "[1,2]"]),
        ([b"abc", b"\xff"], ["abc", "ff"]),
    ]  # fmt: skip
    for values, expected in cases:
        assert text_column(values).to_pylist() == expected, values
    assert text_column(pa.array(["x"], pa.large_string())).type == pa.string()


def test_connector_never_sees_a_typed_column(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    seen: list[pa.Schema] = []
    connector = connector_for("transit")
    original = Connector.read_chunks

    def spy(self: Connector, chunks: Any, *, batch_rows: int) -> Iterator[Batch]:
        for chunk in chunks:
            seen.append(chunk.table.schema)
            yield from original(self, [chunk], batch_rows=batch_rows)

    name = make_table(taps(["a"], [0]), TRANSIT_TYPES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Connector, "read_chunks", spy)
        collect(transport(db, name).pull(connector, watermark=None))
    assert seen and all(t == pa.string() for s in seen for t in s.types)


@BOTH
def test_closing_a_pull_early_releases_its_connection(
    db: tuple[str, sa.Engine], make_table: Callable[..., str]
) -> None:
    name = make_table(taps(list("abcde"), [0, 1, 2, 3, 4]), TRANSIT_TYPES)
    engine = db[1]
    before = engine.pool.checkedout()  # type: ignore[attr-defined]
    with transport(db, name, batch_rows=2).pull(connector_for("transit"), watermark=None) as pull:
        first = next(pull.batches)
        assert len(first.rows) == 2
        assert engine.pool.checkedout() == before + 1  # type: ignore[attr-defined]
    assert engine.pool.checkedout() == before  # type: ignore[attr-defined]
    assert pull.watermark is not None
    assert dt.datetime.fromisoformat(pull.watermark).minute == 1
