"""Database engine and the transaction boundary.

Only a boundary (a CLI command, a job, a request, a test) opens `session_scope`; services
receive the session, flush when they need ids, and never commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    Engine,
    Executable,
    Integer,
    Select,
    String,
    Table,
    cast,
    create_engine,
    event,
    func,
    literal,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker

# pandas and Arrow load with the first read that needs them: a command that only lists rows
# (`liveness runs`) starts without them.
if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pa_csv

# Execution option of a session's connection: its transaction writes after reading, so on
# SQLite it begins holding the write lock (other writers wait for it, it never fails for them).
WRITES_AHEAD = "liveness_writes_ahead"

# Ids sent in one IN list at most: SQLite caps the parameters of a statement.
IN_CHUNK = 500


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for `url`; SQLite gets real transactions, foreign keys and a folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; take it over
    # so that a run publishes atomically and tests can roll back an outer transaction.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A transaction that will write whatever it reads (a run) takes the write lock at
        # once: begun deferred, its first write would fail if another writer had committed
        # since its first read (SQLite cannot move a reader's snapshot forward).
        immediate = connection.get_execution_options().get(WRITES_AHEAD, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to `engine`."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def end_session(session: Session, *, failed: bool) -> None:
    """End a unit of work: commit, or roll back when it failed (or its commit does); close."""
    try:
        if failed:
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session for one unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
    except BaseException:
        end_session(session, failed=True)
        raise
    end_session(session, failed=False)


def plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return rows as dicts of plain Python values, None for missing (for executemany)."""
    converted = frame.astype(object)
    return converted.where(converted.notna(), None).to_dict("records")


def unindexed(column: QueryableAttribute[str]) -> ColumnElement[str]:
    """Return a text column as an expression no index answers, for a GROUP BY over a table.

    Grouping by an indexed column, SQLite walks the index for the order and looks up every
    row it passes; over the review tasks that is six to eight times a plain scan of the table
    and a sort. The value is the column's own (it is never null), on either backend.
    """
    return func.coalesce(column, "")


def id_rows(session: Session, ids: list[int]) -> Select[Any]:
    """Return a select of `ids` as rows, the ids sent as one parameter however many they are.

    For `column.in_(id_rows(...))` over a set that grows with the roll: one statement, not one
    per `IN_CHUNK` ids (SQLite caps a statement's parameters, not a parameter's length). The
    database unpacks the parameter: a JSON array on SQLite (`json_each`), an array on
    PostgreSQL (`unnest`).
    """
    import json

    import numpy as np

    # Plain ints, whatever came (NumPy's from a frame): JSON and the driver take no others.
    plain = np.asarray(ids, dtype=np.int64).tolist()
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return select(func.unnest(literal(plain, ARRAY(BigInteger))))
    values = func.json_each(literal(json.dumps(plain), String)).table_valued("value")
    return select(values.c.value)


def any_ids(session: Session, ids: list[int]) -> list[int] | Select[Any]:
    """Return what `column.in_(...)` takes for `ids` of any number: themselves, or `id_rows`.

    A few go as parameters; past `IN_CHUNK` as one parameter the database unpacks, since a
    statement's parameters are capped (65,535 by PostgreSQL's protocol, SQLite's own limit).
    """
    return ids if len(ids) <= IN_CHUNK else id_rows(session, ids)


def query_frame(session: Session, statement: Executable, columns: list[str]) -> pd.DataFrame:
    """Run a select and return its rows as a DataFrame, built column by column (fast)."""
    import pandas as pd

    rows = session.execute(statement).all()
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    return pd.DataFrame(dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True)))


# Fields of the text the database joins are split by the ASCII unit separator, which no code,
# reference, number or date holds; a value that did (or held a line break) could not be split
# back, and the reader says so (None) for its caller to read the rows one by one.
FIELD_SEP = "\x1f"
TextColumn = ColumnElement[Any] | QueryableAttribute[Any]


