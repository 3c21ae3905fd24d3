"""Per-source configuration: where deliveries land and how a department deviates."""

from __future__ import annotations

import codecs
import datetime as dt
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from connectors.errors import ConfigError
from connectors.spec import BENEFIT_TYPES, SOURCES, SourceSpec

if TYPE_CHECKING:  # the transports import connectors.base, which imports this module
    from connectors.http import HttpTransport
    from connectors.sql import SqlTransport

__all__ = [
    "ENCODINGS",
    "FORMATS",
    "TRANSPORTS",
    "HttpSettings",
    "SourceConfig",
    "SqlSettings",
    "Transport",
    "ValidationRules",
    "load_source_configs",
    "make_transport",
    "parse_source_configs",
]

FORMATS = ("csv", "csv.gz", "parquet", "jsonl")
# Canonical codec names (codecs.lookup) of the encodings SOURCES.md allows.
ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "gb18030": "gb18030"}
Transport = Literal["files", "sql", "http"]
TRANSPORTS: tuple[str, ...] = get_args(Transport)
_KEYS = {
    "path",
    "format",
    "encoding",
    "rename",
    "date_formats",
    "value_maps",
    "transport",
    "sql",
    "http",
}
_SQL_KEYS = ("url", "url_secret", "table", "cursor_column", "batch_rows")
_HTTP_KEYS = (
    "url",
    "page_size",
    "cursor_param",
    "limit_param",
    "records_key",
    "next_cursor_key",
    "token_secret",
    "max_retries",
    "backoff_s",
    "timeout_s",
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_VALIDATION_KEYS = ("earliest_date", "future_allowance_minutes", "ceilings", "minimum_age")
# The money columns of every source: the keys [validation.ceilings] may name.
MONEY_COLUMNS = tuple(
    sorted({c.name for spec in SOURCES.values() for c in spec.columns if c.kind == "money"})
)


@dataclass(frozen=True)
class ValidationRules:
    """Hold the policy numbers of the value checks: ``[validation]`` in config/sources.toml.

    An absent number turns its check off: ``earliest`` (no date before it), ``ceilings`` (the
    largest amount of a money column, in yuan), ``minimum_age`` (per benefit type, in whole
    years on the day a roll delivery arrives). ``future_allowance`` is how far after a
    delivery's arrival a date may lie (clock skew, time zones); no date may lie beyond it.
    """

    earliest: dt.date | None = None
    future_allowance: dt.timedelta = dt.timedelta(0)
    ceilings: Mapping[str, Decimal] = field(default_factory=lambda: _EMPTY)
    minimum_age: Mapping[str, int] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class SourceConfig:
    """Hold how one source is delivered: folder, container, encoding and mappings."""

    name: str
    path: str | None = None
    format: str | None = None
    encoding: str = "utf-8"
    rename: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    date_formats: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    value_maps: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: _EMPTY)
    transport: Transport = "files"
    sql: SqlSettings | None = None
    http: HttpSettings | None = None
    validation: ValidationRules = field(default_factory=ValidationRules)


@dataclass(frozen=True)
class SqlSettings:
    """Hold where a source's table is: ``[<source>.sql]``.

    ``url`` or ``url_secret`` (the name of a secret holding the URL, so that a password
    need not sit in the TOML file) names the database. ``cursor_column`` None reads the whole
    table on every pull (a snapshot source such as the registry).
    """

    table: str
    cursor_column: str | None
    url: str | None = None
    url_secret: str | None = None
    batch_rows: int = 100_000


@dataclass(frozen=True)
class HttpSettings:
    """Hold how a source's paged JSON API is called: ``[<source>.http]``."""

    url: str
    page_size: int = 1000
    cursor_param: str = "cursor"
    limit_param: str = "limit"
    records_key: str = "records"
    next_cursor_key: str = "next_cursor"
    token_secret: str | None = None
    max_retries: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 30.0


def canonical_encoding(name: str) -> str | None:
    """Return the canonical name of an allowed encoding, or None if not allowed."""
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    # codecs names utf-8 "utf-8" and the BOM variant "utf-8-sig"
    return ENCODINGS.get(codec)


