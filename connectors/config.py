"""Per-source configuration: where deliveries land and how a department deviates."""

from __future__ import annotations

import codecs
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from connectors.errors import ConfigError
from connectors.spec import SOURCES, SourceSpec

__all__ = ["ENCODINGS", "FORMATS", "SourceConfig", "load_source_configs", "parse_source_configs"]

FORMATS = ("csv", "csv.gz", "parquet", "jsonl")
# Canonical codec names (codecs.lookup) of the encodings SOURCES.md allows.
ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "gb18030": "gb18030"}
_KEYS = {"path", "format", "encoding", "rename", "date_formats", "value_maps"}

_EMPTY: Mapping[str, Any] = MappingProxyType({})


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
    unknown = sorted(set(data) - set(SOURCES))
    if unknown:
        raise ConfigError(
            f"unknown source {unknown[0]!r}; known sources: {', '.join(SOURCES)}",
            path=path,
            source=unknown[0],
        )
    configs = {}
    for name, spec in SOURCES.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError("must be a table", path=path, source=name)
        configs[name] = _parse_one(spec, table, path)
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


def _parse_one(spec: SourceSpec, table: Mapping[str, Any], path: Path | None) -> SourceConfig:
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

    return SourceConfig(
        name=name,
        path=folder,
        format=fmt,
        encoding=encoding,
        rename=MappingProxyType(rename),
        date_formats=MappingProxyType(date_formats),
        value_maps=MappingProxyType(value_maps),
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