def read_joined(
    session: Session,
    columns: Mapping[str, tuple[TextColumn, pa.DataType]],
    *where: ColumnElement[bool],
    nullable: bool = False,
) -> pa.Table | None:
    """Read rows as one text the database joins, parsed by Arrow; None where it cannot.

    A million rows fetched one by one are millions of Python objects (seconds, holding the
    GIL); joined by the database (SQLite's group_concat, PostgreSQL's string_agg, the same
    SQL) they are one text that Arrow splits in C. None when the database refuses the text
    (over its size limit) or when the text might not split back into exactly the rows: a value
    holding the separator, a line break or a carriage return (Arrow would take "\\r\\n" at the
    end of a line for one break), or a leading byte-order mark (Arrow would drop it). With
    `nullable`, an empty field of any column but the first (which must be text) is a null.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    fields: list[ColumnElement[str]] = [cast(expr, String) for expr, _ in columns.values()]
    if nullable:
        fields[1:] = [func.coalesce(field, "") for field in fields[1:]]
    schema = pa.schema([(name, kind) for name, (_, kind) in columns.items()])
    return _joined_table(
        session, fields, schema, lambda query: query.where(*where),
        parse=pa_csv.ParseOptions(
            delimiter=FIELD_SEP, quote_char=False, double_quote=False, escape_char=False
        ),
        convert=pa_csv.ConvertOptions(
            column_types=schema, null_values=[""] if nullable else [], strings_can_be_null=False
        ),
    )  # fmt: skip


def _joined_table(
    session: Session,
    fields: list[ColumnElement[str]],
    schema: pa.Schema,
    source: Callable[[Select[int, str]], Select[int, str]],
    *,
    parse: pa_csv.ParseOptions,
    convert: pa_csv.ConvertOptions,
) -> pa.Table | None:
    """Join each row's fields into a line, the lines into one text, and parse it with Arrow.

    `source` gives the aggregate its rows (a where clause, or a subquery to select from).
    None when the database refuses the text or when it might not split back into exactly
    its rows (see `read_joined`); else the table, cast to `schema`.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    separator = literal(FIELD_SEP, String)
    line = fields[0]
    for field in fields[1:]:
        line = line + separator + field
    try:
        # A savepoint: a refused aggregate leaves the transaction usable for the row read.
        with session.begin_nested():
            count, text = session.execute(
                source(select(func.count(), func.aggregate_strings(line, "\n")))
            ).one()
    except DBAPIError:
        return None
    if not count:
        return schema.empty_table()
    if not isinstance(text, str) or text.startswith("\ufeff") or "\r" in text:
        return None
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(text.encode()),
            read_options=pa_csv.ReadOptions(column_names=schema.names),
            parse_options=parse,
            convert_options=convert,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return table.cast(schema) if table.num_rows == count else None


def read_frame(session: Session, statement: Executable, columns: list[str]) -> pd.DataFrame:
    """Return what `query_frame` returns, read as one text the database joins where it can.

    The same frame (columns, dtypes, values, row order where the statement orders its rows),
    in a fraction of the time for many rows: the select is read as a subquery joined into
    one text (as `read_joined` does) whose fields Arrow parses in C. Integer, date and text
    columns can be joined; a statement with any other column (floats, whose text may round;
    timestamps; JSON), one that locks its rows, or a text that would not split back into
    exactly its rows is read row by row (`query_frame`).
    """
    import pandas as pd

    if not isinstance(statement, Select):
        return query_frame(session, statement, columns)
    kinds = [_joinable(column.type) for column in statement.selected_columns]
    if statement._for_update_arg is not None or any(kind is None for kind in kinds):
        return query_frame(session, statement, columns)
    table = _read_text(session, statement, [kind for kind in kinds if kind is not None])
    if table is None:
        return query_frame(session, statement, columns)
    if not table.num_rows:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    # Built from NumPy columns as `query_frame` builds from lists: pandas infers the same dtypes.
    return pd.DataFrame({name: _as_fetched(table.column(i)) for i, name in enumerate(columns)})


def _joinable(kind: Any) -> pa.DataType | None:
    """Return the Arrow type a column of SQL type `kind` reads back exactly from text, or None."""
    import pyarrow as pa

    if isinstance(kind, Integer):
        return pa.int64()
    if isinstance(kind, Date):
        return pa.date32()
    if isinstance(kind, String):
        return pa.string()
    return None