def parse_source_configs(
    data: Mapping[str, Any], *, path: Path | None = None
) -> dict[str, SourceConfig]:
    """Validate parsed TOML and return a config per source (defaults for absent ones)."""
    unknown = sorted(set(data) - set(SOURCES) - {"validation"})
    if unknown:
        raise ConfigError(
            f"unknown source {unknown[0]!r}; known sources: {', '.join(SOURCES)} "
            "(and the [validation] table)",
            path=path,
            source=unknown[0],
        )
    validation = _parse_validation(data.get("validation", {}), path)
    configs = {}
    for name, spec in SOURCES.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError("must be a table", path=path, source=name)
        configs[name] = _parse_one(spec, table, path, validation)
    return configs


def load_source_configs(path: Path) -> dict[str, SourceConfig]:
    """Load config/sources.toml; every source of SOURCES gets an entry, with defaults."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("source configuration file not found", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from None
    return parse_source_configs(data, path=path)


def _parse_validation(raw: object, path: Path | None) -> ValidationRules:
    """Validate the ``[validation]`` table: dates, minutes, ceilings in yuan, ages in years."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, path=path, source="validation", key=key)

    if not isinstance(raw, Mapping):
        raise ConfigError("must be a table", path=path, source="validation")
    for key in raw:
        if key not in _VALIDATION_KEYS:
            raise fail(key, f"unknown key; allowed keys: {', '.join(_VALIDATION_KEYS)}")
    earliest = raw.get("earliest_date")
    if earliest is not None and (
        not isinstance(earliest, dt.date) or isinstance(earliest, dt.datetime)
    ):
        raise fail("earliest_date", f"must be a date such as 1900-01-01, not {earliest!r}")
    minutes = raw.get("future_allowance_minutes", 0)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 0:
        raise fail("future_allowance_minutes", f"must be a whole number >= 0, not {minutes!r}")
    ceilings_raw = raw.get("ceilings", {})
    if not isinstance(ceilings_raw, Mapping):
        raise fail("ceilings", "must be a table of money column = largest amount in yuan")
    ceilings: dict[str, Decimal] = {}
    for column, value in ceilings_raw.items():
        if column not in MONEY_COLUMNS:
            raise fail(f"ceilings.{column}", f"not a money column; money columns: "
                       f"{', '.join(MONEY_COLUMNS)}")  # fmt: skip
        amount = _yuan(value)
        if amount is None:
            raise fail(f"ceilings.{column}", f"must be a positive amount in yuan with at most "
                       f"two decimals, not {value!r}")  # fmt: skip
        ceilings[column] = amount
    ages_raw = raw.get("minimum_age", {})
    if not isinstance(ages_raw, Mapping):
        raise fail("minimum_age", "must be a table of benefit type = years")
    ages: dict[str, int] = {}
    for benefit, years in ages_raw.items():
        if benefit not in BENEFIT_TYPES:
            raise fail(f"minimum_age.{benefit}", f"not a benefit type; benefit types: "
                       f"{', '.join(BENEFIT_TYPES)}")  # fmt: skip
        if isinstance(years, bool) or not isinstance(years, int) or not 0 <= years <= 150:
            raise fail(f"minimum_age.{benefit}", f"must be whole years 0-150, not {years!r}")
        ages[benefit] = years
    return ValidationRules(
        earliest=earliest,
        future_allowance=dt.timedelta(minutes=minutes),
        ceilings=MappingProxyType(ceilings),
        minimum_age=MappingProxyType(ages),
    )


