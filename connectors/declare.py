"""New trace sources declared in config/sources.toml: their columns, link, time, kinds, group.

A table of sources.toml whose name is no built-in source declares one when it has `columns`;
the declaration is checked here and becomes a `SourceSpec` with its `TraceSpec`, so that the
connector, the ingest, the scoring and the explanations treat it like a built-in source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from connectors.errors import ConfigError
from connectors.spec import (
    COLUMN_KINDS,
    LINK_COLUMNS,
    LINK_MODES,
    SOURCES,
    Column,
    ColumnKind,
    LinkMode,
    SourceSpec,
    TraceSpec,
)
from connectors.strict import StrictModel, Texts, as_tuple

__all__ = [
    "DECLARATION_KEYS", "ColumnTable", "Label", "Link", "Name", "declared_spec", "grouped_spec",
]  # fmt: skip

# `fail(key, message)`: the error naming the declaration's key.
_Fail = Callable[[str, str], ConfigError]
# Names of sources, kinds and groups: they name folders, store partitions and policy keys.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
# The kind of a correction that withdraws a record (liveness.evidence.parts.VOIDED_KIND).
_RESERVED_KINDS = frozenset({"voided"})
# The keys of a source table that declare a new source (the others say how it is delivered).
DECLARATION_KEYS = ("label", "columns", "link", "time_column", "kind_column", "kinds", "kind")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a name: lower-case letters, digits and _, up to 40")
    return value


def _one_of(choices: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return AfterValidator(check)


Name = Annotated[str, AfterValidator(_name)]
Text = Annotated[str, Field(min_length=1)]
Link = Annotated[tuple[Annotated[str, _one_of(LINK_MODES)], ...], BeforeValidator(
    lambda value: (value,) if isinstance(value, str) else as_tuple(value)
)]  # fmt: skip


class Label(StrictModel):
    """The source in words, as grid workers and auditors read it: `{ zh = "…", en = "…" }`."""

    zh: Text
    en: Text


class ColumnTable(StrictModel):
    """One column of a declared source's reference format (connectors.spec.Column)."""

    name: Name
    kind: Annotated[str, _one_of(COLUMN_KINDS)]
    required: bool = False
    values: Texts = ()
    allow_blank: bool = False
    future: bool = False
    allow_zero: bool = False
    bounds: Annotated[tuple[float, float] | None, BeforeValidator(as_tuple)] = None


def declared_spec(
    name: str,
    *,
    label: Label | None,
    columns: tuple[ColumnTable, ...] | None,
    link: tuple[str, ...] | None,
    time_column: str | None,
    kind_column: str | None,
    kinds: Mapping[str, str] | None,
    kind: str | None,
    group: str | None,
    path: Path | None,
) -> SourceSpec:
    """Check a declared source and return its spec; errors name the file, source and key."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, path=path, source=name, key=key)

    if not _NAME.fullmatch(name):
        raise ConfigError(
            "a declared source's name is lower-case letters, digits and _, up to 40",
            path=path, source=name,
        )  # fmt: skip
    for key, value in (("label", label), ("link", link), ("time_column", time_column)):
        if value is None:
            raise fail(key, "is required to declare a source")
    assert label is not None and link is not None and time_column is not None
    by_name = _columns(name, columns or (), fail)
    record = by_name.get("record_id")
    if record is None or record.kind != "str" or not record.required:
        raise fail("columns", "a declared source needs a required str column `record_id`")
    stamp = by_name.get(time_column)
    if stamp is None or stamp.kind not in ("date", "timestamp") or not stamp.required:
        raise fail("time_column", f"{time_column!r} is not a required date or timestamp column")
    modes = _link_modes(link, by_name, fail)
    produced = _kinds(by_name, kind_column=kind_column, kinds=kinds, kind=kind, fail=fail)
    requires = (("voided", "correction"),) if {"voided", "correction"} <= set(by_name) else ()
    return SourceSpec(
        name=name,
        key=("record_id",),
        cursor=time_column,
        columns=tuple(by_name.values()),
        requires=requires,
        trace=TraceSpec(
            link=modes,
            time_column=time_column,
            kinds=tuple(dict.fromkeys(produced.values())),
            group=group or name,
            label=MappingProxyType({"zh": label.zh, "en": label.en}),
            kind_column=kind_column,
            kind_map=MappingProxyType(produced),
        ),
    )


def grouped_spec(name: str, *, group: str, path: Path | None) -> SourceSpec:
    """Return a built-in trace source's spec placed in another independence group."""
    spec = SOURCES[name]
    if spec.trace is None:
        raise ConfigError(
            "only a trace source has an independence group", path=path, source=name, key="group"
        )
    trace = TraceSpec(
        link=spec.trace.link, time_column=spec.trace.time_column, kinds=spec.trace.kinds,
        group=group, label=spec.trace.label, kind_column=spec.trace.kind_column,
        kind_map=spec.trace.kind_map,
    )  # fmt: skip
    return SourceSpec(
        name=spec.name, key=spec.key, cursor=spec.cursor, columns=spec.columns, order=spec.order,
        minimum_age=spec.minimum_age, requires=spec.requires, trace=trace,
    )  # fmt: skip


