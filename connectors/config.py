"""Per-source configuration: where deliveries land, how a department deviates, new sources.

config/sources.toml is read through typed models (frozen, unknown keys refused, no silent
coercion); any error is one `ConfigError` naming the file, the source table and the key:
``sources.toml: [medical.sql] batch_rows: must be an integer, not '9'``.
"""

from __future__ import annotations

import codecs
import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError

from connectors.declare import (
    DECLARATION_KEYS,
    ColumnTable,
    Label,
    Link,
    Name,
    declared_spec,
    grouped_spec,
)
from connectors.errors import ConfigError
from connectors.spec import BENEFIT_TYPES, SOURCES, SourceSpec, TraceSpec
from connectors.strict import StrictModel, as_tuple

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
    "trace_specs",
]

FORMATS = ("csv", "csv.gz", "parquet", "jsonl")
# Canonical codec names (codecs.lookup) of the encodings SOURCES.md allows.
ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "gb18030": "gb18030"}
Transport = Literal["files", "sql", "http"]
TRANSPORTS: tuple[str, ...] = get_args(Transport)

_EMPTY: Mapping[str, Any] = MappingProxyType({})
# The money columns of the built-in sources: the keys [validation.ceilings] may name (with
# those of declared sources).
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
    """Hold how one source is delivered: folder, container, encoding and mappings.

    ``declared`` is the source's spec when sources.toml declares it (a new source), or moves
    a built-in trace source into another independence group; None: the built-in spec.
    """

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
    declared: SourceSpec | None = None

    @property
    def spec(self) -> SourceSpec:
        """Return the source's reference format: as declared, else the built-in one."""
        return self.declared if self.declared is not None else SOURCES[self.name]

    @property
    def trace(self) -> TraceSpec | None:
        """Return how the source's rows become evidence (None: not a trace source)."""
        return self.spec.trace


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


def trace_specs(configs: Mapping[str, SourceConfig]) -> dict[str, TraceSpec]:
    """Return the trace sources of a configuration, built-in ones first, with their specs."""
    return {name: c.trace for name, c in configs.items() if c.trace is not None}


def canonical_encoding(name: str) -> str | None:
    """Return the canonical name of an allowed encoding, or None if not allowed."""
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    # codecs names utf-8 "utf-8" and the BOM variant "utf-8-sig"
    return ENCODINGS.get(codec)


# ------------------------------------------------------------------ the file's models


def _choice(choices: tuple[str, ...], *, hint: str = "") -> AfterValidator:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}{hint}")
        return value

    return AfterValidator(check)


def _encoding(value: object) -> object:
    canonical = canonical_encoding(value) if isinstance(value, str) else None
    if canonical is None:
        raise ValueError(f"{value!r} is not one of {', '.join(ENCODINGS)}")
    return canonical


def _map_value(value: object) -> object:
    # TOML integers are tolerated as values so `"1" = 1` style typos still work
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a string")
    return str(value)


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def _sql_url(value: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value)
    except ArgumentError:
        # the value is not echoed: it may hold a password
        raise ValueError("is not a SQLAlchemy URL (dialect://user@host/db)") from None
    return value


def _date(value: object) -> object:
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ValueError(f"must be a date such as 1900-01-01, not {value!r}")
    return value