def _yuan(value: object) -> Decimal | None:
    """Return a positive amount in yuan with at most two decimals, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        return None
    return amount.quantize(Decimal("0.01"))


def _parse_one(
    spec: SourceSpec, table: Mapping[str, Any], path: Path | None, validation: ValidationRules
) -> SourceConfig:
    name = spec.name

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, path=path, source=name, key=key)

    for key in table:
        if key not in _KEYS:
            raise fail(key, f"unknown key; allowed keys: {', '.join(sorted(_KEYS))}")

    folder = table.get("path")
    if folder is not None and (not isinstance(folder, str) or not folder.strip()):
        raise fail("path", "must be a non-empty string (a folder of deliveries)")

    fmt = table.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise fail("format", f"{fmt!r} is not one of {', '.join(FORMATS)} (omit it to infer)")

    raw_encoding = table.get("encoding", "utf-8")
    encoding = canonical_encoding(raw_encoding) if isinstance(raw_encoding, str) else None
    if encoding is None:
        raise fail("encoding", f"{raw_encoding!r} is not one of {', '.join(ENCODINGS)}")

    rename = _str_map(table.get("rename", {}), fail, "rename")
    targets = list(rename.values())
    for delivered, target in rename.items():
        if target not in spec.column_names:
            raise fail(
                f"rename.{delivered}",
                f"{target!r} is not a column of {name}; columns: {', '.join(spec.column_names)}",
            )
        if targets.count(target) > 1:
            raise fail(f"rename.{delivered}", f"several columns are renamed to {target!r}")

    date_formats = _str_map(table.get("date_formats", {}), fail, "date_formats")
    for column, fmt_ in date_formats.items():
        if column not in spec.column_names or spec.column(column).kind not in (
            "date",
            "timestamp",
        ):
            raise fail(f"date_formats.{column}", f"{column!r} is not a date or timestamp column")
        if "%" not in fmt_:
            raise fail(f"date_formats.{column}", f"{fmt_!r} is not a strptime format")

    raw_maps = table.get("value_maps", {})
    if not isinstance(raw_maps, Mapping):
        raise fail("value_maps", "must be a table of tables")
    value_maps: dict[str, Mapping[str, str]] = {}
    for column, mapping in raw_maps.items():
        if column not in spec.column_names:
            raise fail(f"value_maps.{column}", f"{column!r} is not a column of {name}")
        value_maps[column] = MappingProxyType(_str_map(mapping, fail, f"value_maps.{column}"))

    transport = table.get("transport", "files")
    if transport not in TRANSPORTS:
        raise fail("transport", f"{transport!r} is not one of {', '.join(TRANSPORTS)}")
    for kind in ("sql", "http"):
        if transport == kind and kind not in table:
            raise fail("transport", f"{kind!r} needs a [{name}.{kind}] table")
    sql = _parse_sql(spec, table["sql"], rename, path) if "sql" in table else None
    http = _parse_http(spec, table["http"], path) if "http" in table else None

    return SourceConfig(
        name=name,
        path=folder,
        format=fmt,
        encoding=encoding,
        rename=MappingProxyType(rename),
        date_formats=MappingProxyType(date_formats),
        value_maps=MappingProxyType(value_maps),
        transport=transport,
        sql=sql,
        http=http,
        validation=validation,
    )


def make_transport(
    config: SourceConfig, *, secrets: Mapping[str, str]
) -> SqlTransport | HttpTransport | None:
    """Build the source's SQL or HTTP transport with its secrets; None for files."""
    from connectors.http import HttpTransport
    from connectors.sql import SqlTransport

    name = config.name
    if config.transport == "files":
        return None
    if config.transport == "sql":
        if config.sql is None:
            raise ConfigError(f"'sql' needs a [{name}.sql] table", source=name, key="transport")
        sql = config.sql
        url = sql.url
        if sql.url_secret is not None:
            url = _secret(secrets, name, "sql", "url_secret", sql.url_secret)
        if url is None:
            raise _key_error(None, name, "sql", "url", "is required (or url_secret)")
        return SqlTransport(
            url=url, table=sql.table, cursor_column=sql.cursor_column, batch_rows=sql.batch_rows
        )
    if config.http is None:
        raise ConfigError(f"'http' needs a [{name}.http] table", source=name, key="transport")
    http = config.http
    token = None
    if http.token_secret is not None:
        token = _secret(secrets, name, "http", "token_secret", http.token_secret)
    return HttpTransport(
        url=http.url,
        page_size=http.page_size,
        cursor_param=http.cursor_param,
        limit_param=http.limit_param,
        records_key=http.records_key,
        next_cursor_key=http.next_cursor_key,
        token=token,
        max_retries=http.max_retries,
        backoff_s=http.backoff_s,
        timeout_s=http.timeout_s,
    )


# --------------------------------------------------------------------- transports


def _key_error(path: Path | None, source: str, table: str, key: str, message: str) -> ConfigError:
    """Name a key of a transport table the way a reader finds it: ``[medical.http] url``."""
    error = ConfigError(f"{key}: {message}", path=path, source=f"{source}.{table}")
    error.source, error.key = source, f"{table}.{key}"
    return error