def _read_text(
    session: Session, statement: Select[Any], kinds: list[pa.DataType]
) -> pa.Table | None:
    """Read `statement`'s rows joined into one text, parsed by Arrow; None where it cannot.

    Each field is its value as text, or empty for a null; a text value is prefixed by one
    letter so that an empty text is not a null. An ordered statement numbers its rows in its
    order (a window), and the rows come back sorted by that number.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    order = statement._order_by_clauses
    if order:
        statement = statement.add_columns(func.row_number().over(order_by=order)).order_by(None)
        kinds = [*kinds, pa.int64()]
    rows = statement.subquery()
    fields: list[ColumnElement[str]] = []
    for column, kind in zip(rows.c, kinds, strict=True):
        text: ColumnElement[str] = cast(column, String)
        if pa.types.is_string(kind):
            text = literal("s", String) + text
        fields.append(func.coalesce(text, literal("", String)))
    names = [f"c{index}" for index in range(len(kinds))]
    schema = pa.schema(list(zip(names, kinds, strict=True)))
    table = _joined_table(
        session, fields, schema, lambda query: query.select_from(rows),
        parse=pa_csv.ParseOptions(
            delimiter=FIELD_SEP, quote_char=False, double_quote=False, escape_char=False,
            ignore_empty_lines=False,
        ),
        convert=pa_csv.ConvertOptions(
            column_types=schema, null_values=[""], strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )  # fmt: skip
    if table is None:
        return None
    if order:
        table = table.sort_by(names[-1]).drop_columns([names[-1]])
    for index, kind in enumerate(table.schema.types):
        if pa.types.is_string(kind):
            column = table.column(index)
            table = table.set_column(
                index, names[index], pc.utf8_slice_codeunits(column, 1).cast(pa.string())
            )
    return table


def _as_fetched(column: pa.ChunkedArray) -> Any:
    """Return an Arrow column as the values `query_frame` builds its frame from.

    Integers as int64 (float64 with NaN where some are null), dates as date objects, text
    as str, a null as None (a column of nulls only as None).
    """
    import numpy as np
    import pyarrow as pa

    if column.null_count == len(column):
        return np.full(len(column), None, dtype=object)
    if pa.types.is_date(column.type):
        return column.to_numpy().astype("datetime64[D]").astype(object)
    if pa.types.is_string(column.type):
        # Arrow's own pandas conversion gives the str dtype pandas infers from Python strings,
        # without making the strings (a tenth of the time).
        return column.to_pandas().array
    return column.to_numpy(zero_copy_only=False)


def insert_rows(session: Session, table: Table, columns: Mapping[str, Sequence[Any]]) -> int:
    """Insert rows given column by column, past the ORM: executemany on SQLite, COPY on PostgreSQL.

    Each column's values go through the column type's own bind conversion (JSON serialised,
    UTC timestamps, ...), so a row reads back exactly as one the ORM inserted; a column left
    out takes its Python-side default (a scalar or a callable without arguments, called once
    per row) or the server's. Returns the number of rows. The ORM's bulk insert spends tens
    of microseconds a row building parameters; this spends about what the conversions cost.
    """
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of unequal lengths {sorted(lengths)} for {table.name}")
    count = lengths.pop() if lengths else 0
    if not count:
        return 0
    connection = session.connection()
    dialect = connection.dialect
    converted: dict[str, list[Any]] = {}
    for column in table.columns:
        if column.name in columns:
            values: Sequence[Any] = columns[column.name]
        elif column.default is not None and not column.primary_key:
            arg = getattr(column.default, "arg", None)
            if callable(arg):
                # SQLAlchemy wraps a default without arguments to take the execution context.
                values = [arg(None) for _ in range(count)]
            elif arg is not None:
                values = [arg] * count
            else:
                continue
        else:
            continue
        process = column.type._cached_bind_processor(dialect)
        converted[column.name] = list(values) if process is None else [process(v) for v in values]
    unknown = set(columns) - set(converted)
    if unknown:
        raise ValueError(f"{table.name} has no column {sorted(unknown)[0]}")
    names = list(converted)
    rows = list(zip(*converted.values(), strict=True))
    quoted = ", ".join(dialect.identifier_preparer.quote(name) for name in names)
    target = dialect.identifier_preparer.format_table(table)
    raw = connection.connection.driver_connection
    assert raw is not None, "a session's connection has a driver connection"
    if dialect.name == "postgresql":
        with raw.cursor() as cursor, cursor.copy(f"COPY {target} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" for _ in names)
        raw.executemany(f"INSERT INTO {target} ({quoted}) VALUES ({marks})", rows)
    return count


def insert_records(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert rows given as dicts with the same keys, past the ORM (see `insert_rows`)."""
    if not rows:
        return 0
    return insert_rows(session, table, {key: [row[key] for row in rows] for key in rows[0]})