def _minutes(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a whole number >= 0, not {value!r}")
    return value


def _amount(value: object) -> object:
    amount = _yuan(value)
    if amount is None:
        raise ValueError(f"must be a positive amount in yuan with at most two decimals, not "
                         f"{value!r}")  # fmt: skip
    return amount


def _years(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 150:
        raise ValueError(f"must be whole years 0-150, not {value!r}")
    return value


Text = Annotated[str, Field(min_length=1)]
MapValue = Annotated[str, BeforeValidator(_map_value)]


class _SqlTable(StrictModel):
    """``[<source>.sql]``: one table read through a SQLAlchemy URL, incrementally."""

    url: Annotated[Text, AfterValidator(_sql_url)] | None = None
    url_secret: Text | None = None
    table: Text
    cursor_column: Text | None = None
    batch_rows: Annotated[int, Field(ge=1)] = 100_000


class _HttpTable(StrictModel):
    """``[<source>.http]``: a paged JSON API."""

    url: Annotated[Text, AfterValidator(_http_url)]
    page_size: Annotated[int, Field(ge=1)] = 1000
    cursor_param: Text = "cursor"
    limit_param: Text = "limit"
    records_key: Text = "records"
    next_cursor_key: Text = "next_cursor"
    token_secret: Text | None = None
    max_retries: Annotated[int, Field(ge=0)] = 5
    backoff_s: Annotated[float, Field(ge=0)] = 0.5
    timeout_s: Annotated[float, Field(ge=0.001)] = 30.0


class _SourceTable(StrictModel):
    """``[<source>]``: how a source is delivered and, for a new source, its declaration."""

    path: Text | None = None
    format: Annotated[str, _choice(FORMATS, hint=" (omit it to infer)")] | None = None
    encoding: Annotated[str, BeforeValidator(_encoding)] = "utf-8"
    rename: dict[str, MapValue] = Field(default_factory=dict)
    date_formats: dict[str, MapValue] = Field(default_factory=dict)
    value_maps: dict[str, dict[str, MapValue]] = Field(default_factory=dict)
    transport: Annotated[str, _choice(TRANSPORTS)] = "files"
    sql: _SqlTable | None = None
    http: _HttpTable | None = None
    # The declaration of a new source (connectors.declare); `group` is allowed on a built-in
    # trace source too.
    label: Label | None = None
    columns: Annotated[tuple[ColumnTable, ...], BeforeValidator(as_tuple)] | None = None
    link: Link | None = None
    time_column: Name | None = None
    kind_column: Name | None = None
    kinds: dict[str, Name] | None = None
    kind: Name | None = None
    group: Name | None = None


class _ValidationTable(StrictModel):
    """``[validation]``: the policy numbers of the value checks."""

    earliest_date: Annotated[dt.date, BeforeValidator(_date)] | None = None
    future_allowance_minutes: Annotated[int, BeforeValidator(_minutes)] = 0
    ceilings: dict[str, Annotated[Decimal, BeforeValidator(_amount)]] = Field(default_factory=dict)
    minimum_age: dict[str, Annotated[int, BeforeValidator(_years)]] = Field(default_factory=dict)


# Keys each table allows, in the order an error lists them.
_ALLOWED: dict[str, tuple[str, ...]] = {
    "source": tuple(sorted(_SourceTable.model_fields)),
    "sql": tuple(_SqlTable.model_fields),
    "http": tuple(_HttpTable.model_fields),
    "validation": tuple(_ValidationTable.model_fields),
    "columns": tuple(ColumnTable.model_fields),
    "label": tuple(Label.model_fields),
}
_TRANSPORT_TABLES = ("sql", "http")


def _message(error: Mapping[str, Any], allowed: tuple[str, ...]) -> str:
    """Say what is wrong with one value, in the file's words."""
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        hint = ""
        if key in ("token", "password"):
            hint = "; never put a secret in this file, name it in token_secret / url_secret"
        return f"unknown key; allowed keys: {', '.join(allowed)}{hint}"
    if kind == "missing":
        return "is required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a table"
    if kind == "string_too_short":
        return "must be a non-empty string"
    if kind == "string_type":
        return f"must be a non-empty string, not {value!r}"
    if kind == "int_type":
        return f"must be an integer, not {value!r}"
    if kind == "float_type":
        return f"must be a number, not {value!r}"
    if kind == "bool_type":
        return f"must be true or false, not {value!r}"
    if kind in ("tuple_type", "list_type"):
        return f"must be an array, not {value!r}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = error["ctx"].get("ge", error["ctx"].get("gt"))
        return f"must be at least {bound:g}, not {value!r}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _model_error(
    failure: ValidationError, *, path: Path | None, source: str, table: str = "source"
) -> ConfigError:
    """Turn a model's first error into a ConfigError naming the source table and the key."""
    # A misspelt key is both unknown and missing: naming the unknown one first shows the typo.
    errors = sorted(failure.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    error = errors[0]
    loc = tuple(str(part) for part in error["loc"])
    if len(loc) >= 2 and loc[0] in _TRANSPORT_TABLES:
        message = _message(error, _ALLOWED[loc[0]])
        return _key_error(path, source, loc[0], ".".join(loc[1:]), message)
    inner = loc[0] if len(loc) > 1 else ""
    message = _message(error, _ALLOWED.get(inner, _ALLOWED[table]))
    return ConfigError(message, path=path, source=source, key=".".join(loc) or None)


def _validate(
    model: type[StrictModel], raw: object, *, path: Path | None, source: str, table: str
) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError("must be a table", path=path, source=source)
    try:
        return model.model_validate(raw)
    except ValidationError as failure:
        raise _model_error(failure, path=path, source=source, table=table) from None


# ------------------------------------------------------------------------ the reader


def parse_source_configs(
    data: Mapping[str, Any], *, path: Path | None = None
) -> dict[str, SourceConfig]:
    """Validate parsed TOML and return a config per source (defaults for absent ones).

    The built-in sources come first, in their order; then the sources the file declares.
    """
    tables: dict[str, _SourceTable] = {}
    for name, raw in data.items():
        if name == "validation":
            continue
        declares = isinstance(raw, Mapping) and any(key in raw for key in DECLARATION_KEYS)
        if name not in SOURCES and not declares:
            raise ConfigError(
                f"unknown source {name!r}; known sources: {', '.join(SOURCES)} (and the "
                "[validation] table); a new source is declared with its columns, link, "
                "time_column, kinds and label",
                path=path, source=name,
            )  # fmt: skip
        tables[name] = _validate(_SourceTable, raw, path=path, source=name, table="source")
    specs = {name: _spec(name, table, path) for name, table in tables.items()}
    money = {
        c.name
        for spec in [*SOURCES.values(), *(s for s in specs.values() if s is not None)]
        for c in spec.columns
        if c.kind == "money"
    }
    validation = _parse_validation(data.get("validation", {}), path, money=sorted(money))
    configs: dict[str, SourceConfig] = {}
    for name in [*SOURCES, *(n for n in tables if n not in SOURCES)]:
        table = tables.get(name, _SourceTable())
        configs[name] = _config(name, table, specs.get(name), path, validation)
    return configs


def load_source_configs(path: Path) -> dict[str, SourceConfig]:
    """Load config/sources.toml; every built-in source gets an entry, with defaults."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("source configuration file not found", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from None
    return parse_source_configs(data, path=path)


def _spec(name: str, table: _SourceTable, path: Path | None) -> SourceSpec | None:
    """Return a declared source's spec, a built-in one moved to a group, or None (built-in)."""
    if name not in SOURCES:
        return declared_spec(
            name, label=table.label, columns=table.columns, link=table.link,
            time_column=table.time_column, kind_column=table.kind_column, kinds=table.kinds,
            kind=table.kind, group=table.group, path=path,
        )  # fmt: skip
    for key in DECLARATION_KEYS:
        if getattr(table, key) is not None:
            raise ConfigError(
                f"{name} is a built-in source: its format is SOURCES.md's (only its delivery "
                "and its group may be configured)",
                path=path, source=name, key=key,
            )  # fmt: skip
    if table.group is None or table.group == name:
        return None
    return grouped_spec(name, group=table.group, path=path)


def _parse_validation(raw: object, path: Path | None, *, money: list[str]) -> ValidationRules:
    """Validate the ``[validation]`` table: dates, minutes, ceilings in yuan, ages in years."""
    table: _ValidationTable = _validate(
        _ValidationTable, raw, path=path, source="validation", table="validation"
    )
    for column in table.ceilings:
        if column not in money:
            raise ConfigError(f"not a money column; money columns: {', '.join(money)}",
                              path=path, source="validation", key=f"ceilings.{column}")  # fmt: skip
    for benefit in table.minimum_age:
        if benefit not in BENEFIT_TYPES:
            raise ConfigError(
                f"not a benefit type; benefit types: {', '.join(BENEFIT_TYPES)}",
                path=path, source="validation", key=f"minimum_age.{benefit}",
            )  # fmt: skip
    return ValidationRules(
        earliest=table.earliest_date,
        future_allowance=dt.timedelta(minutes=table.future_allowance_minutes),
        ceilings=MappingProxyType(dict(table.ceilings)),
        minimum_age=MappingProxyType(dict(table.minimum_age)),
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


def _config(
    name: str,
    table: _SourceTable,
    declared: SourceSpec | None,
    path: Path | None,
    validation: ValidationRules,
) -> SourceConfig:
    """Check a source table's mappings against the source's columns; return its config."""
    spec = declared if declared is not None else SOURCES[name]

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, path=path, source=name, key=key)

    targets = list(table.rename.values())
    for delivered, target in table.rename.items():
        if target not in spec.column_names:
            raise fail(
                f"rename.{delivered}",
                f"{target!r} is not a column of {name}; columns: {', '.join(spec.column_names)}",
            )
        if targets.count(target) > 1:
            raise fail(f"rename.{delivered}", f"several columns are renamed to {target!r}")
    for column, fmt in table.date_formats.items():
        if column not in spec.column_names or spec.column(column).kind not in (
            "date",
            "timestamp",
        ):
            raise fail(f"date_formats.{column}", f"{column!r} is not a date or timestamp column")
        if "%" not in fmt:
            raise fail(f"date_formats.{column}", f"{fmt!r} is not a strptime format")
    for column in table.value_maps:
        if column not in spec.column_names:
            raise fail(f"value_maps.{column}", f"{column!r} is not a column of {name}")
    for kind in _TRANSPORT_TABLES:
        if table.transport == kind and getattr(table, kind) is None:
            raise fail("transport", f"{kind!r} needs a [{name}.{kind}] table")
    return SourceConfig(
        name=name,
        path=table.path,
        format=table.format,
        encoding=table.encoding,
        rename=MappingProxyType(dict(table.rename)),
        date_formats=MappingProxyType(dict(table.date_formats)),
        value_maps=MappingProxyType(
            {column: MappingProxyType(dict(m)) for column, m in table.value_maps.items()}
        ),
        transport=table.transport,  # type: ignore[arg-type]  # checked by the model
        sql=_sql(spec, table.sql, table.rename, path) if table.sql is not None else None,
        http=_http(table.http) if table.http is not None else None,
        validation=validation,
        declared=declared,
    )


def _sql(
    spec: SourceSpec, table: _SqlTable, rename: Mapping[str, str], path: Path | None
) -> SqlSettings:
    if (table.url is None) == (table.url_secret is None):
        raise _key_error(path, spec.name, "sql", "url", "give exactly one of url and url_secret")
    # by default the source's own cursor, under the name the department delivers it
    delivered = {ref: col for col, ref in rename.items()}
    default_cursor = delivered.get(spec.cursor, spec.cursor) if spec.cursor else None
    return SqlSettings(
        table=table.table,
        cursor_column=table.cursor_column if table.cursor_column is not None else default_cursor,
        url=table.url,
        url_secret=table.url_secret,
        batch_rows=table.batch_rows,
    )


def _http(table: _HttpTable) -> HttpSettings:
    return HttpSettings(**table.model_dump())


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
