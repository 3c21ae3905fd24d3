"""Read a source incrementally from a database table, through any SQLAlchemy URL.

Incremental semantics: a pull reads the rows whose cursor column is **greater than or equal
to** the watermark, ordered by the cursor and then by the source's key. ``>=`` rather than
``>`` because rows that share the watermark's cursor value may be committed after a pull has
read the first of them; with ``>`` they would never be read. The price is that every pull reads
the rows at the watermark value again, which is harmless: the domain drops re-delivered
``record_id`` values. Rows committed late with a cursor *below* the watermark (a long
transaction in the source system) are not seen by either operator; a department that does
that needs the domain to pull from an earlier watermark (a look-back).

Rows whose cursor is NULL are read only by a first pull (no watermark), where a required
cursor column quarantines them; they can never be compared with a watermark.

Values are read as the driver returns them (SQLAlchemy's type processing is bypassed), so a
SQLite column holds what was stored and a PostgreSQL ``timestamp`` a naive local time. The
watermark is the last cursor value in that order, as text, and is bound untyped so that the
database casts it back to the column's type. SQLite compares text columns as text: a cursor
stored as text must use one fixed format (ISO 8601) for the comparison to be chronological;
text in a date or timestamp cursor that is no ISO 8601 value never becomes the watermark
(the connector quarantines that row), so one garbage value cannot make later pulls skip rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.types import NullType

from connectors.base import Connector
from connectors.errors import ConnectorError, FatalError, RetriableError
from connectors.transport import (
    Page,
    PagedTransport,
    check_delivered_columns,
    rows_chunk,
    text_column,
)

__all__ = ["SqlTransport", "safe_url"]

# errors that say the database could not be reached or went away, not that the query is wrong
_TRANSIENT = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    sa.exc.DisconnectionError,
)


class SqlTransport(PagedTransport):
    """Pull a source's rows from one table, streamed in batches, incremental on a cursor.

    A pull reads the rows at or after the watermark (all rows when None).
    """

    def __init__(
        self,
        *,
        url: str,
        table: str,
        cursor_column: str | None,
        batch_rows: int = 100_000,
        engine: sa.Engine | None = None,
    ) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be positive")
        self.url = url
        self.table = table
        self.cursor_column = cursor_column
        self.batch_rows = batch_rows
        self.engine = engine
        self.origin = f"sql:{table}@{safe_url(url)}"

    def _pages(self, connector: Connector, watermark: str | None) -> Iterator[Page]:
        engine = self.engine
        if engine is None:
            self._refuse_missing_sqlite_file()
            with self._translated():
                engine = sa.create_engine(self.url)
        try:
            with self._translated(), engine.connect() as conn:
                yield from self._read(conn, connector, watermark)
        finally:
            if self.engine is None:
                engine.dispose()

    def _read(
        self, conn: sa.Connection, connector: Connector, watermark: str | None
    ) -> Iterator[Page]:
        schema, _, name = self.table.rpartition(".")
        inspector = sa.inspect(conn)
        if not inspector.has_table(name, schema=schema or None):
            raise FatalError(f"table {self.table!r} does not exist", origin=self.origin)
        columns = [str(c["name"]) for c in inspector.get_columns(name, schema=schema or None)]
        cursor = self.cursor_column
        if cursor is not None and cursor not in columns:
            raise FatalError(
                f"cursor column {cursor!r} is not a column of {self.table!r}; "
                f"columns: {', '.join(columns)}",
                origin=self.origin,
            )
        check_delivered_columns(connector, origin=self.origin, columns=columns)

        # untyped columns: rows come back as the driver reads them, not re-parsed by SQLAlchemy
        table = sa.table(name, *(sa.column(c) for c in columns), schema=schema or None)
        delivered = {ref: col for col, ref in connector.config.rename.items()}
        keys = [delivered.get(k, k) for k in connector.key]
        order = [c for c in (cursor, *keys) if c is not None and c in columns]
        query = sa.select(*table.c).order_by(*(table.c[c] for c in dict.fromkeys(order)))
        if cursor is not None and watermark is not None:
            # untyped bind: the database casts the text to the cursor column's own type
            query = query.where(table.c[cursor] >= sa.bindparam("wm", watermark, NullType()))

        dated = _is_dated(connector, cursor)
        result = conn.execution_options(stream_results=True, yield_per=self.batch_rows).execute(
            query
        )
        line = 1
        for rows in result.partitions(self.batch_rows):
            by_column = list(zip(*rows, strict=True))
            text = {c: text_column(v) for c, v in zip(columns, by_column, strict=True)}
            chunk = rows_chunk(text, first_line=line)
            line += len(rows)
            mark = None
            if cursor is not None:
                # ordered by the cursor, so the last non-null value is the largest
                mark = _last_mark(pc.drop_null(text[cursor]), dated=dated)
            yield chunk, mark

    def _refuse_missing_sqlite_file(self) -> None:
        # connecting to a missing SQLite file would create an empty one: a connector never writes
        try:
            url = make_url(self.url)
        except sa.exc.ArgumentError:
            return  # reported by create_engine, with the same wording as other URL errors
        database = url.database or ""
        if (
            url.get_backend_name() == "sqlite"
            and database not in ("", ":memory:")
            and not database.startswith("file:")
            and not Path(database).is_file()
        ):
            raise FatalError(
                f"SQLite database file {database!r} does not exist", origin=self.origin
            )

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn SQLAlchemy errors into retriable or fatal transport errors, without secrets."""
        try:
            yield
        except ConnectorError:
            raise
        except _TRANSIENT as exc:
            raise RetriableError(self._describe(exc), origin=self.origin) from None
        except sa.exc.SQLAlchemyError as exc:
            raise FatalError(self._describe(exc), origin=self.origin) from None

    def _describe(self, exc: sa.exc.SQLAlchemyError) -> str:
        cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        lines = str(cause).strip().splitlines()
        message = f"{type(cause).__name__}: {lines[0] if lines else ''}"
        try:
            password = make_url(self.url).password
        except sa.exc.ArgumentError:
            password = None
        if password:
            message = message.replace(str(password), "***")
        return message


def _last_mark(values: pa.Array, *, dated: bool) -> str | None:
    """Return the last cursor text that can serve as a watermark."""
    for i in range(len(values) - 1, -1, -1):
        text = str(values[i].as_py())
        if not dated:
            return text
        try:
            dt.datetime.fromisoformat(text)
        except ValueError:
            # text that is no date sorts anywhere (SQLite): it must not move the watermark
            continue
        return text
    return None


def _is_dated(connector: Connector, cursor: str | None) -> bool:
    """Tell whether the cursor column maps onto a date or timestamp of the source."""
    if cursor is None:
        return False
    reference = connector.config.rename.get(cursor, cursor)
    spec = connector.spec
    return reference in spec.column_names and spec.column(reference).kind in ("date", "timestamp")


def safe_url(url: str) -> str:
    """Return a database URL fit for logs: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid database URL>"
