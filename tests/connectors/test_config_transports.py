"""Transport settings in config/sources.toml: parsed, validated, turned into transports."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import (
    ConfigError,
    HttpSettings,
    HttpTransport,
    SourceConfig,
    SqlSettings,
    SqlTransport,
    load_source_configs,
    make_transport,
    parse_source_configs,
)
from tests.connectors.test_conformance import connector_for
from tests.connectors.test_mapping import SHIPPED_SOURCES

SOURCES_TOML = Path(__file__).resolve().parents[2] / "config" / "sources.toml"


def parse(data: dict[str, Any]) -> dict[str, SourceConfig]:
    return parse_source_configs(data)


def documented_example() -> dict[str, Any]:
    """Return the commented transport example of config/sources.toml, parsed."""
    lines = SOURCES_TOML.read_text(encoding="utf-8").splitlines()
    start = lines.index("# --- example: transports") + 1
    end = lines.index("# --- end example")
    return tomllib.loads("\n".join(line.removeprefix("#").strip() for line in lines[start:end]))


def test_every_source_defaults_to_files() -> None:
    configs = load_source_configs(SOURCES_TOML)
    assert set(configs) == SHIPPED_SOURCES
    for config in configs.values():
        assert config.transport == "files"
        assert config.sql is None and config.http is None
        assert make_transport(config, secrets={}) is None
    assert SourceConfig(name="transit").transport == "files"


def test_the_documented_example_parses() -> None:
    configs = parse(documented_example())
    medical, face = configs["medical"], configs["face"]
    assert medical.transport == "sql"
    assert medical.sql == SqlSettings(
        table="insurance.settlements",
        cursor_column="settled_at",
        url_secret="medical_db_url",
        batch_rows=50_000,
    )
    assert face.transport == "http"
    assert face.http == HttpSettings(
        url="https://face.example.gov.cn/api/v1/results",
        page_size=500,
        cursor_param="after",
        records_key="items",
        next_cursor_key="next",
        token_secret="face_api_token",
        max_retries=5,
        backoff_s=1.0,
        timeout_s=20.0,
    )


def test_sql_defaults_and_the_cursor_under_its_delivered_name() -> None:
    configs = parse(
        {
            "transit": {"transport": "sql", "sql": {"url": "sqlite:///x.db", "table": "taps"}},
            "medical": {
                "transport": "sql",
                "rename": {"就诊时间": "visit_at"},
                "sql": {"url": "sqlite:///x.db", "table": "visits"},
            },
            "registry": {"transport": "sql", "sql": {"url": "sqlite:///x.db", "table": "roll"}},
        }
    )
    transit = configs["transit"].sql
    assert transit is not None
    assert transit.cursor_column == "tapped_at" and transit.batch_rows == 100_000
    assert configs["medical"].sql is not None
    assert configs["medical"].sql.cursor_column == "就诊时间"
    assert configs["registry"].sql is not None
    assert configs["registry"].sql.cursor_column is None  # a snapshot, read whole


def test_http_defaults() -> None:
    configs = parse({"face": {"transport": "http", "http": {"url": "https://h/x"}}})
    assert configs["face"].http == HttpSettings(url="https://h/x")


def test_a_transport_table_may_wait_while_files_are_used() -> None:
    configs = parse({"face": {"http": {"url": "https://h/x"}}})
    assert configs["face"].transport == "files" and configs["face"].http is not None
    assert make_transport(configs["face"], secrets={}) is None


SQL_OK = {"url": "sqlite:///x.db", "table": "t"}
HTTP_OK = {"url": "https://h/x"}


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"transport": "ftp"}, r"\[medical\.transport\] 'ftp' is not one of files, sql, http"),
        ({"transport": "sql"}, r"\[medical\.transport\] 'sql' needs a \[medical\.sql\] table"),
        ({"transport": "http"}, r"\[medical\.transport\] 'http' needs a \[medical\.http\] table"),
        ({"sql": "sqlite://"}, r"\[medical\.sql\] must be a table"),
        ({"sql": {"table": "t"}}, r"\[medical\.sql\] url: give exactly one of url and url_secret"),
        ({"sql": dict(SQL_OK, url_secret="s")}, r"\[medical\.sql\] url: give exactly one"),
        ({"sql": {"url": "sqlite:///x.db"}}, r"\[medical\.sql\] table: is required"),
        ({"sql": dict(SQL_OK, table="")}, r"\[medical\.sql\] table: must be a non-empty string"),
        ({"sql": dict(SQL_OK, batch_rows=0)}, r"\[medical\.sql\] batch_rows: must be at least 1"),
        ({"sql": dict(SQL_OK, batch_rows="9")}, r"\[medical\.sql\] batch_rows: must be an integer"),
        ({"sql": dict(SQL_OK, batch_rows=True)}, r"\[medical\.sql\] batch_rows: must be an int"),
        ({"sql": dict(SQL_OK, cursor_column=3)}, r"\[medical\.sql\] cursor_column: must be a non"),
        ({"sql": dict(SQL_OK, port=5432)}, r"\[medical\.sql\] port: unknown key; allowed keys"),
        ({"sql": dict(SQL_OK, password="x")}, r"\[medical\.sql\] password: unknown key.*never"),
        ({"http": {}}, r"\[medical\.http\] url: is required"),
        ({"http": {"url": "ftp://h/x"}}, r"\[medical\.http\] url: 'ftp://h/x' is not an http"),
        ({"http": dict(HTTP_OK, page_size=0)}, r"\[medical\.http\] page_size: must be at least 1"),
        ({"http": dict(HTTP_OK, max_retries=-1)}, r"\[medical\.http\] max_retries: must be at"),
        ({"http": dict(HTTP_OK, backoff_s=-0.5)}, r"\[medical\.http\] backoff_s: must be at"),
        ({"http": dict(HTTP_OK, backoff_s="1s")}, r"\[medical\.http\] backoff_s: must be a number"),
        ({"http": dict(HTTP_OK, timeout_s=0)}, r"\[medical\.http\] timeout_s: must be at least"),
        ({"http": dict(HTTP_OK, records_key="")}, r"\[medical\.http\] records_key: must be a non"),
        ({"http": dict(HTTP_OK, token="abc")}, r"\[medical\.http\] token: unknown key.*never put"),
        ({"http": dict(HTTP_OK, token_secret=1)}, r"\[medical\.http\] token_secret: must be a"),
    ],
)
def test_bad_values_name_the_source_and_key(table: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse({"medical": table})
    assert info.value.source == "medical"


def test_an_invalid_sql_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError, match=r"\[medical\.sql\] url: is not a SQLAlchemy URL") as e:
        parse({"medical": {"sql": {"url": "pass:w0rd-not-a-url", "table": "t"}}})
    assert "w0rd" not in str(e.value)
    assert e.value.key == "sql.url"


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text('[face]\ntransport = "http"\n[face.http]\nurl = "https://h"\npage_size = -1\n')
    with pytest.raises(ConfigError) as info:
        load_source_configs(path)
    assert str(info.value).startswith(f"{path}: [face.http] page_size")


# ------------------------------------------------------------------------ make_transport


def test_make_sql_transport_resolves_the_url_secret() -> None:
    configs = parse(documented_example())
    url = "postgresql+psycopg://reader:pw@db/medical"
    sql = make_transport(configs["medical"], secrets={"medical_db_url": url})
    assert isinstance(sql, SqlTransport)
    assert (sql.url, sql.table, sql.cursor_column, sql.batch_rows) == (
        url,
        "insurance.settlements",
        "settled_at",
        50_000,
    )
    assert "pw" not in sql.origin


def test_make_sql_transport_from_a_plain_url() -> None:
    configs = parse({"transit": {"transport": "sql", "sql": SQL_OK}})
    sql = make_transport(configs["transit"], secrets={})
    assert isinstance(sql, SqlTransport) and sql.url == "sqlite:///x.db"


def test_make_http_transport_sends_the_injected_token() -> None:
    configs = parse(documented_example())
    http = make_transport(configs["face"], secrets={"face_api_token": "T0KEN"})
    assert isinstance(http, HttpTransport)
    assert (http.page_size, http.cursor_param, http.records_key) == (500, "after", "items")
    assert (http.max_retries, http.backoff_s, http.timeout_s) == (5, 1.0, 20.0)
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"items": [], "next": None})

    http.client = httpx.Client(transport=httpx.MockTransport(handler))
    assert list(http.pull(connector_for("face"), watermark=None).batches) == []
    assert seen == ["Bearer T0KEN"]


@pytest.mark.parametrize("secrets", [{}, {"face_api_token": ""}, {"other": "leak-me"}])
def test_make_transport_with_a_missing_secret_fails_clearly(secrets: dict[str, str]) -> None:
    configs = parse(documented_example())
    with pytest.raises(ConfigError) as info:
        make_transport(configs["face"], secrets=secrets)
    message = str(info.value)
    assert message.startswith("[face.http] token_secret: secret 'face_api_token' is not set")
    assert "leak-me" not in message
    assert (info.value.source, info.value.key) == ("face", "http.token_secret")


def test_make_transport_with_a_missing_url_secret_fails_clearly() -> None:
    configs = parse(documented_example())
    with pytest.raises(ConfigError, match=r"\[medical\.sql\] url_secret: secret 'medical_db_url'"):
        make_transport(configs["medical"], secrets={})


def test_make_transport_refuses_a_transport_without_its_settings() -> None:
    with pytest.raises(ConfigError, match=r"\[face\.transport\] 'http' needs a \[face\.http\]"):
        make_transport(SourceConfig(name="face", transport="http"), secrets={})
    with pytest.raises(ConfigError, match=r"\[face\.transport\] 'sql' needs a \[face\.sql\]"):
        make_transport(SourceConfig(name="face", transport="sql"), secrets={})