def _secret(secrets: Mapping[str, str], source: str, table: str, key: str, secret: str) -> str:
    value = secrets.get(secret)
    if not value:
        # name the secret, never a value: the secrets mapping is not echoed
        raise _key_error(
            None,
            source,
            table,
            key,
            f"secret {secret!r} is not set; add it to the settings' secrets",
        )
    return value


def _checker(
    source: str, table: str, data: Mapping[str, Any], path: Path | None
) -> Callable[..., Any]:
    """Return a reader of one key of a transport table that validates its type and range."""

    def get(key: str, kind: str, default: Any = None, *, low: float | None = None) -> Any:
        if key not in data:
            return default
        value = data[key]
        if kind == "str":
            if not isinstance(value, str) or not value.strip():
                raise _key_error(path, source, table, key, "must be a non-empty string")
            return value
        number = int if kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, number):
            what = "an integer" if kind == "int" else "a number"
            raise _key_error(path, source, table, key, f"must be {what}, not {value!r}")
        if low is not None and value < low:
            raise _key_error(path, source, table, key, f"must be at least {low:g}, not {value!r}")
        return value if kind == "int" else float(value)

    return get


def _check_keys(
    source: str, table: str, data: object, allowed: tuple[str, ...], path: Path | None
) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError("must be a table", path=path, source=source, key=table)
    for key in data:
        if key not in allowed:
            hint = ""
            if key in ("token", "password"):
                hint = "; never put a secret in this file, name it in token_secret / url_secret"
            raise _key_error(
                path, source, table, key, f"unknown key; allowed keys: {', '.join(allowed)}{hint}"
            )
    return data


def _parse_sql(
    spec: SourceSpec, raw: object, rename: Mapping[str, str], path: Path | None
) -> SqlSettings:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    name = spec.name
    data = _check_keys(name, "sql", raw, _SQL_KEYS, path)
    get = _checker(name, "sql", data, path)
    url, url_secret = get("url", "str"), get("url_secret", "str")
    if (url is None) == (url_secret is None):
        raise _key_error(path, name, "sql", "url", "give exactly one of url and url_secret")
    if url is not None:
        try:
            make_url(url)
        except ArgumentError:
            # the value is not echoed: it may hold a password
            raise _key_error(
                path, name, "sql", "url", "is not a SQLAlchemy URL (dialect://user@host/db)"
            ) from None
    table = get("table", "str")
    if table is None:
        raise _key_error(path, name, "sql", "table", "is required")
    # by default the source's own cursor, under the name the department delivers it
    delivered = {ref: col for col, ref in rename.items()}
    default_cursor = delivered.get(spec.cursor, spec.cursor) if spec.cursor else None
    return SqlSettings(
        table=table,
        cursor_column=get("cursor_column", "str", default_cursor),
        url=url,
        url_secret=url_secret,
        batch_rows=get("batch_rows", "int", 100_000, low=1),
    )


def _parse_http(spec: SourceSpec, raw: object, path: Path | None) -> HttpSettings:
    name = spec.name
    data = _check_keys(name, "http", raw, _HTTP_KEYS, path)
    get = _checker(name, "http", data, path)
    url = get("url", "str")
    if url is None:
        raise _key_error(path, name, "http", "url", "is required")
    if not url.startswith(("http://", "https://")):
        raise _key_error(path, name, "http", "url", f"{url!r} is not an http(s) URL")
    return HttpSettings(
        url=url,
        page_size=get("page_size", "int", 1000, low=1),
        cursor_param=get("cursor_param", "str", "cursor"),
        limit_param=get("limit_param", "str", "limit"),
        records_key=get("records_key", "str", "records"),
        next_cursor_key=get("next_cursor_key", "str", "next_cursor"),
        token_secret=get("token_secret", "str"),
        max_retries=get("max_retries", "int", 5, low=0),
        backoff_s=get("backoff_s", "float", 0.5, low=0),
        timeout_s=get("timeout_s", "float", 30.0, low=0.001),
    )


def _str_map(value: object, fail: Any, key: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise fail(key, "must be a table of strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        # TOML integers are tolerated as values so `"1" = 1` style typos still work
        if not isinstance(v, str | int) or isinstance(v, bool):
            raise fail(f"{key}.{k}", "must be a string")
        out[str(k)] = str(v)
    return out
