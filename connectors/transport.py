"""What the SQL and HTTP transports share: their base, the ``Pull``, values turned into text.

A pull hands raw chunks to ``Connector.read_chunks``, so rows from a database or an API go
through the same mapping, validation and quarantine as rows from a file. Values are turned
into the text a file would have carried: timestamps ISO 8601 (naive stays naive, which the
connector reads as local time; aware is written in UTC with ``Z``), dates ``YYYY-MM-DD``,
booleans ``true``/``false``, numbers as written, NULL as null: each value as a JSON Lines file
gives it (``connectors.files.value_text``). A row's "line" is its 1-based ordinal within the
pull; its raw text is the row as compact JSON.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.base import Batch, Connector
from connectors.errors import MissingColumns
from connectors.files import RawChunk, value_text

__all__ = [
    "PagedTransport",
    "Pull",
    "check_delivered_columns",
    "rows_chunk",
    "text_column",
    "value_text",
]

# a chunk and the watermark that holds once every row of it has been handed over
Page = tuple[RawChunk, str | None]


class Pull:
    """Stream the batches of one incremental read and track its watermark.

    ``watermark`` is the cursor after every batch handed out so far: the domain stores it once
    those batches' data is committed. It starts at the watermark the pull was asked from, so a
    pull that yields nothing leaves it unchanged.
    """

    def __init__(
        self,
        *,
        origin: str,
        connector: Connector,
        pages: Iterable[Page],
        watermark: str | None,
        batch_rows: int,
    ) -> None:
        self.origin = origin
        self._watermark = watermark
        self.batches: Iterator[Batch] = self._stream(connector, pages, batch_rows)

    @property
    def watermark(self) -> str | None:
        """Return the cursor value after everything consumed so far (text, or None)."""
        return self._watermark

    def close(self) -> None:
        """Stop reading early: release the connection or client; the watermark stays."""
        close = getattr(self.batches, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Pull:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _stream(
        self, connector: Connector, pages: Iterable[Page], batch_rows: int
    ) -> Iterator[Batch]:
        for chunk, watermark in pages:
            batches = list(connector.read_chunks([chunk], batch_rows=batch_rows))
            for i, batch in enumerate(batches):
                # advance only with the chunk's last batch: before that, part of it is unseen
                if i == len(batches) - 1 and watermark is not None:
                    self._watermark = watermark
                yield batch


class PagedTransport(ABC):
    """A source read in pages from a database or an API; ``pull`` streams them as batches.

    A transport sets ``origin`` (where it reads, named in its errors) and ``batch_rows`` and
    yields its pages, each with the watermark that holds once it is handed over.
    """

    origin: str
    batch_rows: int

    def pull(self, connector: Connector, *, watermark: str | None) -> Pull:
        """Start reading where ``watermark`` leaves off (everything when None)."""
        return Pull(
            origin=self.origin,
            connector=connector,
            pages=self._pages(connector, watermark),
            watermark=watermark,
            batch_rows=self.batch_rows,
        )

    @abstractmethod
    def _pages(self, connector: Connector, watermark: str | None) -> Iterator[Page]:
        """Yield each page as a raw chunk with the watermark after it."""


def check_delivered_columns(connector: Connector, *, origin: str, columns: Sequence[str]) -> None:
    """Refuse a pull whose columns (after renaming) lack a required one, naming the origin."""
    try:
        connector.check_columns(Path(origin), list(columns))
    except MissingColumns as exc:
        # base.check_columns takes a Path; a URL as a Path loses its "//", so say it again
        raise MissingColumns(origin, source=exc.source, columns=exc.columns) from None


def rows_chunk(
    columns: dict[str, pa.Array],
    *,
    first_line: int,
    raw: Callable[[np.ndarray], list[str]] | None = None,
) -> RawChunk:
    """Build a raw chunk of text columns; lines count from ``first_line``."""
    table = pa.table(columns) if columns else pa.table({})
    n = table.num_rows
    lines = np.arange(first_line, first_line + n, dtype=np.int64)

    def as_json(positions: np.ndarray) -> list[str]:
        rows = table.take(pa.array(positions, pa.int64())).to_pylist()
        return [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows]

    return RawChunk(table, lines, raw or as_json)


def text_column(values: pa.Array | Sequence[Any]) -> pa.Array:
    """Return a column of Python or Arrow values as text, the way a file would carry it.

    A column is expected to hold one kind of timestamp, as a database column does: Arrow
    reads naive datetimes among aware ones as UTC.
    """
    if not isinstance(values, pa.Array):
        try:
            values = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            # mixed types (SQLite, loose JSON) or huge integers: the rare per-value path
            return pa.array([value_text(v) for v in values], pa.string())
    t = values.type
    if pa.types.is_string(t):
        return values
    if pa.types.is_large_string(t) or pa.types.is_null(t):
        return pc.cast(values, pa.string())
    if pa.types.is_boolean(t):
        return pc.if_else(values, "true", "false")
    if pa.types.is_timestamp(t):
        return _timestamp_text(values)
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_date(t)
        or pa.types.is_time(t)
    ):
        return pc.cast(values, pa.string())
    return pa.array([value_text(v) for v in values.to_pylist()], pa.string())


def _timestamp_text(values: pa.Array) -> pa.Array:
    """Return ISO 8601 text: naive stays naive (local time), aware is written in UTC with Z."""
    t = values.type
    if t.tz is not None:
        # an aware instant is stored in UTC: its naive UTC reading plus "Z" is the same instant
        values = pc.cast(pc.cast(values, pa.timestamp(t.unit, "UTC")), pa.timestamp(t.unit))
    if t.unit != "s":
        seconds = pc.cast(values, pa.timestamp("s"), safe=False)
        if pc.all(pc.equal(pc.cast(seconds, values.type), values)).as_py() is not False:
            values = seconds  # whole seconds throughout: no ".000000" tails
    # a cast is about 20 times faster than strftime (and regular expressions); it writes
    # "YYYY-MM-DD HH:MM:SS[.ffffff]"
    text = pc.replace_substring(pc.cast(values, pa.string()), " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(text, "Z", "") if t.tz is not None else text