def _columns(name: str, tables: tuple[ColumnTable, ...], fail: _Fail) -> dict[str, Column]:
    """Return the declared columns by name, each checked against its kind."""
    out: dict[str, Column] = {}
    for i, table in enumerate(tables):
        key = f"columns.{i}"
        if table.name in out:
            raise fail(f"{key}.name", f"{table.name!r} is declared twice")
        kind: ColumnKind = table.kind  # type: ignore[assignment]  # checked by the model
        if (kind == "enum") != bool(table.values):
            raise fail(f"{key}.values", "an enum column lists its values; no other kind does")
        if table.allow_blank and not table.required:
            raise fail(f"{key}.allow_blank", "only a required column may allow a blank value")
        if table.future and kind not in ("date", "timestamp"):
            raise fail(f"{key}.future", "only a date or timestamp may lie in the future")
        if table.allow_zero and kind != "money":
            raise fail(f"{key}.allow_zero", "only a money column may allow zero")
        if table.bounds is not None and (kind != "decimal" or table.bounds[0] > table.bounds[1]):
            raise fail(f"{key}.bounds", "only a decimal column has bounds, [low, high]")
        if table.name in ("correction", "voided") and kind != "bool":
            raise fail(f"{key}.kind", f"{table.name} is a bool column (SOURCES.md)")
        out[table.name] = Column(
            table.name, kind, table.required, tuple(table.values), allow_blank=table.allow_blank,
            future=table.future, allow_zero=table.allow_zero, bounds=table.bounds,
        )  # fmt: skip
    if not out:
        raise fail("columns", f"declare the columns of {name}")
    return out


def _link_modes(
    link: tuple[str, ...], columns: Mapping[str, Column], fail: _Fail
) -> tuple[LinkMode, ...]:
    """Check the link modes against the columns they read; return them."""
    modes: tuple[LinkMode, ...] = link  # type: ignore[assignment]  # checked by the model
    fallback_last = "name_birth_date" not in modes[:-1]
    if not modes or len(set(modes)) != len(modes) or len(modes) > 2 or not fallback_last:
        raise fail(
            "link", "one of id_number, card_no, name_birth_date, or [id_number or card_no, "
            "name_birth_date]: the name and birth date only as the fallback",
        )  # fmt: skip
    for mode in modes:
        for column, kind in LINK_COLUMNS[mode]:
            found = columns.get(column)
            if found is None or found.kind != kind:
                raise fail("link", f"{mode} links by a {kind} column {column!r}: declare it")
            if len(modes) == 1 and not found.required:
                raise fail("link", f"{column!r} is the only link: declare it required")
    return modes


def _kinds(
    columns: Mapping[str, Column],
    *,
    kind_column: str | None,
    kinds: Mapping[str, str] | None,
    kind: str | None,
    fail: _Fail,
) -> dict[str, str]:
    """Return the map of delivered value to kind ({"": kind} for one fixed kind)."""
    if (kind is None) == (kind_column is None):
        raise fail("kind", "give either kind (every row's) or kind_column with its kinds")
    if kind is not None:
        if kinds is not None:
            raise fail("kinds", "a fixed kind needs no kinds map")
        if kind in _RESERVED_KINDS:
            raise fail("kind", f"{kind!r} is reserved")
        return {"": kind}
    assert kind_column is not None
    column = columns.get(kind_column)
    # A required enum: every row then has a value the connector checked, and every value a kind.
    if column is None or column.kind != "enum" or not column.required:
        raise fail("kind_column", f"{kind_column!r} is not a required enum column")
    if not kinds:
        raise fail("kinds", f"map each value of {kind_column} to a kind")
    unmapped = [value for value in column.values if value not in kinds]
    if unmapped:
        raise fail("kinds", f"no kind for the value {unmapped[0]!r} of {kind_column}")
    for value, mapped in kinds.items():
        if value not in column.values:
            raise fail(f"kinds.{value}", f"{value!r} is not a value of {kind_column}")
        if mapped in _RESERVED_KINDS:
            raise fail(f"kinds.{value}", f"{mapped!r} is reserved")
    return dict(kinds)
