"""The one-statement reads' JSON, written by PostgreSQL from the fields of a response schema.

The API answers its hot reads on PostgreSQL with one statement that builds the JSON itself
(`grid_queue_sql`, `list_feed_sql`). Its rows come from the same SQLAlchemy select that the
session path runs, compiled here (postgresql_text), and its object keys are not written by
hand: they are the fields of the endpoint's response schema, handed over as (name, type)
pairs, each formatted as pydantic writes its type. A field the select lacks fails the
statement, so a field added to the schema is served by both paths or by neither.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import BindParameter, Select
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.sql import visitors

# A response schema's fields in order: (name, annotation), as pydantic's `model_fields` give.
Fields = tuple[tuple[str, Any], ...]

# A UTC timestamp as pydantic writes it: seconds, then microseconds only when there are any.
_JSON_UTC = (
    "to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN "
    "date_trunc('second', {0}) = {0} THEN '' ELSE to_char({0} AT TIME ZONE 'UTC', '.US') END "
    "|| 'Z'"
)
# A float as pydantic writes it: a whole number keeps its ".0" (PostgreSQL writes 3, not 3.0),
# and a non-finite one is null.
_JSON_FLOAT = (
    "CASE WHEN {0} = trunc({0}) AND abs({0}) < 1e15 THEN (trunc({0})::bigint::text || '.0')::json "
    "WHEN {0} IN ('Infinity', '-Infinity', 'NaN') THEN 'null'::json ELSE to_json({0}) END"
)
# A decimal as pydantic writes it in JSON: a string of its digits, scale kept ("12.50").
_JSON_DECIMAL = "{0}::text"
# Written by row_to_json as pydantic writes them; dates as ISO text, dicts as stored JSON.
_AS_STORED = (int, str, bool, dt.date, dict)

_DIALECT = PGDialect_psycopg()
# Whether the caller is still allowed: the one-statement reads read nothing otherwise (the CTE
# `client` holds a row iff so; see api.deps.CLIENT_CTE).
ALLOWED = "EXISTS (SELECT FROM client)"


def _bare(annotation: Any) -> Any:
    """Return an annotation without its `| None` (the JSON of None is null on both paths)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kept = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return typing.get_origin(annotation) or annotation


def json_value_sql(source: str, annotation: Any) -> str:
    """Return the SQL writing the column `source` as pydantic writes a value of `annotation`."""
    bare = _bare(annotation)
    if bare is float:
        return _JSON_FLOAT.format(source)
    if bare is dt.datetime:
        return _JSON_UTC.format(source)
    if bare is Decimal:
        return _JSON_DECIMAL.format(source)
    if isinstance(bare, type) and issubclass(bare, _AS_STORED):
        return source
    # Refused at build time: a new kind of field needs its format written here first.
    raise TypeError(f"no PostgreSQL JSON format for {annotation!r} ({source})")


def json_fields_sql(fields: Fields, alias: str) -> str:
    """Return a select list with one column per schema field, read from `alias`'s same name."""
    return ", ".join(
        f"{json_value_sql(f'{alias}.{name}', annotation)} AS {name}" for name, annotation in fields
    )


def json_objects_sql(rows: str, fields: Fields, order_by: str) -> str:
    """Return a subquery writing each row of the CTE `rows` as the schema's JSON object.

    The objects come in `order_by` (over the alias r), joined by commas: the inside of a
    JSON array, or null when there are no rows.
    """
    return (
        f"(SELECT string_agg(row_to_json(x)::text, ',' ORDER BY {order_by}) FROM {rows} AS r, "
        f"LATERAL (SELECT {json_fields_sql(fields, 'r')}) AS x)"
    )


def json_array(objects: str | None) -> bytes:
    """Return the JSON array of objects joined by commas (json_objects_sql; None is none)."""
    return b"[" + (objects or "").encode() + b"]"


def postgresql_text(statement: Select[Any], params: Iterable[str]) -> str:
    """Return a select as PostgreSQL text: `params` as psycopg's %(name)s, constants inlined.

    The one-statement reads pass their parameters by name; a constant the select binds under
    a name the compiler made up (a JSON key, say) would be missing at execution, so it is
    written as a literal of its type. Such constants are the code's, never input: a select
    must bind input under one of `params`.
    """
    named = frozenset(params)

    def mark(bind: BindParameter[Any]) -> None:
        if bind.key in named:
            bind.required = False  # given at execution, not here
        else:
            bind.literal_execute = True  # rendered into the text (render_postcompile)

    inlined = visitors.cloned_traverse(statement, {}, {"bindparam": mark})
    return str(inlined.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True}))
